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
"""Momentum and adaptive methods compared on digits: loss and accuracy.

Trains the same MLP (same initialisation, same batches) with each method of
``optax_ext.momentum`` and ``optax_ext.adaptive`` and two optax baselines,
prints the final test accuracy (mean +- std over seeds) and saves the
training-loss curves::

  python examples/momentum_mixtures.py            # ~1 min on CPU
  python examples/momentum_mixtures.py --smoke    # seconds, for CI

Learning rates are each method's usual scale for this problem (not tuned
per method beyond that); IGT and XGrad are evaluated at their true parameters.
"""

import argparse
import pathlib
import time

import _digits
import jax
import numpy as np
import optax

from optax_ext import adaptive
from optax_ext import momentum

# Figures go here unless --plot says otherwise (README, "Examples").
OUTPUTS = pathlib.Path(__file__).resolve().parent / 'outputs'


def methods(total_steps: int):
  cosine = lambda lr: optax.cosine_decay_schedule(lr, total_steps)
  return {
    'sgd (momentum 0.9)': optax.sgd(0.05, momentum=0.9),
    'adam': optax.adam(3e-3),
    'qhm': momentum.qhm(0.5, decay=0.9, nu=0.7),
    'qhadam': momentum.qhadam(3e-3),
    'aggmo': momentum.aggmo(0.005),
    'momentum_mixture (0.9, 0.99)': momentum.momentum_mixture(
      0.05,
      decays=(0.9, 0.99),
      coefficients=(0.5, 0.5),
      grad_coefficient=0.0,
      dampening=False,
    ),
    'ademamix (warm-ups)': momentum.ademamix_with_warmup(
      3e-3,
      alpha_warmup_steps=total_steps,
      beta3_warmup_steps=total_steps,
      b3=0.999,
    ),
    'mars': momentum.mars(3e-3),
    'grams': momentum.grams(3e-3),
    'igt_sgd': momentum.igt_sgd(cosine(0.05)),
    'pnm': momentum.pnm(0.5),  # a dampened EMA, like QHM's rate
    'adapnm': momentum.adapnm(3e-3),
    'ranger21': momentum.ranger21(3e-3, num_iterations=total_steps),
    'xgrad_sgd': momentum.xgrad_sgd(0.05, momentum=0.9),
    'xgrad_adam': momentum.xgrad_adam(3e-3),
    'diffgrad': adaptive.diffgrad(3e-3),
    'adamp': adaptive.adamp(3e-3),
    'sgdp': adaptive.sgdp(0.05, momentum=0.9, nesterov=True),
    'sgd_sai': adaptive.sgd_sai(0.2),  # per-tensor scales are <= 1
    'gravity': adaptive.gravity(0.1),
  }


def _true_params(params, state):
  """IGT is evaluated at its true iterate; the others at their params."""
  true = optax.tree.get(state, 'true_params', default=None)
  if true is None:
    return params
  return jax.tree.map(lambda t, p: t.astype(p.dtype), true, params)


def train(tx, data, batch_size, epochs, seed, hidden):
  curve, accs, _, _ = _digits.train(
    tx,
    data,
    epochs=epochs,
    batch_size=batch_size,
    seed=seed,
    hidden=hidden,
    eval_at=_true_params,
  )
  return curve, accs[-1]


def main(argv=None):
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    '--epochs', type=int, default=15, help='passes over the training set'
  )
  parser.add_argument(
    '--batch-size', type=int, default=64, help='examples per step'
  )
  parser.add_argument(
    '--seeds', type=int, default=3, help='number of seeds (runs) per method'
  )
  parser.add_argument(
    '--hidden', type=int, default=128, help='width of the hidden layer'
  )
  parser.add_argument(
    '--plot',
    default=str(OUTPUTS / 'momentum_mixtures.png'),
    help="output PNG path ('' to skip)",
  )
  parser.add_argument(
    '--smoke', action='store_true', help='tiny run for CI: 1 epoch, 1 seed'
  )
  args = parser.parse_args(argv)
  if args.smoke:
    args.epochs, args.seeds = 1, 1

  data = _digits.load(0)
  total = args.epochs * (len(data[0]) // args.batch_size)
  start = time.perf_counter()
  results = {}
  print(
    f'digits, {args.epochs} epochs, batch {args.batch_size}, '
    f'{args.seeds} seed(s)'
  )
  for name in methods(total):
    runs = [
      train(
        methods(total)[name],
        data,
        args.batch_size,
        args.epochs,
        seed,
        args.hidden,
      )
      for seed in range(args.seeds)
    ]
    curves = np.stack([c for c, _ in runs])
    accs = np.array([a for _, a in runs])
    results[name] = (curves.mean(0), accs)
    print(
      f'  {name:34s} final train loss {curves.mean(0)[-20:].mean():.4f}'
      f'  test accuracy {accs.mean():.4f} +- {accs.std():.4f}'
    )
  print(f'done in {time.perf_counter() - start:.1f}s')

  if args.plot:
    import matplotlib  # noqa: PLC0415  (optional, only for the plot)

    matplotlib.use('Agg')
    from matplotlib import pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4.5))
    window = 10
    for name, (curve, _) in results.items():
      smooth = np.convolve(curve, np.ones(window) / window, mode='valid')
      ax.plot(smooth, label=name, lw=1.2)
    ax.set_yscale('log')
    ax.set_xlabel('step')
    ax.set_ylabel(f'training loss (moving average of {window})')
    ax.set_title('digits MLP, mean over seeds')
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    pathlib.Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=120)
    print(f'saved {args.plot}')
  return results


if __name__ == '__main__':
  main()
