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
"""Per-device memory and communication of every aggregator, from the HLO.

One member per device (``PopulationAxes(axis=None, axis_name='data')``),
``N`` simulated CPU devices, params of ``D`` float32. For each aggregator
in the test registry (``tests/registry.py``) the jitted step is compiled
under ``jax.shard_map`` and under global-view ``jax.jit`` (the population
sharded on its member axis, reshaped per device), and read:

* ``temp``: ``compiled.memory_analysis().temp_size_in_bytes`` per device;
* ``collective``: the bytes of every collective's result in
  ``compiled.as_text()`` (all-reduce, all-gather, all-to-all,
  collective-permute, reduce-scatter), per device.

Both are hardware-independent (they hold for GPU/TPU SPMD programs), so
the scaling claims are checked from them, not from wall time. Run as a
script (the device count must be set before JAX starts)::

  python benchmarks/scale.py --devices 8 --d 1048576 --json out.json
"""

import argparse
import json
import os
import re
import sys

_DTYPE_BYTES = {
  'f64': 8, 'f32': 4, 's32': 4, 'u32': 4, 'bf16': 2, 'f16': 2, 's16': 2,
  'u16': 2, 'pred': 1, 's8': 1, 'u8': 1, 's64': 8, 'u64': 8,
}  # fmt: skip
_COLLECTIVE = re.compile(
  r'=\s*(?P<shape>.*?)\s(?P<op>all-reduce|all-gather|all-to-all|'
  r'collective-permute|reduce-scatter)(?:-start)?\('
)
_ARRAY = re.compile(r'(?P<dtype>[a-z]+\d*)\[(?P<dims>[\d,]*)\]')


def collective_bytes(hlo_text: str) -> dict[str, int]:
  """Result bytes of each kind of collective in an HLO module's text."""
  out: dict[str, int] = {}
  for line in hlo_text.splitlines():
    match = _COLLECTIVE.search(line)
    if not match:
      continue
    total = 0
    for arr in _ARRAY.finditer(match['shape']):
      size = _DTYPE_BYTES.get(arr['dtype'], 4)
      for dim in filter(None, arr['dims'].split(',')):
        size *= int(dim)
      total += size
    out[match['op']] = out.get(match['op'], 0) + total
  return out


MODES = ('shard_map', 'jit', 'jit_member_sharded')


def measure(
  d: int,
  modes: tuple[str, ...] = MODES,
  seconds: bool = False,
  only: str = '',
) -> list[dict]:
  """Rows ``{name, mode, temp_bytes, collective_bytes, by_kind[, seconds]}``.

  Modes: ``shard_map`` (one member per device, named axis), ``jit``
  (global view, the population resharded to coordinates by
  ``population.shard_coordinates``) and ``jit_member_sharded`` (global
  view, left sharded on its member axis: what XLA does unaided).
  """
  import jax  # noqa: PLC0415  (after XLA_FLAGS)
  import jax.numpy as jnp  # noqa: PLC0415
  from jax.sharding import NamedSharding  # noqa: PLC0415
  from jax.sharding import PartitionSpec as P  # noqa: PLC0415
  import optax  # noqa: PLC0415

  # This tree's package and registry (also when copied into an older
  # checkout to measure it), ahead of any installed optax_ext.
  sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
  from tests import registry  # noqa: PLC0415

  n = jax.device_count()
  mesh = jax.make_mesh(
    (n,), ('data',), axis_types=(jax.sharding.AxisType.Auto,)
  )
  params = jnp.zeros((d,), jnp.float32)
  pop = jax.ShapeDtypeStruct(
    (n, d), jnp.float32, sharding=NamedSharding(mesh, P('data'))
  )
  rows = []
  for entry in registry.REGISTRY:
    if entry.kind not in ('aggregator', 'population') or not entry.layouts:
      continue  # (a wrapper of stacked task populations has no layouts)
    if only not in entry.name:
      continue
    extra = entry.extra_args(params)
    for mode in modes:
      row = {'name': entry.name, 'mode': mode}
      try:
        compiled = _compile(entry, mode, mesh, pop, params, extra, optax)
      except ValueError as err:  # a rule that cannot run at K = N
        rows.append({**row, 'skipped': str(err)})
        continue
      kinds = collective_bytes(compiled.as_text())
      row.update(
        temp_bytes=int(compiled.memory_analysis().temp_size_in_bytes),
        collective_bytes=sum(kinds.values()),
        by_kind=kinds,
      )
      if seconds:
        try:
          row['seconds'] = _time(compiled, pop, jax)
        except Exception as err:  # noqa: BLE001  (recorded, not fatal)
          row['time_error'] = f'{type(err).__name__}: {err}'[:300]
      rows.append(row)
  return rows


