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
"""Digits workloads: an MLP and a small CNN on scikit-learn's 8x8 digits.

The 1797 images ship with scikit-learn (no download). A fixed stratified
split (20% validation, ``random_state=0``) is shared by every method and
seed; seeds change the initialisation and the batch order. The metric is
validation accuracy.
"""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


class Mlp(nnx.Module):
  def __init__(self, *, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(64, 128, rngs=rngs)
    self.out = nnx.Linear(128, 10, rngs=rngs)

  def __call__(self, x):
    return self.out(jax.nn.relu(self.hidden(x)))


class Cnn(nnx.Module):
  def __init__(self, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 16, (3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(16, 32, (3, 3), rngs=rngs)
    self.out = nnx.Linear(4 * 4 * 32, 10, rngs=rngs)

  def __call__(self, x):
    x = x.reshape(x.shape[0], 8, 8, 1)
    x = jax.nn.relu(self.conv1(x))
    x = jax.nn.relu(self.conv2(x))
    x = nnx.max_pool(x, (2, 2), (2, 2))
    return self.out(x.reshape(x.shape[0], -1))


class Workload:
  """Digits classification with ``model`` (``'mlp'`` or ``'cnn'``)."""

  metric = 'validation accuracy'
  lower_is_better = False
  attack = None

  def __init__(self, model: str, batch_size: int = 32, name: str = ''):
    self.name = name or f'digits_{model}'
    self._cls = {'mlp': Mlp, 'cnn': Cnn}[model]
    self.batch_size = batch_size
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    xt, xv, yt, yv = train_test_split(
      x, y, test_size=0.2, random_state=0, stratify=y
    )
    self.train = (xt, yt)
    self.val = (jnp.asarray(xv), jnp.asarray(yv))
    self.graphdef, _ = nnx.split(self._cls(rngs=nnx.Rngs(0)))
    self.info = {'train': len(yt), 'validation': len(yv)}
    self._eval = jax.jit(self._accuracy)

  def init(self, seed: int):
    return nnx.split(self._cls(rngs=nnx.Rngs(seed)))[1]

  def loss(self, params, batch):
    x, y = batch
    logits = nnx.merge(self.graphdef, params)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def _accuracy(self, params):
    x, y = self.val
    logits = nnx.merge(self.graphdef, params)(x)
    return jnp.mean(jnp.argmax(logits, -1) == y)

  def batches(self, seed: int):
    rng = np.random.default_rng(seed)
    x, y = self.train
    while True:
      order = rng.permutation(len(y))
      for i in range(0, len(y) - self.batch_size + 1, self.batch_size):
        idx = order[i : i + self.batch_size]
        yield jnp.asarray(x[idx]), jnp.asarray(y[idx])

  def evaluate(self, params) -> float:
    return float(self._eval(params))


class Byzantine(Workload):
  """The digits MLP trained data-parallel by 8 workers (a population of 8
  microbatch gradients per batch of 64), the first ``f = 2`` of which are
  Byzantine. ``kind='alie'``: they send "a little is enough" gradients, the
  honest members' mean minus one standard deviation per coordinate (Baruch
  et al. 2019), which stays inside the honest spread; ``kind='sign_flip'``:
  they send their own gradient times -10.
  """

  workers = 8
  byzantine = 2

  def __init__(self, kind: str = 'alie'):
    super().__init__('mlp', batch_size=64, name=f'digits_byzantine_{kind}')
    self.kind = kind

  def attack(self, population):
    f = self.byzantine

    def one(x):
      if self.kind == 'sign_flip':
        bad = -10.0 * x[:f]
      else:
        honest = x[f:]
        bad = jnp.broadcast_to(honest.mean(0) - honest.std(0), x[:f].shape)
      return x.at[:f].set(bad)

    return jax.tree.map(one, population)


class MultiTask(Workload):
  """Three tasks on one digits MLP trunk (64 hidden): the digit (10
  classes), its parity and whether it is >= 5, each with its own head. The
  methods receive the ``[3, ...]`` task Jacobian of a batch of 32
  (``alignment.task_jacobian``); the metric is the mean of the three
  validation accuracies.
  """

  def __init__(self):
    super().__init__('mlp', batch_size=32, name='digits_multitask')
    self._eval = jax.jit(self._mean_accuracy)

  def init(self, seed: int):
    keys = jax.random.split(jax.random.key(seed), 4)
    glorot = jax.nn.initializers.glorot_normal()
    shapes = {'trunk': 64, 'digit': 10, 'parity': 2, 'high': 2}
    params = {'trunk': {'w': glorot(keys[0], (64, 64)), 'b': jnp.zeros(64)}}
    for key, name in zip(keys[1:], ('digit', 'parity', 'high'), strict=True):
      params[name] = {
        'w': glorot(key, (64, shapes[name])),
        'b': jnp.zeros(shapes[name]),
      }
    return params

  @staticmethod
  def _heads(params, x):
    h = jax.nn.relu(x @ params['trunk']['w'] + params['trunk']['b'])
    return [
      h @ params[n]['w'] + params[n]['b'] for n in ('digit', 'parity', 'high')
    ]

  @staticmethod
  def _labels(y):
    return [y, y % 2, (y >= 5).astype(jnp.int32)]

  def task_losses(self, params, x, y):
    ce = optax.softmax_cross_entropy_with_integer_labels
    outs = zip(self._heads(params, x), self._labels(y), strict=True)
    return jnp.stack([ce(o, t).mean() for o, t in outs])

  def loss(self, params, batch):
    return jnp.mean(self.task_losses(params, *batch))

  def _mean_accuracy(self, params):
    x, y = self.val
    outs = zip(self._heads(params, x), self._labels(y), strict=True)
    return jnp.mean(
      jnp.stack([jnp.mean(jnp.argmax(o, -1) == t) for o, t in outs])
    )
