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
"""Quickstart: a Flax NNX MLP on scikit-learn's digits, per-example gradients.

The pipeline is the library's organising idea::

  per-example gradient population -> aggregator -> ordinary optax chain

The digits dataset (1,797 8x8 images, 10 classes) ships inside
scikit-learn, so nothing is downloaded. Runs in well under a minute on CPU::

  python examples/quickstart.py
  python examples/quickstart.py --aggregator sum --learning-rate 3e-4

Why a robust rule: corrupt a quarter of the members and compare the mean
with a robust aggregator (the mean collapses, the geometric median holds)::

  python examples/quickstart.py --aggregator mean --attack sign_flip
  python examples/quickstart.py --aggregator geometric_median --attack sign_flip

Robust rules and attacks default to 16 members per batch of 64 (each the
gradient of a microbatch of 4, like the workers of the Byzantine
literature). An attack replaces the first ``--byzantine`` members of each
population (batches are shuffled: different examples each step):
``sign_flip`` sends -10 times the member's gradient, ``nan`` sends NaN,
``alie`` ("a little is enough", Baruch et al. 2019) the honest members'
mean minus one standard deviation per coordinate. Prints the test accuracy
per epoch; writes nothing.
"""

import argparse
import time

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import optax_ext
from optax_ext import alignment
from optax_ext import momentum
from optax_ext import robust
from optax_ext import variance

# Each takes f, the number of members a rule should withstand (the Byzantine
# count, or a quarter of the population when there is no attack), and K.
AGGREGATORS = {
  'mean': lambda f, k: optax_ext.aggregate_by_mean(),
  'sum': lambda f, k: optax_ext.aggregate_by_sum(),
  'geometric_median': lambda f, k: robust.aggregate_by_geometric_median(
    maxiter=20
  ),
  'coordinate_median': lambda f, k: robust.aggregate_by_coordinate_median(),
  'krum': lambda f, k: robust.aggregate_by_krum(f),
  # Multi-Krum averages the K - f members Krum scores best.
  'multi_krum': lambda f, k: robust.aggregate_by_krum(f, num_selected=k - f),
  'trimmed_mean': lambda f, k: robust.aggregate_by_trimmed_mean(f),
  'centered_clipping': lambda f, k: robust.aggregate_by_centered_clipping(
    1.0, 3
  ),
  'upgrad': lambda f, k: alignment.aggregate_by_upgrad(),
  'gsnr': lambda f, k: variance.aggregate_by_gsnr(),
}
ATTACKS = ('none', 'sign_flip', 'nan', 'alie')


def attack(population, kind: str, num_byzantine: int):
  """The population with its first ``num_byzantine`` members replaced."""
  f = num_byzantine
  if kind == 'none' or f == 0:
    return population

  def one(x):  # x: [K, *param]
    honest = x[f:]
    bad = {
      'sign_flip': lambda: -10.0 * x[:f],
      'nan': lambda: jnp.full_like(x[:f], jnp.nan),
      'alie': lambda: jnp.broadcast_to(
        honest.mean(0) - honest.std(0), x[:f].shape
      ),
    }[kind]()
    return x.at[:f].set(bad)

  return jax.tree.map(one, population)


class Mlp(nnx.Module):
  """A two-layer perceptron for 64-pixel digits."""

  def __init__(self, hidden: int, *, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(64, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, 10, rngs=rngs)

  def __call__(self, x):
    return self.out(jax.nn.relu(self.hidden(x)))


def load_data(seed: int):
  digits = load_digits()
  x = (digits.data / 16.0).astype(np.float32)
  y = digits.target.astype(np.int32)
  return train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)


# The optimiser after aggregation and clipping. 'qhm' was the best momentum
# mixture on digits in examples/momentum_mixtures.py (within noise of SGD).
OPTIMIZERS = {
  'adamw': lambda lr: optax.adamw(lr, weight_decay=1e-4),
  'qhm': lambda lr: momentum.qhm(100 * lr, decay=0.9, nu=0.7),
  'qhadam': lambda lr: momentum.qhadam(lr),
  'mars': lambda lr: momentum.mars(lr),
}


def make_optimizer(
  aggregator: str,
  optimizer: str,
  learning_rate: float,
  tolerate: int,
  members: int,
):
  return optax.chain(
    # population [K, *param] -> param-shaped
    AGGREGATORS[aggregator](tolerate, members),
    optax.clip_by_global_norm(1.0),
    OPTIMIZERS[optimizer](learning_rate),
  )