def _compile(entry, mode, mesh, pop, params, extra, optax):
  """The jitted aggregation step of ``entry`` in ``mode``, compiled."""
  import jax  # noqa: PLC0415
  from jax.sharding import PartitionSpec as P  # noqa: PLC0415

  import optax_ext  # noqa: PLC0415
  from optax_ext import population  # noqa: PLC0415

  named = mode == 'shard_map'
  axes = (
    optax_ext.PopulationAxes(axis=None, axis_name='data') if named else None
  )
  kwargs = {'axes': axes} if named else {}
  n = mesh.shape['data']
  sized = {  # registry kwargs sized for its K = 4, resized to K = N
    'aggregate_by_constant': {'weights': jax.numpy.full((n,), 1.0 / n)},
    'aggregate_by_gradvac': {'num_tasks': n},
  }.get(entry.name, {})
  tx = entry.make(**kwargs, **sized)
  if entry.kind == 'population':  # population -> population, then mean
    tx = optax.chain(tx, optax_ext.aggregate_by_mean(**kwargs))

  if named:

    def per_device(g):
      return tx.update(g[0], tx.init(params), params, **extra)[0]

    step = jax.jit(
      jax.shard_map(per_device, mesh=mesh, in_specs=P('data'), out_specs=P())
    )
  else:

    def step(g):
      if mode == 'jit':  # the recipe: reshard to coordinates first
        g = population.shard_coordinates(g, 'data', mesh=mesh)
      return tx.update(g, tx.init(params), params, **extra)[0]

    step = jax.jit(step)
  return step.lower(pop).compile()


def _time(compiled, pop, jax, repeats=7):
  """Median wall seconds of one call on concrete (random) data."""
  import time  # noqa: PLC0415

  import numpy as np  # noqa: PLC0415

  values = np.random.default_rng(0).normal(size=pop.shape).astype(np.float32)
  x = jax.device_put(values, pop.sharding)
  jax.block_until_ready(compiled(x))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(x))
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--devices', type=int, default=8)
  parser.add_argument('--d', type=int, default=1 << 20)
  parser.add_argument('--json', default=None)
  parser.add_argument(
    '--modes', default=','.join(MODES), help='comma-separated subset'
  )
  parser.add_argument(
    '--time', action='store_true', help='also the wall time per call'
  )
  parser.add_argument(
    '--only', default='', help='only registry names containing this'
  )
  args = parser.parse_args(argv)
  os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '')
    + f' --xla_force_host_platform_device_count={args.devices}'
  )
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  rows = measure(
    args.d, tuple(args.modes.split(',')), args.time, only=args.only
  )
  unit = 4 * args.d
  for r in rows:
    if 'skipped' in r:
      print(f'{r["name"]:40s} {r["mode"]:18s} skipped: {r["skipped"][:60]}')
      continue
    wall = f'  {r["seconds"] * 1e3:8.2f} ms' if 'seconds' in r else ''
    print(
      f'{r["name"]:40s} {r["mode"]:18s} N={args.devices:3d} temp'
      f' {r["temp_bytes"] / unit:6.2f} D  collectives'
      f' {r["collective_bytes"] / unit:6.2f} D{wall}'
    )
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({'devices': args.devices, 'd': args.d, 'rows': rows}, f)


if __name__ == '__main__':
  main()
