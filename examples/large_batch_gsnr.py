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
"""Large-batch training with GSNR variance reduction (VRGD) on digits.

Trains the same MLP on scikit-learn's digits at increasing batch sizes with a
fixed budget of epochs (so larger batches take fewer steps), comparing

* adam  vs vr_adam   (``optax.adam``   vs ``optax_ext.variance.vr_adam``)
* sgd   vs vr_sgd    (momentum 0.9 both)

Every batch is split into K microbatches (``optax_ext.grad_population``);
the baselines aggregate them by their mean (the ordinary mini-batch
gradient), VRGD scales the update by the normalised GSNR of the K members.
Prints a table of final test accuracy (mean +- std over seeds) per batch
size and saves a plot::

  python examples/large_batch_gsnr.py                  # full, ~1 min on CPU
  python examples/large_batch_gsnr.py --lr-sweep       # + learning-rate control
  python examples/large_batch_gsnr.py --smoke          # seconds, for CI

``--lr-sweep`` re-runs the largest batch size with 1x, 2x, 4x and 8x the
learning rates: the GSNR factor changes the effective step size, so a fair
comparison also tunes the baseline's learning rate.
"""

import argparse
import pathlib
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
from optax_ext import variance

# Figures go here unless --plot says otherwise (README, "Examples").
OUTPUTS = pathlib.Path(__file__).resolve().parent / 'outputs'


