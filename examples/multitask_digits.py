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
"""Three tasks on digits: gradient-space and loss-space multi-task rules.

One shared MLP trunk with three heads: the digit (10 classes), its parity
and whether it is >= 5. Every step takes the Jacobian of the three task
losses (a task population, ``alignment.task_jacobian``) and aggregates it
(mean, PCGrad, UPGrad, MGDA, CAGrad), or weights its rows by a loss-space
rule from ``optax_ext.scalarization`` (the gradient of a scalarized loss
is ``J^T dS/dL``: geometric mean, uncertainty weighting with learned
log-variances, DWA, GradNorm on the shared trunk's rows, FAMO from the
losses after each step); Adam follows.
Prints per-task test accuracy (mean +- std over seeds) and a conflict
statistic over training (mean pairwise cosine of the task
gradients, fraction of steps with a conflicting pair); saves a plot::

  python examples/multitask_digits.py           # ~1 min on CPU
  python examples/multitask_digits.py --smoke   # seconds, for CI
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
from optax_ext import population
from optax_ext import scalarization

# Figures go here unless --plot says otherwise (README, "Examples").
OUTPUTS = pathlib.Path(__file__).resolve().parent / 'outputs'

TASKS = ('digit', 'parity', '>=5')


def init(key, hidden):
  k1, k2, k3, k4 = jax.random.split(key, 4)
  glorot = jax.nn.initializers.glorot_normal()
  return {
    'trunk': {'w': glorot(k1, (64, hidden)), 'b': jnp.zeros(hidden)},
    'digit': {'w': glorot(k2, (hidden, 10)), 'b': jnp.zeros(10)},
    'parity': {'w': glorot(k3, (hidden, 2)), 'b': jnp.zeros(2)},
    'high': {'w': glorot(k4, (hidden, 2)), 'b': jnp.zeros(2)},
  }


def heads(params, x):
  h = jax.nn.relu(x @ params['trunk']['w'] + params['trunk']['b'])
  return [
    h @ params[name]['w'] + params[name]['b']
    for name in ('digit', 'parity', 'high')
  ]


def labels(y):
  return [y, y % 2, (y >= 5).astype(jnp.int32)]


def task_losses(params, x, y):
  ce = optax.softmax_cross_entropy_with_integer_labels
  return jnp.stack(
    [ce(o, t).mean() for o, t in zip(heads(params, x), labels(y), strict=True)]
  )


def methods():
  return {
    'mean': alignment.aggregate_by_weighting(alignment.mean_weighting),
    'pcgrad': alignment.aggregate_by_pcgrad(key=0, reduction='mean'),
    'upgrad': alignment.aggregate_by_upgrad(),
    'mgda': alignment.aggregate_by_mgda(),
    'cagrad': alignment.aggregate_by_cagrad(c=0.4),
  }


class LossSpace:
  """A loss-space rule as task weights ``w`` (the update is ``J^T w``).

  ``init(params)`` builds its state; ``weights(losses, jac, state)`` returns
  this step's weights and the next state; ``after_step(state, losses)``
  (optional) sees the same batch's losses after the step; ``end_epoch(state)``
  runs after every epoch.
  """

  def __init__(self, init, weights, end_epoch=lambda s: s, after_step=None):
    self.init, self.weights, self.end_epoch = init, weights, end_epoch
    self.after_step = after_step


def _uncertainty_weights(losses, jac, state):
  # Learned log-variances s, trained by their own Adam on dS/ds.
  del jac
  s, opt_state = state
  grad_l, grad_s = jax.grad(scalarization.scalarize_by_uncertainty, (0, 1))(
    losses, s
  )
  step, opt_state = _S_OPT.update(grad_s, opt_state)
  return grad_l, (s + step, opt_state)


_S_OPT = optax.adam(1e-2)


def _dwa_weights(losses, jac, state):
  del jac
  grad_l, state = jax.grad(
    lambda x, st: scalarization.scalarize_by_dwa(x, st), has_aux=True
  )(losses, state)
  return grad_l, state


def _gradnorm_weights(losses, jac, state):
  weights = scalarization.gradnorm_weights(state)
  # Each task's gradient on the shared trunk: the Jacobian's trunk rows.
  state = scalarization.gradnorm_update(
    state, losses, jac['trunk'], learning_rate=0.01, alpha=1.5
  )
  return weights, state


def _famo_weights(losses, jac, state):
  del jac
  grad_l, state = jax.grad(scalarization.scalarize_by_famo, has_aux=True)(
    losses, state
  )
  return grad_l, state


def loss_space_methods():
  k = len(TASKS)
  return {
    'geo-mean': LossSpace(
      lambda p: None,
      lambda losses, jac, s: (
        jax.grad(scalarization.scalarize_by_geometric_mean)(losses),
        s,
      ),
    ),
    'uw': LossSpace(
      lambda p: (jnp.zeros(k), _S_OPT.init(jnp.zeros(k))),
      _uncertainty_weights,
    ),
    'dwa': LossSpace(
      lambda p: scalarization.dwa_init(k),
      _dwa_weights,
      scalarization.dwa_end_epoch,
    ),
    'gradnorm': LossSpace(
      lambda p: scalarization.gradnorm_init(k), _gradnorm_weights
    ),
    'famo': LossSpace(
      lambda p: scalarization.famo_init(k),
      _famo_weights,
      after_step=scalarization.famo_update,
    ),
  }


def run(method, data, args, seed):
  x_train, x_test, y_train, y_test = data
  params = init(jax.random.key(seed), args.hidden)
  if isinstance(method, LossSpace):
    tx = optax.adam(args.learning_rate)
    rule = method
  else:  # an aggregator of the Jacobian
    tx = optax.chain(method, optax.adam(args.learning_rate))
    rule = LossSpace(lambda p: None, lambda losses, jac, s: (None, s))
  state = (tx.init(params), rule.init(params))
  jac_fn = alignment.task_jacobian(task_losses)
  steps = len(x_train) // args.batch_size

  @jax.jit
  def epoch(params, state, key):
    order = jax.random.permutation(key, len(x_train))[: steps * args.batch_size]
    xs = x_train[order].reshape(steps, args.batch_size, -1)
    ys = y_train[order].reshape(steps, args.batch_size)

    def step(carry, batch):
      p, (s, rule_state) = carry
      losses, jac = jac_fn(p, *batch)
      report = alignment.conflict_report(jac)
      weights, rule_state = rule.weights(losses, jac, rule_state)
      grads = jac if weights is None else population.combine(jac, weights)
      u, s = tx.update(grads, s, p)
      p = optax.apply_updates(p, u)
      if rule.after_step is not None:  # FAMO: the batch's losses, after
        rule_state = rule.after_step(rule_state, task_losses(p, *batch))
      stats = (losses, report.mean_cosine, report.num_conflicts > 0)
      return (p, (s, rule_state)), stats

    (params, (s, rule_state)), stats = jax.lax.scan(
      step, (params, state), (xs, ys)
    )
    return params, (s, rule.end_epoch(rule_state)), stats

  key = jax.random.key(seed)
  cosines, conflicts = [], []
  for _ in range(args.epochs):
    key, sub = jax.random.split(key)
    params, state, (_, cos, conflict) = epoch(params, state, sub)
    cosines.append(np.asarray(cos))
    conflicts.append(np.asarray(conflict))
  accs = [
    float(jnp.mean(jnp.argmax(o, -1) == t))
    for o, t in zip(heads(params, x_test), labels(y_test), strict=True)
  ]
  return accs, np.concatenate(cosines), np.concatenate(conflicts)


def main(argv=None):
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    '--epochs', type=int, default=10, help='passes over the training set'
  )
  parser.add_argument(
    '--batch-size', type=int, default=32, help='examples per step'
  )
  parser.add_argument(
    '--hidden', type=int, default=64, help='width of the hidden layer'
  )
  parser.add_argument(
    '--learning-rate',
    type=float,
    default=3e-3,
    help='learning rate of the optimiser',
  )
  parser.add_argument(
    '--seeds', type=int, default=3, help='number of seeds (runs) per method'
  )
  parser.add_argument(
    '--plot',
    default=str(OUTPUTS / 'multitask_digits.png'),
    help="output PNG path ('' to skip)",
  )
  parser.add_argument(
    '--smoke', action='store_true', help='tiny run for CI (seconds)'
  )
  args = parser.parse_args(argv)
  if args.smoke:
    args.epochs, args.seeds = 1, 1
  start = time.perf_counter()
  print(
    f'digits, tasks {TASKS}, {args.epochs} epochs, batch {args.batch_size}, '
    f'Adam {args.learning_rate}, {args.seeds} seed(s)'
  )
  header = ''.join(f'{t:>17s}' for t in TASKS)
  print(f'  {"rule":10s}{header} {"mean cos":>9s} {"conflict":>9s}')
  results = {}
  every = {**methods(), **loss_space_methods()}
  for name in tqdm(every, desc='methods', leave=False, disable=None):
    runs = [
      run(every[name], _digits.load(seed), args, seed)
      for seed in range(args.seeds)
    ]
    accs = np.array([r[0] for r in runs])
    cos = np.mean([r[1] for r in runs], axis=0)
    conflict = float(np.mean([r[2].mean() for r in runs]))
    results[name] = (accs, cos)
    cells = ''.join(
      f'   {m:.4f}+-{s:.4f}'
      for m, s in zip(accs.mean(0), accs.std(0), strict=True)
    )
    print(f'  {name:10s}{cells} {cos.mean():9.3f} {conflict:9.2f}')
  print(f'done in {time.perf_counter() - start:.1f}s')
  if args.plot:
    plt = _digits.pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / len(results)
    for i, (name, (accs, cos)) in enumerate(results.items()):
      a1.bar(np.arange(len(TASKS)) + i * width, accs.mean(0), width, label=name)
      window = 20
      smooth = np.convolve(cos, np.ones(window) / window, mode='valid')
      a2.plot(smooth, label=name, lw=1)
    a1.set_xticks(np.arange(len(TASKS)) + 0.4 - width / 2, TASKS)
    a1.set_ylim(0.8, 1.0)
    a1.set_ylabel('test accuracy')
    a1.legend(fontsize=7)
    a2.set_xlabel('step')
    a2.set_ylabel('mean pairwise cosine of task gradients')
    a2.legend(fontsize=7)
    fig.tight_layout()
    pathlib.Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=120)
    print(f'saved {args.plot}')
  return results


if __name__ == '__main__':
  main()
