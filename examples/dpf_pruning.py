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
"""DPF vs one-shot magnitude pruning on digits at 50-97% sparsity.

DPF trains once, pruning gradually (cubic schedule over the first 60% of
training, mask refreshed every 16 steps, gradients taken at the pruned
weights and applied to the dense ones). The baseline trains densely and
prunes the smallest weights once at the end, without retraining. Both prune
the weight matrices (not the biases) with one global threshold::

  python examples/dpf_pruning.py           # ~1 min on CPU
  python examples/dpf_pruning.py --smoke   # seconds, for CI
"""

import argparse
import pathlib
import time

import _digits
import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_ext import pruning

# Figures go here unless --plot says otherwise (README, "Examples").
OUTPUTS = pathlib.Path(__file__).resolve().parent / 'outputs'


def one_shot_prune(params, sparsity):
  """Global magnitude pruning of the ndim >= 2 leaves, once."""
  kernels = [x for x in jax.tree.leaves(params) if x.ndim >= 2]
  mags = jnp.sort(jnp.concatenate([jnp.abs(x).ravel() for x in kernels]))
  cut = int(round(sparsity * mags.size))
  tau = mags[cut] if cut < mags.size else jnp.inf
  return jax.tree.map(
    lambda x: jnp.where(jnp.abs(x) >= tau, x, 0.0) if x.ndim >= 2 else x,
    params,
  )


def main(argv=None):
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    '--epochs', type=int, default=30, help='passes over the training set'
  )
  parser.add_argument(
    '--batch-size', type=int, default=32, help='examples per step'
  )
  parser.add_argument(
    '--hidden', type=int, default=256, help='width of the hidden layer'
  )
  parser.add_argument(
    '--seeds', type=int, default=3, help='number of seeds (runs) per method'
  )
  parser.add_argument(
    '--sparsities',
    type=float,
    nargs='+',
    default=[0.5, 0.8, 0.9, 0.97],
    help='target sparsities of the weight matrices',
  )
  parser.add_argument(
    '--plot',
    default=str(OUTPUTS / 'dpf_pruning.png'),
    help="output PNG path ('' to skip)",
  )
  parser.add_argument(
    '--smoke', action='store_true', help='tiny run for CI (seconds)'
  )
  args = parser.parse_args(argv)
  if args.smoke:
    args.epochs, args.seeds, args.hidden = 2, 1, 32
  start = time.perf_counter()
  steps = args.epochs * (1437 // args.batch_size)
  inner = optax.sgd(0.05, momentum=0.9)
  common = {
    'epochs': args.epochs,
    'batch_size': args.batch_size,
    'hidden': args.hidden,
  }
  dense, one_shot = [], {s: [] for s in args.sparsities}
  dpf_acc, realised = {s: [] for s in args.sparsities}, {}
  for seed in range(args.seeds):
    data = _digits.load(seed)
    _, accs, params, _ = _digits.train(inner, data, seed=seed, **common)
    dense.append(accs[-1])
    _, _, _, accuracy_fn = _digits.model(args.hidden, seed)
    for s in args.sparsities:
      pruned = one_shot_prune(params, s)
      one_shot[s].append(float(accuracy_fn(pruned, data[1], data[3])))
      schedule = pruning.cubic_sparsity_schedule(s, int(0.6 * steps))
      tx = pruning.dpf(inner, schedule, update_every=16)
      _, accs, _, state = _digits.train(
        tx,
        data,
        seed=seed,
        grad_at=pruning.dpf_pruned_params,
        eval_at=pruning.dpf_pruned_params,
        **common,
      )
      dpf_acc[s].append(accs[-1])
      realised[s] = float(pruning.dpf_sparsity(state))
  print(
    f'digits MLP 64-{args.hidden}-10, {args.epochs} epochs, '
    f'{args.seeds} seed(s); dense test accuracy '
    f'{np.mean(dense):.4f} +- {np.std(dense):.4f}'
  )
  print(f'  {"sparsity":>8s} {"one-shot":>18s} {"DPF":>18s} {"realised":>9s}')
  for s in args.sparsities:
    print(
      f'  {s:8.2f} {np.mean(one_shot[s]):.4f} +- {np.std(one_shot[s]):.4f}'
      f' {np.mean(dpf_acc[s]):.4f} +- {np.std(dpf_acc[s]):.4f}'
      f' {realised[s]:9.4f}'
    )
  print(f'done in {time.perf_counter() - start:.1f}s')
  if args.plot:
    plt = _digits.pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    xs = args.sparsities
    ax.plot(xs, [np.mean(one_shot[s]) for s in xs], 'o-', label='one-shot')
    ax.plot(xs, [np.mean(dpf_acc[s]) for s in xs], 's-', label='DPF')
    ax.axhline(np.mean(dense), color='gray', ls='--', label='dense')
    ax.set_xlabel('sparsity of the weight matrices')
    ax.set_ylabel('test accuracy')
    ax.legend()
    fig.tight_layout()
    pathlib.Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=120)
    print(f'saved {args.plot}')
  return dense, one_shot, dpf_acc


if __name__ == '__main__':
  main()
