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
"""GradAlign and FedGA with 8 label-skewed workers on digits.

Each worker holds two of twenty label-sorted shards of the training set (so
it sees mostly two digits). Compared per communication round:

* mean-gradient SGD: every worker computes a minibatch gradient, the server
  averages them and steps;
* GradAlign: the same, with the gradients taken at the displaced points;
* FedAvg: every worker takes K local SGD steps, the server averages models;
* FedGA: FedAvg started from the displaced points (anchors: the workers'
  full local-data gradients, as in the reference code).

Reports the test accuracy (mean +- std over seeds) and the measured
misalignment of the workers' full local gradients at the final model,
V / mean_i |g_i|^2 = 1 - |mean g|^2 / mean |g_i|^2 (0: aligned)::

  python examples/gradalign_federated.py           # ~1-2 min on CPU
  python examples/gradalign_federated.py --smoke   # seconds, for CI
"""

import argparse
import pathlib
import time

import _digits
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from optax_ext import alignment

# Figures go here unless --plot says otherwise (README, "Examples").
OUTPUTS = pathlib.Path(__file__).resolve().parent / 'outputs'

WORKERS = 8


def label_skewed_shards(x, y, workers: int, seed: int):
  """Two label-sorted shards per worker: ``[W, n, ...]`` arrays."""
  order = np.argsort(np.asarray(y), kind='stable')
  shards = np.array_split(order, 2 * workers)
  rng = np.random.default_rng(seed)
  pick = rng.permutation(2 * workers).reshape(workers, 2)
  n = min(len(shards[a]) + len(shards[b]) for a, b in pick)
  idx = np.stack([np.concatenate([shards[a], shards[b]])[:n] for a, b in pick])
  return x[idx], y[idx]


def run(method, data, args, seed):
  x_train, x_test, y_train, y_test = data
  xs, ys = label_skewed_shards(x_train, y_train, WORKERS, seed)
  _, params, loss_fn, accuracy_fn = _digits.model(64, seed)
  loss = lambda p, b: loss_fn(p, b[0], b[1])
  n = xs.shape[1]
  k = args.local_steps
  server = optax.sgd(1.0 if method.startswith('fed') else args.lr)
  local = optax.sgd(args.local_lr)

  def sample(key, shape):
    idx = jax.random.randint(key, (WORKERS, *shape, args.batch_size), 0, n)
    gather = jax.vmap(lambda a, i: a[i])
    return gather(xs, idx), gather(ys, idx)

  def round_fn(carry, key):
    params, state = carry
    if method == 'fedavg' or method == 'fedga':
      beta = args.beta_fed if method == 'fedga' else 0.0
      anchors = jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, (xs, ys))
      g = alignment.fedga_grad(
        loss, params, sample(key, (k,)), local, beta=beta, anchor_grads=anchors
      )
    else:
      beta = args.beta if method == 'gradalign' else 0.0
      g = alignment.gradalign_grad(loss, params, sample(key, ()), beta=beta)
    u, state = server.update(g, state)
    return (optax.apply_updates(params, u), state), None

  @jax.jit
  def train(params, key):
    keys = jax.random.split(key, args.rounds)
    (params, _), _ = jax.lax.scan(round_fn, (params, server.init(params)), keys)
    grads = jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, (xs, ys))
    sq = sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)) / WORKERS
    misalignment = alignment.gradient_variance(grads) / sq
    return accuracy_fn(params, x_test, y_test), misalignment

  acc, mis = train(params, jax.random.key(seed))
  return float(acc), float(mis)


def main(argv=None):
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    '--rounds', type=int, default=300, help='communication rounds'
  )
  parser.add_argument(
    '--local-steps',
    type=int,
    default=5,
    help='local SGD steps per round (FedAvg, FedGA)',
  )
  parser.add_argument(
    '--batch-size', type=int, default=16, help='examples per worker per step'
  )
  parser.add_argument(
    '--lr',
    type=float,
    default=0.1,
    help='server SGD learning rate (mean-gradient SGD, GradAlign)',
  )
  parser.add_argument(
    '--local-lr',
    type=float,
    default=0.05,
    help='local SGD learning rate (FedAvg, FedGA)',
  )
  parser.add_argument(
    '--beta', type=float, default=0.1, help="GradAlign's displacement"
  )
  parser.add_argument(
    '--beta-fed', type=float, default=0.025, help="FedGA's displacement"
  )
  parser.add_argument(
    '--seeds', type=int, default=3, help='number of seeds (runs) per method'
  )
  parser.add_argument(
    '--plot',
    default=str(OUTPUTS / 'gradalign_federated.png'),
    help="output PNG path ('' to skip)",
  )
  parser.add_argument(
    '--smoke', action='store_true', help='tiny run for CI (seconds)'
  )
  args = parser.parse_args(argv)
  if args.smoke:
    args.rounds, args.seeds = 10, 1
  start = time.perf_counter()
  print(
    f'{WORKERS} label-skewed workers, {args.rounds} rounds, batch '
    f'{args.batch_size}/worker; SGD lr {args.lr}, GradAlign beta '
    f'{args.beta}; FedAvg/FedGA {args.local_steps} local steps, local lr '
    f'{args.local_lr}, FedGA beta {args.beta_fed}; {args.seeds} seed(s)'
  )
  print(f'  {"method":12s} {"test accuracy":>18s} {"misalignment":>14s}')
  results = {}
  for method in tqdm(
    ('sgd', 'gradalign', 'fedavg', 'fedga'),
    desc='methods',
    leave=False,
    disable=None,
  ):
    runs = [
      run(method, _digits.load(seed), args, seed) for seed in range(args.seeds)
    ]
    accs, mis = np.array(runs).T
    results[method] = (accs, mis)
    print(
      f'  {method:12s} {accs.mean():.4f} +- {accs.std():.4f} {mis.mean():14.4f}'
    )
  print(f'done in {time.perf_counter() - start:.1f}s')
  if args.plot:
    plt = _digits.pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    names = list(results)
    a1.bar(names, [results[m][0].mean() for m in names],
           yerr=[results[m][0].std() for m in names])  # fmt: skip
    a1.set_ylim(0.5, 1.0)
    a1.set_ylabel('test accuracy')
    a2.bar(names, [results[m][1].mean() for m in names])
    a2.set_ylabel('misalignment at the end')
    fig.suptitle('label-skewed digits, 8 workers')
    fig.tight_layout()
    pathlib.Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=120)
    print(f'saved {args.plot}')
  return results


if __name__ == '__main__':
  main()
