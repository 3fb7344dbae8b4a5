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
"""SGD vs Lookahead vs 2-layer Lookahead on digits (test accuracy table).

The same MLP, initialisations and batches for each method; Lookahead and
Multilayer Lookahead wrap the same SGD and are evaluated at their outermost
slow weights::

  python examples/multilayer_lookahead.py           # ~1 min on CPU
  python examples/multilayer_lookahead.py --smoke   # seconds, for CI

The paper's claim (Pushkin and Barba 2021): Multilayer Lookahead
generalises better than Lookahead, which generalises better than SGD.
"""

import argparse
import pathlib
import time

import _digits
import numpy as np
import optax

from optax_ext import lookahead

# Figures go here unless --plot says otherwise (README, "Examples").
OUTPUTS = pathlib.Path(__file__).resolve().parent / 'outputs'


def methods(lr: float):
  sgd = optax.sgd(lr, momentum=0.9)
  return {
    'sgd (momentum 0.9)': (sgd, None),
    'lookahead (k=5, a=0.5)': (
      lookahead.lookahead(sgd, 5, 0.5),
      lambda p, s: lookahead.lookahead_slow_params(s),
    ),
    'multilayer (k=5,5, a=0.5,0.5)': (
      lookahead.multilayer_lookahead(sgd, (5, 5), (0.5, 0.5)),
      lambda p, s: lookahead.multilayer_lookahead_slow_params(s),
    ),
  }


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
    '--seeds', type=int, default=5, help='number of seeds (runs) per method'
  )
  parser.add_argument(
    '--learning-rates',
    type=float,
    nargs='+',
    default=[0.05, 0.3],
    help='learning rates of the inner SGD to compare',
  )
  parser.add_argument(
    '--plot',
    default=str(OUTPUTS / 'multilayer_lookahead.png'),
    help="output PNG path ('' to skip)",
  )
  parser.add_argument(
    '--smoke', action='store_true', help='tiny run for CI (seconds)'
  )
  args = parser.parse_args(argv)
  if args.smoke:
    args.epochs, args.seeds = 2, 1
  start = time.perf_counter()
  results = {}
  print(
    f'digits MLP, {args.epochs} epochs, batch {args.batch_size}, '
    f'{args.seeds} seed(s)'
  )
  print(f'  {"lr":>5s} {"method":32s} {"final test acc":>16s} {"best":>7s}')
  for lr in args.learning_rates:
    for name in methods(lr):
      runs = []
      for seed in range(args.seeds):
        tx, eval_at = methods(lr)[name]
        _, accs, _, _ = _digits.train(
          tx,
          _digits.load(seed),
          epochs=args.epochs,
          batch_size=args.batch_size,
          seed=seed,
          eval_at=eval_at,
        )
        runs.append(accs)
      accs = np.stack(runs)
      results[lr, name] = accs
      final = accs[:, -1]
      print(
        f'  {lr:5.2f} {name:32s} {final.mean():.4f} +- {final.std():.4f}'
        f' {accs.max(1).mean():7.4f}'
      )
  print(f'done in {time.perf_counter() - start:.1f}s')
  if args.plot:
    plt = _digits.pyplot()
    lrs = args.learning_rates
    fig, axes = plt.subplots(
      1, len(lrs), figsize=(5 * len(lrs), 3.8), squeeze=False
    )
    for ax, lr in zip(axes[0], lrs, strict=True):
      for (run_lr, name), accs in results.items():
        if run_lr == lr:
          mean = accs.mean(0)
          ax.plot(np.arange(1, len(mean) + 1), mean, label=name)
      ax.set_xlabel('epoch')
      ax.set_ylabel('test accuracy (mean over seeds)')
      ax.set_title(f'learning rate {lr}')
      ax.legend(fontsize=8)
    fig.tight_layout()
    pathlib.Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=120)
    print(f'saved {args.plot}')
  return results


if __name__ == '__main__':
  main()