class Mlp(nnx.Module):
  def __init__(self, hidden: int, *, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(64, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, 10, rngs=rngs)

  def __call__(self, x):
    return self.out(jax.nn.relu(self.hidden(x)))


def optimizers(adam_lr: float, sgd_lr: float):
  mean = optax_ext.aggregate_by_mean
  return {
    'adam': optax.chain(mean(), optax.adam(adam_lr)),
    'vr_adam': variance.vr_adam(adam_lr),
    'sgd': optax.chain(mean(), optax.sgd(sgd_lr, momentum=0.9)),
    'vr_sgd': variance.vr_sgd(sgd_lr, momentum=0.9),
  }


def train(tx, data, batch_size, members, epochs, seed, hidden):
  x_train, x_test, y_train, y_test = data
  model = Mlp(hidden, rngs=nnx.Rngs(seed))
  graphdef, params = nnx.split(model, nnx.Param)

  def loss_fn(p, batch):
    logits = nnx.merge(graphdef, p)(batch['x'])
    return optax.softmax_cross_entropy_with_integer_labels(
      logits, batch['y']
    ).mean()

  population_fn = optax_ext.grad_population(loss_fn, members)
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
      value, grads = population_fn(p, batch)
      u, s = tx.update(grads, s, p)
      return (optax.apply_updates(p, u), s), value

    (params, state), losses = jax.lax.scan(step, (params, state), batches)
    return params, state, losses.mean()

  @jax.jit
  def accuracy(params):
    logits = nnx.merge(graphdef, params)(x_test)
    return jnp.mean(jnp.argmax(logits, -1) == y_test)

  state = tx.init(params)
  key = jax.random.key(seed)
  for _ in range(epochs):
    key, sub = jax.random.split(key)
    params, state, loss = epoch(params, state, sub)
  return float(loss), float(accuracy(params))


def main(argv=None):
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    '--batch-sizes',
    type=int,
    nargs='+',
    default=[32, 128, 512, 1024],
    help='batch sizes to compare',
  )
  parser.add_argument(
    '--members',
    type=int,
    default=8,
    help='K microbatches per batch (must divide each size)',
  )
  parser.add_argument(
    '--epochs', type=int, default=30, help='passes over the training set'
  )
  parser.add_argument(
    '--seeds', type=int, default=3, help='number of seeds (runs) per method'
  )
  parser.add_argument(
    '--adam-lr',
    type=float,
    default=3e-3,
    help='learning rate of the Adam-based methods',
  )
  parser.add_argument(
    '--sgd-lr',
    type=float,
    default=0.05,
    help='learning rate of the SGD-based methods',
  )
  parser.add_argument(
    '--hidden', type=int, default=128, help='width of the hidden layer'
  )
  parser.add_argument(
    '--plot',
    default=str(OUTPUTS / 'large_batch_gsnr.png'),
    help="output PNG path ('' to skip)",
  )
  parser.add_argument(
    '--lr-sweep',
    action='store_true',
    help='also sweep learning rates at the largest batch',
  )
  parser.add_argument(
    '--smoke',
    action='store_true',
    help='tiny run for CI: 2 batch sizes, 2 epochs, 1 seed, lr x1 and x8',
  )
  args = parser.parse_args(argv)
  if args.smoke:
    args.batch_sizes, args.epochs, args.seeds = [64, 256], 2, 1

  digits = load_digits()
  x = (digits.data / 16.0).astype(np.float32)
  y = digits.target.astype(np.int32)
  x_tr, x_te, y_tr, y_te = train_test_split(
    x, y, test_size=0.2, random_state=0, stratify=y
  )
  data = tuple(map(jnp.asarray, (x_tr, x_te, y_tr, y_te)))
  names = list(optimizers(args.adam_lr, args.sgd_lr))
  results = {n: [] for n in names}  # name -> [(mean, std)] per batch size

  start = time.perf_counter()
  print(
    f'digits, {args.epochs} epochs, K={args.members} microbatches, '
    f'{args.seeds} seed(s); test accuracy mean +- std'
  )
  header = f'{"batch":>6} ' + ' '.join(f'{n:>15}' for n in names)
  print(header)
  for bs in tqdm(
    args.batch_sizes, desc='batch sizes', leave=False, disable=None
  ):
    row = []
    for name in names:
      accs = []
      for seed in range(args.seeds):
        tx = optimizers(args.adam_lr, args.sgd_lr)[name]
        _, acc = train(
          tx, data, bs, args.members, args.epochs, seed, args.hidden
        )
        accs.append(acc)
      results[name].append((np.mean(accs), np.std(accs)))
      row.append(f'{np.mean(accs):.4f}+-{np.std(accs):.4f}')
    print(f'{bs:>6} ' + ' '.join(f'{r:>15}' for r in row))
  if args.lr_sweep:
    bs = args.batch_sizes[-1]
    print(f'learning-rate control at batch {bs}:')
    for mult in (1, 8) if args.smoke else (1, 2, 4, 8):
      opts = optimizers(mult * args.adam_lr, mult * args.sgd_lr)
      row = []
      for name in names:
        accs = [
          train(
            opts[name], data, bs, args.members, args.epochs, seed, args.hidden
          )[1]
          for seed in range(args.seeds)
        ]
        row.append(f'{name} {np.mean(accs):.4f}+-{np.std(accs):.4f}')
      print(f'  lr x{mult}: ' + ' | '.join(row))
  print(f'done in {time.perf_counter() - start:.1f}s')

  if args.plot:
    import matplotlib  # noqa: PLC0415  (optional, only for the plot)

    matplotlib.use('Agg')
    from matplotlib import pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(6, 4))
    styles = {'adam': 'C0--', 'vr_adam': 'C0-', 'sgd': 'C1--', 'vr_sgd': 'C1-'}
    for name in names:
      m = np.array([r[0] for r in results[name]])
      s = np.array([r[1] for r in results[name]])
      ax.errorbar(
        args.batch_sizes, m, yerr=s, fmt=styles[name], label=name, capsize=3
      )
    ax.set_xscale('log', base=2)
    ax.set_xlabel('batch size (fixed epochs)')
    ax.set_ylabel('test accuracy')
    ax.set_title(f'digits, K={args.members} microbatches per batch')
    ax.legend()
    fig.tight_layout()
    path = pathlib.Path(args.plot)
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f'saved {path}')
  return results


if __name__ == '__main__':
  main()
