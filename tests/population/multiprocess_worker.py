"""One process of the two-process ``jax.distributed`` test.

``python tests/population/multiprocess_worker.py --process-id I --num-processes
2 --port P --out FILE`` joins a CPU cluster of 2 processes with 4 devices each
and runs :func:`run`, the same SPMD program ``test_multiprocess.py`` runs in one
process on 8 devices: 8 data-parallel workers (worker 7 sends corrupted
gradients) train a linear model with the coordinate median, with Krum and,
separately, with GradAlign. Process 0 writes the final parameters as JSON.
"""

import argparse
import json

import numpy as np

NUM_WORKERS = 8
DIM = 16
TRUE_W = (np.arange(DIM) % 5 - 2.0).astype(np.float32)


def run(steps: int = 10) -> dict:
  """Trains both models on the current devices; returns the final params."""
  import jax  # noqa: PLC0415 - configured by the caller first
  import jax.numpy as jnp  # noqa: PLC0415
  from jax.sharding import AxisType  # noqa: PLC0415
  from jax.sharding import NamedSharding  # noqa: PLC0415
  from jax.sharding import PartitionSpec as P  # noqa: PLC0415
  import optax  # noqa: PLC0415

  from optax_ext import alignment  # noqa: PLC0415
  from optax_ext import population  # noqa: PLC0415
  from optax_ext import robust  # noqa: PLC0415

  assert jax.device_count() == NUM_WORKERS, jax.devices()
  mesh = jax.make_mesh((NUM_WORKERS,), ('data',), axis_types=(AxisType.Auto,))
  rng = np.random.default_rng(0)
  # DIM >= NUM_WORKERS: the median and Krum run coordinate-sharded
  # (all_to_all across the processes), not gathered.
  x = rng.normal(size=(NUM_WORKERS, 32, DIM)).astype(np.float32)
  y = (x @ TRUE_W).astype(np.float32)
  y[-1] *= -10.0  # a Byzantine worker

  def global_array(value, spec):
    sharding = NamedSharding(mesh, spec)
    return jax.make_array_from_callback(
      value.shape, sharding, lambda index: value[index]
    )

  xs, ys = global_array(x, P('data')), global_array(y, P('data'))
  axes = population.PopulationAxes(axis=None, axis_name='data')
  tx = optax.chain(
    robust.aggregate_by_coordinate_median(axes=axes), optax.sgd(0.1)
  )
  tx_krum = optax.chain(
    robust.aggregate_by_krum(num_byzantine=1, axes=axes), optax.sgd(0.1)
  )

  def loss(w, batch):
    return jnp.mean((batch['x'] @ w - batch['y']) ** 2)

  def local_step(w_med, state, w_krum, state_krum, w_ga, x, y):
    batch = {'x': x[0], 'y': y[0]}
    # Per-device gradients (vary_like: not psum'd over the mesh).
    g = jax.grad(loss)(population.vary_like(w_med, batch, 'data'), batch)
    u, state = tx.update(g, state, w_med)
    g = jax.grad(loss)(population.vary_like(w_krum, batch, 'data'), batch)
    u_krum, state_krum = tx_krum.update(g, state_krum, w_krum)
    g_ga = alignment.gradalign_grad(loss, w_ga, batch, beta=0.1, axes=axes)
    return (
      optax.apply_updates(w_med, u),
      state,
      optax.apply_updates(w_krum, u_krum),
      state_krum,
      w_ga - 0.1 * g_ga,
    )

  step = jax.jit(
    jax.shard_map(
      local_step,
      mesh=mesh,
      in_specs=(P(), P(), P(), P(), P(), P('data'), P('data')),
      out_specs=(P(), P(), P(), P(), P()),
    )
  )
  replicated = NamedSharding(mesh, P())
  zeros = jnp.zeros(DIM)
  carry = jax.device_put(
    (zeros, tx.init(zeros), zeros, tx_krum.init(zeros), zeros), replicated
  )
  for _ in range(steps):
    # One step in flight at a time: XLA:CPU runs each device's part of a
    # collective on its own thread, and overlapping steps can starve them.
    carry = jax.block_until_ready(step(*carry, xs, ys))
  w_med, _, w_krum, _, w_ga = carry

  def local(a):
    return np.asarray(a.addressable_data(0)).tolist()

  return {
    'median': local(w_med),
    'krum': local(w_krum),
    'gradalign': local(w_ga),
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--process-id', type=int, required=True)
  parser.add_argument('--num-processes', type=int, required=True)
  parser.add_argument('--port', type=int, required=True)
  parser.add_argument('--out', required=True)
  args = parser.parse_args()

  import jax  # noqa: PLC0415

  jax.config.update('jax_platforms', 'cpu')
  jax.config.update('jax_num_cpu_devices', NUM_WORKERS // args.num_processes)
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(
    coordinator_address=f'localhost:{args.port}',
    num_processes=args.num_processes,
    process_id=args.process_id,
    initialization_timeout=60,
  )
  print(
    f'process {jax.process_index()}: {jax.local_device_count()} local of '
    f'{jax.device_count()} devices',
    flush=True,
  )
  result = run()
  if jax.process_index() == 0:
    with open(args.out, 'w') as f:
      json.dump(result, f)
  print(f'process {jax.process_index()}: done {result}', flush=True)
  jax.distributed.shutdown()


if __name__ == '__main__':
  main()
