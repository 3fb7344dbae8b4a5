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
"""A robust aggregator over 32 microbatches, without the 32 gradients.

A wide MLP on digits (64 -> 2048 -> 2048 -> 10, 4.3M float32 params) is
trained with ``nnx.Optimizer`` and a population aggregator over ``K = 32``
microbatch gradients per step. Vmapping them (``grad_population``) would
hold ``K`` gradients at once; a memory budget (``--budget-mb``, default 256
MB) rules that out. The memory-lean population
(``population.microbatches``) streams the microbatches instead. The script
reads both steps' temporaries from XLA (``memory_analysis()``; the vmapped
step is compiled, never run), checks the budget, and trains the lean one::

  python examples/lean_population.py                      # clip + mean
  python examples/lean_population.py --aggregator upgrad  # Gramian rule
  python examples/lean_population.py --smoke              # seconds, CI

Aggregators: ``clip_mean`` (each microbatch gradient clipped to norm 1,
then the mean: two streamed passes), ``gsnr`` (GSNR-scaled mean: one
pass), ``krum`` and ``upgrad`` (the ``K x K`` Gramian by forward-mode
passes, then one weighted pass: slower, see docs "Memory").
"""

import argparse
import time

import _digits
from flax import nnx
import jax
import jax.numpy as jnp
import optax
from tqdm import tqdm

import optax_ext
from optax_ext import alignment
from optax_ext import population
from optax_ext import robust
from optax_ext import variance


class WideMlp(nnx.Module):
  def __init__(self, hidden: int, *, rngs: nnx.Rngs):
    self.a = nnx.Linear(64, hidden, rngs=rngs)
    self.b = nnx.Linear(hidden, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, 10, rngs=rngs)

  def __call__(self, x):
    return self.out(jax.nn.relu(self.b(jax.nn.relu(self.a(x)))))


def aggregators():
  return {
    'clip_mean': lambda: optax.chain(
      robust.clip_each_by_global_norm(1.0), optax_ext.aggregate_by_mean()
    ),
    'gsnr': variance.aggregate_by_gsnr,
    'krum': lambda: robust.aggregate_by_krum(num_byzantine=2),
    'upgrad': alignment.aggregate_by_upgrad,
  }


def main(argv=None):
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    '--aggregator',
    default='clip_mean',
    choices=sorted(aggregators()),
    help='the rule that reduces the gradient population',
  )
  parser.add_argument(
    '--hidden', type=int, default=2048, help='width of the hidden layer'
  )
  parser.add_argument(
    '--microbatches',
    type=int,
    default=32,
    help='population size K (microbatch members per step)',
  )
  parser.add_argument(
    '--per-microbatch', type=int, default=8, help='examples per microbatch'
  )
  parser.add_argument(
    '--epochs', type=int, default=5, help='passes over the training set'
  )
  parser.add_argument(
    '--learning-rate',
    type=float,
    default=1e-3,
    help='learning rate of the optimiser',
  )
  parser.add_argument(
    '--budget-mb',
    type=float,
    default=256.0,
    help='memory budget the compiled steps are checked against (MB)',
  )
  parser.add_argument(
    '--smoke', action='store_true', help='tiny run for CI (seconds)'
  )
  args = parser.parse_args(argv)
  if args.smoke:
    args.hidden, args.epochs, args.budget_mb = 256, 1, 4.0
  k = args.microbatches
  x_train, x_test, y_train, y_test = _digits.load(0)
  model = WideMlp(args.hidden, rngs=nnx.Rngs(0))
  tx = optax.chain(
    aggregators()[args.aggregator](), optax.adam(args.learning_rate)
  )
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  graphdef, _ = nnx.split(model)

  def loss_fn(params, batch):
    logits = nnx.merge(graphdef, params)(batch['x'])
    return optax.softmax_cross_entropy_with_integer_labels(
      logits, batch['y']
    ).mean()

  def lean_step(model, optimizer, batch):
    params = nnx.state(model, nnx.Param)
    pop = population.microbatches(loss_fn, nnx.as_pure(params), batch, k)
    # nnx.Optimizer passes extra arguments to tx.update; the positional
    # gradient is only used for its structure on the lean path.
    optimizer.update(model, params, population=pop)

  def vmapped_step(model, optimizer, batch):
    params = nnx.state(model, nnx.Param)  # Params in, Params out (for wrt)
    grads = population.grad_population(loss_fn, k)(params, batch)[1]
    optimizer.update(model, grads)

  batch_size = k * args.per_microbatch
  example = {'x': x_train[:batch_size], 'y': y_train[:batch_size]}
  d = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  mb = 1024 * 1024
  temps = {}
  for name, fn in (('vmapped', vmapped_step), ('lean', lean_step)):
    compiled = nnx.jit(fn).lower(model, optimizer, example).compile()
    temps[name] = compiled.memory_analysis().temp_size_in_bytes / mb
  print(
    f'{d:,} params ({4 * d / mb:.1f} MB per gradient), K = {k} microbatches'
    f' of {args.per_microbatch}, aggregator {args.aggregator}'
  )
  for name, t in temps.items():
    verdict = 'fits' if t <= args.budget_mb else 'does NOT fit'
    print(
      f'  {name:8s} step temporaries {t:8.1f} MB: {verdict} the '
      f'{args.budget_mb:.0f} MB budget'
    )
  if temps['lean'] > args.budget_mb:
    raise SystemExit('the lean step does not fit the budget either')

  step = nnx.jit(lean_step)
  steps = len(x_train) // batch_size
  key = jax.random.key(0)
  t0 = None
  epochs = tqdm(range(args.epochs), desc='epochs', leave=False, disable=None)
  for epoch in epochs:
    key, sub = jax.random.split(key)
    order = jax.random.permutation(sub, len(x_train))
    for i in range(steps):
      idx = order[i * batch_size : (i + 1) * batch_size]
      step(model, optimizer, {'x': x_train[idx], 'y': y_train[idx]})
      if t0 is None:  # after the compilation step
        jax.block_until_ready(nnx.state(model))
        t0 = time.perf_counter()
    logits = model(x_test)
    acc = float(jnp.mean(jnp.argmax(logits, -1) == y_test))
    print(f'  epoch {epoch + 1}: test accuracy {acc:.4f}')
  jax.block_until_ready(nnx.state(model))
  per_step = (time.perf_counter() - t0) / max(args.epochs * steps - 1, 1)
  print(f'{per_step * 1e3:.0f} ms per lean step; final test accuracy {acc:.4f}')
  return acc, temps


if __name__ == '__main__':
  main()