def main(argv=None):
  parser = argparse.ArgumentParser(
    description=__doc__.split('\n\n', 1)[0],
    epilog=__doc__.split('\n\n', 1)[1],
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument(
    '--epochs', type=int, default=10, help='passes over the training set'
  )
  parser.add_argument(
    '--batch-size', type=int, default=64, help='examples per step'
  )
  parser.add_argument(
    '--members',
    type=int,
    default=None,
    help='population size K per batch; must divide the batch size '
    '(default: the batch size, i.e. per-example gradients, for the mean and '
    'the sum without an attack; otherwise 16 members, each the gradient of '
    'a microbatch, like the workers of the Byzantine literature)',
  )
  parser.add_argument(
    '--aggregator',
    choices=list(AGGREGATORS),
    default='mean',
    help='how the population becomes one update (robust rules withstand '
    'the --byzantine members)',
  )
  parser.add_argument(
    '--attack',
    choices=ATTACKS,
    default='none',
    help='what the Byzantine members send instead of their gradient',
  )
  parser.add_argument(
    '--byzantine',
    type=float,
    default=None,
    help='fraction of each population that is Byzantine (default: 0.25 '
    'with an attack, 0 without)',
  )
  parser.add_argument(
    '--optimizer',
    choices=sorted(OPTIMIZERS),
    default='adamw',
    help='the optimiser after aggregation (qhm uses 100x the learning rate: '
    'its momentum is dampened)',
  )
  parser.add_argument(
    '--learning-rate', type=float, default=3e-3, help='of the optimiser'
  )
  parser.add_argument(
    '--hidden', type=int, default=128, help='width of the hidden layer'
  )
  parser.add_argument(
    '--seed', type=int, default=0, help='data split, init and shuffling'
  )
  args = parser.parse_args(argv)
  members = args.members
  if members is None:
    plain = args.aggregator in ('mean', 'sum') and args.attack == 'none'
    members = args.batch_size if plain else min(16, args.batch_size)
  fraction = args.byzantine
  if fraction is None:
    fraction = 0.25 if args.attack != 'none' else 0.0
  if not 0.0 <= fraction < 0.5:
    parser.error(f'--byzantine must be in [0, 0.5), got {fraction}')
  num_byzantine = int(fraction * members)
  # Krum and the trimmed mean need the number to withstand: the attacked
  # count, or a quarter of the members when nobody attacks.
  tolerate = num_byzantine or max(1, members // 4)

  x_train, x_test, y_train, y_test = load_data(args.seed)
  model = Mlp(args.hidden, rngs=nnx.Rngs(args.seed))
  optimizer = nnx.Optimizer(
    model,
    make_optimizer(
      args.aggregator, args.optimizer, args.learning_rate, tolerate, members
    ),
    wrt=nnx.Param,
  )

  def loss_fn(params, batch, graphdef):
    logits = nnx.merge(graphdef, params)(batch['x'])
    return optax.softmax_cross_entropy_with_integer_labels(
      logits, batch['y']
    ).mean()

  population_fn = optax_ext.grad_population(loss_fn, members)

  @nnx.jit
  def train_step(model, optimizer, batch):
    graphdef, params = nnx.split(model, nnx.Param)
    loss, grads = population_fn(params, batch, graphdef)  # leaves [K, ...]
    grads = attack(grads, args.attack, num_byzantine)
    optimizer.update(model, grads)
    return loss

  @nnx.jit
  def accuracy(model, x, y):
    return jnp.mean(jnp.argmax(model(x), axis=-1) == y)

  rng = np.random.default_rng(args.seed)
  steps = len(x_train) // args.batch_size
  print(
    f'digits: {len(x_train)} train / {len(x_test)} test | population K='
    f'{members} per batch of {args.batch_size} | aggregator '
    f'{args.aggregator} -> clip -> {args.optimizer} | attack '
    f'{args.attack} on {num_byzantine} of {members} members | devices: '
    f'{jax.devices()[0].platform}'
  )
  start = time.perf_counter()
  for epoch in range(1, args.epochs + 1):
    order = rng.permutation(len(x_train))
    losses = []
    # disable=None: the bar shows on a terminal and stays out of CI logs.
    bar = tqdm(
      range(steps), desc=f'epoch {epoch:2d}', leave=False, disable=None
    )
    for i in bar:
      idx = order[i * args.batch_size : (i + 1) * args.batch_size]
      batch = {'x': jnp.asarray(x_train[idx]), 'y': jnp.asarray(y_train[idx])}
      losses.append(float(train_step(model, optimizer, batch)))
      bar.set_postfix(loss=f'{losses[-1]:.3f}')
    acc = float(accuracy(model, jnp.asarray(x_test), jnp.asarray(y_test)))
    print(
      f'epoch {epoch:2d} | train loss {np.mean(losses):.4f} | '
      f'test accuracy {acc:.4f}'
    )
  print(
    f'done in {time.perf_counter() - start:.1f}s; final test accuracy {acc:.4f}'
  )
  return acc


if __name__ == '__main__':
  main()
