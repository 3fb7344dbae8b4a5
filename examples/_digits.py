# Copyright 2026 The optax_ext Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
# ==============================================================================
"""Shared pieces of the digits examples: data, model, training loop, plots.

The data is scikit-learn's embedded ``digits`` set (1797 8x8 images, no
download).
"""

from collections.abc import Callable

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm


def load(seed: int = 0):
  """``(x_train, x_test, y_train, y_test)`` as jnp arrays (80/20 split)."""
  digits = load_digits()
  x = (digits.data / 16.0).astype(np.float32)
  y = digits.target.astype(np.int32)
  split = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
  return tuple(map(jnp.asarray, split))


class Mlp(nnx.Module):
  def __init__(self, hidden: int, *, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(64, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, 10, rngs=rngs)

  def __call__(self, x):
    return self.out(jax.nn.relu(self.hidden(x)))


def model(hidden: int, seed: int):
  """``(graphdef, params, loss_fn, accuracy_fn)`` of a fresh MLP."""
  graphdef, params = nnx.split(Mlp(hidden, rngs=nnx.Rngs(seed)), nnx.Param)

  def loss_fn(p, x, y):
    logits = nnx.merge(graphdef, p)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def accuracy_fn(p, x, y):
    logits = nnx.merge(graphdef, p)(x)
    return jnp.mean(jnp.argmax(logits, -1) == y)

  return graphdef, params, loss_fn, accuracy_fn


def train(
  tx: optax.GradientTransformation,
  data,
  *,
  epochs: int,
  batch_size: int,
  seed: int,
  hidden: int = 64,
  grad_at: Callable | None = None,
  eval_at: Callable | None = None,
):
  """Trains the MLP with ``tx``; returns ``(losses, test accuracies, p, s)``.

  ``grad_at(params, state)``: the params the gradient is taken at (e.g. the
  pruned ones); ``eval_at(params, state)``: the params evaluated (e.g. slow
  weights). Both default to the params themselves.
  """
  x_train, x_test, y_train, y_test = data
  _, params, loss_fn, accuracy_fn = model(hidden, seed)
  grad_at = grad_at or (lambda p, s: p)
  eval_at = eval_at or (lambda p, s: p)
  steps = len(x_train) // batch_size

  @jax.jit
  def epoch(params, state, key):
    order = jax.random.permutation(key, len(x_train))[: steps * batch_size]
    xs = x_train[order].reshape(steps, batch_size, -1)
    ys = y_train[order].reshape(steps, batch_size)

    def step(carry, batch):
      p, s = carry
      value, grads = jax.value_and_grad(loss_fn)(grad_at(p, s), *batch)
      u, s = tx.update(grads, s, p)
      return (optax.apply_updates(p, u), s), value

    (params, state), losses = jax.lax.scan(step, (params, state), (xs, ys))
    acc = accuracy_fn(eval_at(params, state), x_test, y_test)
    return params, state, losses, acc

  state = tx.init(params)
  key = jax.random.key(seed)
  curve, accs = [], []
  for _ in tqdm(range(epochs), desc='epochs', leave=False, disable=None):
    key, sub = jax.random.split(key)
    params, state, losses, acc = epoch(params, state, sub)
    curve.append(np.asarray(losses))
    accs.append(float(acc))
  return np.concatenate(curve), np.array(accs), params, state


def pyplot():
  """matplotlib's pyplot on the Agg backend (optional dependency)."""
  import matplotlib  # noqa: PLC0415

  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # noqa: PLC0415

  return plt
