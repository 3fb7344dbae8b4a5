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
"""Benchmarks: step time against the memory-traffic bound, in one run.

Measures, in one process so every ratio shares the same machine state:

1. memory bandwidth: the stream kernel ``a = b + c`` on large float32 arrays
   (``3N`` bytes moved) and a read-only pass ``sum(b)`` (``N`` bytes). On the
   development machine writes are far slower than reads (write-allocate
   traffic), so the stream figure alone overstates what a read-heavy
   reduction costs. We derive a read bandwidth ``R`` (from the sum) and a
   write bandwidth ``W`` from ``t_add = 2N/R + N/W``;
2. for every aggregator, the jitted ``update`` step on a stacked population
   of ``K`` members of ``D`` float32 parameters, for several ``K``: median
   wall time after warm-up (``block_until_ready``, state donated), and its
   ratio to the memory-traffic bound ``bytes_read / R + bytes_written / W``
   (read: ``K*D`` plus state; written: ``D`` plus state). Also reported: the
   ratio to one pass over the members plus the output, and to the plain
   stream bound ``all bytes / stream bandwidth`` (below 1 for read-heavy
   reductions on such machines).

Writes JSON and a Markdown table under ``benchmarks/results/``::

  python benchmarks/run.py            # full: D = 1M, K = 2..32
  python benchmarks/run.py --quick    # a few seconds; asserts nothing
"""

import argparse
import datetime
import json
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import optax_ext
from optax_ext import variance

RESULTS = pathlib.Path(__file__).parent / 'results'


def _median_time(fn, args, repeats, warmup=2):
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def bandwidths(n: int, repeats: int) -> dict[str, float]:
  """Stream, read and derived write bandwidths, in bytes per second."""
  b = jnp.ones(n, jnp.float32)
  c = jnp.full(n, 2.0, jnp.float32)
  t_add = _median_time(jax.jit(lambda b, c: b + c), (b, c), repeats)
  t_read = _median_time(jax.jit(jnp.sum), (b,), repeats)
  read = n * 4 / t_read
  write_time = t_add - 2 * n * 4 / read
  write = n * 4 / write_time if write_time > 0 else 3 * n * 4 / t_add
  return {'stream': 3 * n * 4 / t_add, 'read': read, 'write': write}


# name -> (factory, param-sized float32 state buffers read, written per step)
AGGREGATORS = {
  'aggregate_by_mean': (optax_ext.aggregate_by_mean, 0, 0),
  'aggregate_by_sum': (optax_ext.aggregate_by_sum, 0, 0),
  'aggregate_by_gsnr': (variance.aggregate_by_gsnr, 0, 1),
  'aggregate_by_gsnr(ema)': (
    lambda: variance.aggregate_by_gsnr(ema_decay=0.9),
    1,
    1,
  ),
}


def bench_aggregators(d, ks, bw, repeats):
  rows = []
  for name, (factory, reads, writes) in AGGREGATORS.items():
    tx = factory()
    params = jnp.zeros(d, jnp.float32)
    step = jax.jit(lambda g, s, p, tx=tx: tx.update(g, s, p), donate_argnums=1)
    for k in ks:
      population = jax.random.normal(jax.random.key(k), (k, d), jnp.float32)
      s = tx.init(params)  # fresh: the previous state buffers were donated

      def run(g, p, step=step):
        nonlocal s
        u, s = step(g, s, p)
        return u

      t = _median_time(run, (population, params), repeats)
      read_b, write_b = (k * d + reads * d) * 4, (d + writes * d) * 4
      bound = read_b / bw['read'] + write_b / bw['write']
      one_pass = k * d * 4 / bw['read'] + d * 4 / bw['write']
      stream = (read_b + write_b) / bw['stream']
      rows.append(
        {
          'transform': name,
          'K': k,
          'D': d,
          'seconds': t,
          'bound_seconds': bound,
          'ratio_to_bound': t / bound,
          'ratio_to_one_pass_plus_output': t / one_pass,
          'ratio_to_stream_bound': t / stream,
        }
      )
      print(
        f'{name:24s} K={k:3d} D={d:>9,d} {t * 1e3:8.3f} ms  '
        f'x{t / bound:5.2f} bound  x{t / one_pass:5.2f} one pass  '
        f'x{t / stream:5.2f} stream bound'
      )
  return rows


def markdown(meta, rows):
  lines = [
    f'Machine: {meta["machine"]}; jax {meta["jax"]}, optax {meta["optax"]}; '
    f'{meta["date"]}. Bandwidth: stream (a = b + c) '
    f'{meta["stream_gb_s"]:.1f} GB/s, read {meta["read_gb_s"]:.1f} GB/s, '
    f'derived write {meta["write_gb_s"]:.1f} GB/s.',
    '',
    '| transform | K | D | step (ms) | bound (ms) | x bound | '
    'x one pass + output | x stream bound |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for r in rows:
    lines.append(
      f'| {r["transform"]} | {r["K"]} | {r["D"]:,} | '
      f'{r["seconds"] * 1e3:.3f} | {r["bound_seconds"] * 1e3:.3f} | '
      f'{r["ratio_to_bound"]:.2f} | '
      f'{r["ratio_to_one_pass_plus_output"]:.2f} | '
      f'{r["ratio_to_stream_bound"]:.2f} |'
    )
  return '\n'.join(lines) + '\n'


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    '--quick',
    action='store_true',
    help='tiny sizes for a CI smoke run (asserts nothing)',
  )
  parser.add_argument('--out', default=str(RESULTS))
  args = parser.parse_args(argv)
  if args.quick:
    d, ks, repeats, n_stream = 100_000, [2, 8], 3, 1_000_000
  else:
    d, ks, repeats, n_stream = 1_000_000, [2, 4, 8, 16, 32], 20, 50_000_000
  bw = bandwidths(n_stream, repeats)
  print(
    f'bandwidth over {n_stream:,} float32: stream {bw["stream"] / 1e9:.2f}, '
    f'read {bw["read"] / 1e9:.2f}, write {bw["write"] / 1e9:.2f} GB/s'
  )
  rows = bench_aggregators(d, ks, bw, repeats)
  meta = {
    'machine': f'{platform.machine()}, {jax.device_count()} x '
    f'{jax.devices()[0].platform}, {platform.processor() or "cpu"}',
    'jax': jax.__version__,
    'optax': optax.__version__,
    'stream_gb_s': bw['stream'] / 1e9,
    'read_gb_s': bw['read'] / 1e9,
    'write_gb_s': bw['write'] / 1e9,
    'date': datetime.date.today().isoformat(),
    'quick': args.quick,
  }
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  stem = 'quick' if args.quick else 'latest'
  (out / f'{stem}.json').write_text(
    json.dumps({'meta': meta, 'aggregators': rows}, indent=2)
  )
  (out / f'{stem}.md').write_text(markdown(meta, rows))
  print(f'wrote {out / (stem + ".json")} and .md')
  return rows


if __name__ == '__main__':
  main()
