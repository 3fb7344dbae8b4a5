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
"""Byzantine-robust training on digits: 8 workers, some of them corrupted.

Each step splits the batch over 8 workers (a population of 8 microbatch
gradients, ``optax_ext.grad_population``); ``f`` workers replace their
gradient with an attack; the aggregator combines the 8, then Adam steps.
Compares the mean with each robust aggregator: prints a table of final test
accuracy per attack and saves a bar chart::

  python examples/byzantine_robust_training.py            # ~1 min on CPU
  python examples/byzantine_robust_training.py --smoke    # seconds, for CI
"""

import argparse
import pathlib

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import optax_ext
from optax_ext import robust

# Figures go here unless --plot says otherwise (README, "Examples").
OUTPUTS = pathlib.Path(__file__).resolve().parent / 'outputs'

WORKERS = 8


def aggregators(f: int):
  return {
    'mean': optax_ext.aggregate_by_mean(),
    'coordinate median': robust.aggregate_by_coordinate_median(),
    'trimmed mean': robust.aggregate_by_trimmed_mean(f),
    'krum': robust.aggregate_by_krum(f),
    'multi-krum': robust.aggregate_by_krum(f, num_selected=WORKERS - f),
    'geometric median': robust.aggregate_by_geometric_median(maxiter=10),
    'nna': robust.aggregate_by_nearest_neighbors(f),
    'centered clipping': robust.aggregate_by_centered_clipping(1.0, 3),
  }


def attack(grads, kind: str, f: int):
  """Replace the first ``f`` members of the population."""
  if kind == 'none' or f == 0:
    return grads

  def one(x):
    honest = x[f:]
    bad = {
      'sign flip x10': -10.0 * x[:f],
      'nan': jnp.full_like(x[:f], jnp.nan),
      'large noise': 100.0
      * jnp.sin(jnp.arange(x[:f].size, dtype=x.dtype)).reshape(x[:f].shape),
      # "A little is enough": mean minus one std of the honest members.
      'alie': jnp.broadcast_to(honest.mean(0) - honest.std(0), x[:f].shape),
    }[kind]
    return x.at[:f].set(bad)

  return jax.tree.map(one, grads)


class Mlp(nnx.Module):
  def __init__(self, *, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(64, 64, rngs=rngs)
    self.out = nnx.Linear(64, 10, rngs=rngs)

  def __call__(self, x):
    return self.out(jax.nn.relu(self.hidden(x)))


def train(agg, kind, f, data, epochs, seed, batch_size=64):
  x_train, x_test, y_train, y_test = data
  graphdef, params = nnx.split(Mlp(rngs=nnx.Rngs(seed)), nnx.Param)

  def loss_fn(p, batch):
    logits = nnx.merge(graphdef, p)(batch['x'])
    return optax.softmax_cross_entropy_with_integer_labels(
      logits, batch['y']
    ).mean()

  population_fn = optax_ext.grad_population(loss_fn, WORKERS)
  # apply_if_finite after the aggregator: a NaN aggregate skips the step.
  tx = optax.chain(agg, optax.apply_if_finite(optax.adam(3e-3), 1_000_000))
  steps = len(x_train) // batch_size

  @jax.jit
  def epoch(params, state, key):
    order = jax.random.permutation(key, len(x_train))[: steps * batch_size]
    batches = {
      'x': x_train[order].reshape(steps, batch_size, -1),
      'y': y_train[order].reshape(steps, batch_size),
    }

    def step(carry, batch):
      p, s = carry
      _, grads = population_fn(p, batch)
      u, s = tx.update(attack(grads, kind, f), s, p)
      return (optax.apply_updates(p, u), s), None

    return jax.lax.scan(step, (params, state), batches)[0]

  state = tx.init(params)
  key = jax.random.key(seed)
  for _ in range(epochs):
    key, sub = jax.random.split(key)
    params, state = epoch(params, state, sub)
  logits = nnx.merge(graphdef, params)(x_test)
  return float(jnp.mean(jnp.argmax(logits, -1) == y_test))


def main(argv=None):
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    '--byzantine', type=int, default=2, help='Byzantine workers among the 8'
  )
  parser.add_argument(
    '--epochs', type=int, default=8, help='passes over the training set'
  )
  parser.add_argument(
    '--plot',
    default=str(OUTPUTS / 'byzantine_robust_training.png'),
    help="output PNG path ('' to skip)",
  )
  parser.add_argument(
    '--smoke', action='store_true', help='tiny run for CI (seconds)'
  )
  args = parser.parse_args(argv)
  attacks = ['none', 'sign flip x10', 'nan', 'large noise', 'alie']
  if args.smoke:
    args.epochs, attacks = 1, ['nan']

  digits = load_digits()
  x = (digits.data / 16.0).astype(np.float32)
  y = digits.target.astype(np.int32)
  data = tuple(
    map(
      jnp.asarray,
      train_test_split(x, y, test_size=0.2, random_state=0, stratify=y),
    )
  )
  f = args.byzantine
  names = list(aggregators(f))
  table = {}
  print(
    f'digits, {WORKERS} workers, {f} Byzantine, {args.epochs} epochs; '
    'test accuracy'
  )
  print(f'{"aggregator":20s}' + ''.join(f'{a:>15s}' for a in attacks))
  for name in tqdm(names, desc='aggregators', leave=False, disable=None):
    row = [
      train(aggregators(f)[name], a, f, data, args.epochs, 0) for a in attacks
    ]
    table[name] = row
    print(f'{name:20s}' + ''.join(f'{v:15.4f}' for v in row))

  if args.plot:
    import matplotlib  # noqa: PLC0415  (optional, only for the plot)

    matplotlib.use('Agg')
    from matplotlib import pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
      ax.bar(
        np.arange(len(attacks)) + i * width, table[name], width, label=name
      )
    ax.set_xticks(np.arange(len(attacks)) + 0.4 - width / 2, attacks)
    ax.set_ylabel('test accuracy')
    ax.set_ylim(0, 1)
    ax.set_title(f'digits, {WORKERS} workers, {f} Byzantine')
    ax.legend(fontsize=7, ncol=4, loc='lower left')
    fig.tight_layout()
    pathlib.Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=120)
    print(f'saved {args.plot}')
  return table


if __name__ == '__main__':
  main()
