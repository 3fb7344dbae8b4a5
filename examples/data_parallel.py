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
"""Data-parallel training on digits: per-device gradients as the population.

Each device of a 1-D mesh ``('data',)`` takes its shard of the batch and
computes its own gradient inside ``jax.shard_map``; the aggregator combines
the per-device gradients over the named axis
(``PopulationAxes(axis=None, axis_name='data')``) and the optimiser step is
replicated. On CPU the script simulates 8 devices; on GPU/TPU it uses the
real ones unchanged::

  python examples/data_parallel.py --aggregator coordinate_median
  python examples/data_parallel.py --smoke     # seconds, for CI
  python examples/data_parallel.py --check     # one step vs one device

Prints the throughput (examples per second after compilation) and the test
accuracy.
"""

import argparse
import os
import sys
import time


def _cpu_devices(argv) -> int:
  return (
    int(argv[argv.index('--cpu-devices') + 1]) if '--cpu-devices' in argv else 8
  )


# Before JAX starts: the number of simulated CPU devices (the flag only
# affects the host platform; GPUs and TPUs are used as they are).
os.environ.setdefault(
  'XLA_FLAGS',
  f'--xla_force_host_platform_device_count={_cpu_devices(sys.argv)}',
)

import _digits  # noqa: E402
import jax  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402
import optax  # noqa: E402
from tqdm import tqdm  # noqa: E402

import optax_ext  # noqa: E402
from optax_ext import alignment  # noqa: E402
from optax_ext import population  # noqa: E402
from optax_ext import robust  # noqa: E402

DEVICES = optax_ext.PopulationAxes(axis=None, axis_name='data')


def aggregators(axes=DEVICES):
  return {
    'mean': lambda: optax_ext.aggregate_by_mean(axes),
    'coordinate_median': lambda: robust.aggregate_by_coordinate_median(axes),
    'trimmed_mean': lambda: robust.aggregate_by_trimmed_mean(1, axes),
    'geometric_median': lambda: robust.aggregate_by_geometric_median(axes=axes),
    'upgrad': lambda: alignment.aggregate_by_upgrad(axes=axes),
  }


def check_against_stacked(local_step, mesh, params, state, x, y, make):
  """Max |difference| of one step: shard_map vs the stacked population.

  The same per-device gradients, stacked on one device
  (``PopulationAxes(axis=0)``) and aggregated there: the coordinate-sharded
  collectives must give the single-device numbers.
  """
  sharded = jax.jit(
    jax.shard_map(
      local_step,
      mesh=mesh,
      in_specs=(P(), P(), P('data'), P('data')),
      out_specs=(P(), P(), P()),
    )
  )
  got = sharded(params, state, x, y)[0]
  n = mesh.shape['data']
  _, _, loss_fn, _ = _digits.model(64, 0)
  xs = x.reshape(n, -1, *x.shape[1:])
  ys = y.reshape(n, -1, *y.shape[1:])
  pop = jax.vmap(jax.grad(loss_fn), in_axes=(None, 0, 0))(params, xs, ys)
  tx = optax.chain(make(), optax.adam(3e-3))
  updates, _ = tx.update(pop, tx.init(params), params)
  want = optax.apply_updates(params, updates)
  diffs = jax.tree.map(lambda a, b: float(abs(a - b).max()), got, want)
  return max(jax.tree.leaves(diffs))


def main(argv=None):
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    '--aggregator',
    default='mean',
    choices=sorted(aggregators()),
    help='the rule that reduces the gradient population',
  )
  parser.add_argument(
    '--epochs', type=int, default=10, help='passes over the training set'
  )
  parser.add_argument(
    '--per-device-batch',
    type=int,
    default=16,
    help='examples per device per step',
  )
  parser.add_argument(
    '--learning-rate',
    type=float,
    default=3e-3,
    help='learning rate of the optimiser',
  )
  parser.add_argument(
    '--cpu-devices',
    type=int,
    default=8,
    help='simulated CPU devices (XLA flag set before JAX starts)',
  )
  parser.add_argument(
    '--smoke', action='store_true', help='tiny run for CI (seconds)'
  )
  parser.add_argument(
    '--check',
    action='store_true',
    help='first compare one step with the stacked single-device result',
  )
  args = parser.parse_args(argv)
  if args.smoke:
    args.epochs = 1
  n_dev = jax.device_count()
  mesh = jax.make_mesh(
    (n_dev,), ('data',), axis_types=(jax.sharding.AxisType.Auto,)
  )
  x_train, x_test, y_train, y_test = _digits.load(0)
  graphdef, params, loss_fn, accuracy_fn = _digits.model(64, 0)
  tx = optax.chain(
    aggregators()[args.aggregator](), optax.adam(args.learning_rate)
  )
  state = tx.init(params)
  batch = args.per_device_batch * n_dev
  steps = len(x_train) // batch

  def local_step(params, state, x, y):
    # Per-device gradient: mark the replicated params as varying first,
    # or shard_map returns the gradient already summed over devices.
    local_params = population.vary_like(params, x, 'data')
    loss, grads = jax.value_and_grad(loss_fn)(local_params, x, y)
    updates, state = tx.update(grads, state, params)
    return (
      optax.apply_updates(params, updates),
      state,
      jax.lax.pmean(loss, 'data'),
    )

  if args.check:
    assert args.learning_rate == 3e-3, 'the check uses the default rate'
    diff = check_against_stacked(
      local_step,
      mesh,
      params,
      state,
      x_train[: args.per_device_batch * n_dev],
      y_train[: args.per_device_batch * n_dev],
      aggregators(optax_ext.PopulationAxes())[args.aggregator],
    )
    print(f'check: shard_map vs stacked on one device, max |diff| {diff:.2e}')
  step = jax.jit(
    jax.shard_map(
      local_step,
      mesh=mesh,
      in_specs=(P(), P(), P('data'), P('data')),
      out_specs=(P(), P(), P()),
    ),
    donate_argnums=(0, 1),
  )
  key = jax.random.key(0)
  print(
    f'{n_dev} {jax.devices()[0].platform} device(s), aggregator '
    f'{args.aggregator}, batch {batch} ({args.per_device_batch} per device)'
  )
  seen, elapsed = 0, 0.0
  for epoch in tqdm(
    range(args.epochs), desc='epochs', leave=False, disable=None
  ):
    key, sub = jax.random.split(key)
    order = jax.random.permutation(sub, len(x_train))
    for i in range(steps):
      idx = order[i * batch : (i + 1) * batch]
      t0 = time.perf_counter()
      params, state, loss = step(params, state, x_train[idx], y_train[idx])
      loss.block_until_ready()
      if epoch or i:  # exclude the compilation step
        elapsed += time.perf_counter() - t0
        seen += batch
    acc = float(accuracy_fn(params, x_test, y_test))
    print(
      f'  epoch {epoch + 1}: loss {float(loss):.4f}  test accuracy {acc:.4f}'
    )
  rate = seen / elapsed if elapsed else float('nan')
  print(f'throughput {rate:,.0f} examples/s; final test accuracy {acc:.4f}')
  del graphdef
  return acc


if __name__ == '__main__':
  main()
