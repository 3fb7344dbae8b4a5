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
"""Memory of a jitted train step: vmapped vs memory-lean populations.

An MLP ``784 -> h1 -> h2 -> 10`` (tanh, float32, ``D`` params), a batch of ``K``
microbatches, and for each aggregator the train step (gradients of the
population, aggregation, SGD with momentum, params update) in two forms:

* **vmapped**: ``grad_population(loss, K)(params, batch)`` then the
  aggregator on the ``[K, D]`` stack;
* **lean**: ``population.microbatches(loss, params, batch, K)`` handed to
  the same aggregator (streamed statistics, or the Gramian column by
  column).

Reported per step: XLA's temporaries (``memory_analysis()``, hardware-
independent), in units of ``D`` (the bytes of one gradient), the step time
(median on this machine), and the largest relative difference between the
two updates. ``python benchmarks/memory.py --h1 3000 --h2 2400 --k 32``
(D = 9.6M) is the issue's configuration; ``benchmarks/run.py --only memory``
runs it and writes ``results/memory.{json,md}``.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_ext
from optax_ext import alignment
from optax_ext import population
from optax_ext import robust
from optax_ext import variance


def methods():
  """``name -> (make, rtol)``: the aggregators of the issue's table."""
  return {
    'mean': (optax_ext.aggregate_by_mean, 1e-5),
    'gsnr': (variance.aggregate_by_gsnr, 1e-5),
    'krum (f=1)': (lambda: robust.aggregate_by_krum(num_byzantine=1), 1e-5),
    'geometric median': (
      lambda: robust.aggregate_by_geometric_median(ftol=0.0, maxiter=50),
      1e-3,
    ),
    'centered clipping': (
      lambda: robust.aggregate_by_centered_clipping(threshold=0.1),
      1e-5,
    ),
    'upgrad': (alignment.aggregate_by_upgrad, 1e-4),
  }


def _mlp(h1, h2, seed=0):
  rng = np.random.default_rng(seed)
  sizes = [(784, h1), (h1, h2), (h2, 10)]
  params = [
    {
      'w': jnp.asarray(rng.normal(size=s) / np.sqrt(s[0]), jnp.float32),
      'b': jnp.zeros(s[1], jnp.float32),
    }
    for s in sizes
  ]

  def loss(p, batch):
    h = batch['x']
    for i, layer in enumerate(p):
      h = h @ layer['w'] + layer['b']
      if i < len(p) - 1:
        # tanh, not ReLU: the two forms round the pre-activations
        # differently in the last bit, and a ReLU exactly at its kink then
        # flips, moving one example's contribution (6.6% of the largest
        # coordinate of a 3000 x 2400 layer's gradient was measured: the
        # float32 full-batch gradient itself is 1e-3 from float64 there).
        h = jnp.tanh(h)
    logp = jax.nn.log_softmax(h)
    return -jnp.mean(jnp.take_along_axis(logp, batch['y'][:, None], 1))

  return params, loss


def _batch(k, per_microbatch, seed=1):
  rng = np.random.default_rng(seed)
  n = k * per_microbatch
  # Microbatches of different difficulty, so the members differ.
  scale = np.repeat(1.0 + np.arange(k) / k, per_microbatch)[:, None]
  return {
    'x': jnp.asarray(rng.normal(size=(n, 784)) * scale, jnp.float32),
    'y': jnp.asarray(rng.integers(0, 10, size=n), jnp.int32),
  }


def measure(h1, h2, k, per_microbatch=8, repeats=3, only=None):
  """Rows ``{method, form, temp_bytes, d_bytes, seconds, rel_diff}``."""
  params, loss = _mlp(h1, h2)
  batch = _batch(k, per_microbatch)
  d_bytes = 4 * sum(x.size for x in jax.tree.leaves(params))
  rows = []
  for name, (make, rtol) in methods().items():
    if only and only not in name:
      continue
    # SGD with momentum after the aggregator: linear in the aggregate, so
    # the updates compare the aggregates (Adam's first step is ~sign(g)).
    tx = optax.chain(make(), optax.sgd(1e-2, momentum=0.9))
    updates = {}
    for form in ('vmapped', 'lean'):

      def step(p, s, b, form=form, tx=tx):
        if form == 'lean':
          pop = population.microbatches(loss, p, b, k)
        else:
          pop = population.grad_population(loss, k)(p, b)[1]
        u, s = tx.update(pop, s, p)
        return optax.apply_updates(p, u), s, u

      state = tx.init(params)
      compiled = jax.jit(step).lower(params, state, batch).compile()
      temp = int(compiled.memory_analysis().temp_size_in_bytes)
      _, _, u = compiled(params, state, batch)
      jax.block_until_ready(u)
      times = []
      for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(params, state, batch))
        times.append(time.perf_counter() - t0)
      updates[form] = u
      rows.append(
        {
          'method': name,
          'form': form,
          'temp_bytes': temp,
          'd_bytes': d_bytes,
          'seconds': statistics.median(times),
          'rtol': rtol,
        }
      )
    diff = max(
      float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30))
      for a, b in zip(
        jax.tree.leaves(updates['lean']),
        jax.tree.leaves(updates['vmapped']),
        strict=True,
      )
    )
    rows[-1]['rel_diff'] = diff
    rows[-2]['rel_diff'] = diff
  return rows


def peak_rss_growth(name, form, h1, h2, k, per_microbatch=8) -> int:
  """Bytes the process's peak RSS grows by while one step runs.

  Measured in this process (call it in a fresh one): params, state and batch
  are placed and the step compiled first, the peak reset
  (``/proc/self/clear_refs``; ``ru_maxrss`` elsewhere), so the growth is
  what the step itself needs. A cross-check of XLA's
  ``temp_size_in_bytes``, which on XLA:CPU does not show the buffers of a
  while loop's body (the lean scans).
  """
  params, loss = _mlp(h1, h2)
  batch = _batch(k, per_microbatch)
  make, _ = methods()[name]
  tx = optax.chain(make(), optax.sgd(1e-2, momentum=0.9))
  state = tx.init(params)

  def step(p, s, b):
    if form == 'lean':
      pop = population.microbatches(loss, p, b, k)
    else:
      pop = population.grad_population(loss, k)(p, b)[1]
    u, s = tx.update(pop, s, p)
    return optax.apply_updates(p, u), s

  compiled = jax.jit(step).lower(params, state, batch).compile()
  jax.block_until_ready((params, state, batch))
  return rss_growth(lambda: compiled(params, state, batch))


def rss_growth(run) -> int:
  """Bytes the peak RSS grows by while ``run()`` computes (compile it and
  place its inputs first)."""
  # Reset the peak (Linux: the compilation's own peak can exceed a small
  # step's), then read the resident size and the peak around the step.
  reset = _reset_peak_rss()
  base = _rss_kib('VmRSS') if reset else _maxrss_kib()
  jax.block_until_ready(run())
  peak = _rss_kib('VmHWM') if reset else _maxrss_kib()
  return (peak - base) * 1024


def _reset_peak_rss() -> bool:
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')  # resets VmHWM to the current RSS
    return True
  except OSError:
    return False


def _rss_kib(field: str) -> int:
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith(field + ':'):
        return int(line.split()[1])
  raise RuntimeError(f'{field} not in /proc/self/status')


def _maxrss_kib() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def add_rss(rows, h1, h2, k, per_microbatch=8):
  """Adds ``rss_growth_bytes`` to each row, one fresh process per row."""
  for r in rows:
    out = subprocess.run(
      [sys.executable, __file__, '--rss-one', r['method'], r['form'],
       '--h1', str(h1), '--h2', str(h2), '--k', str(k),
       '--per-microbatch', str(per_microbatch)],
      check=True, capture_output=True, text=True,
    )  # fmt: skip
    r['rss_growth_bytes'] = int(out.stdout.strip().splitlines()[-1])
  return rows


def markdown(rows, meta) -> str:
  d = rows[0]['d_bytes']
  lines = [
    '# Memory of a train step: vmapped vs memory-lean populations',
    '',
    f'{meta["machine"]}, jax {meta["jax"]}, {meta["date"]}. MLP 784-'
    f'{meta["h1"]}-{meta["h2"]}-10 (D = {d // 4:,} float32), K = '
    f'{meta["k"]} microbatches of {meta["per_microbatch"]}; jitted step '
    '(gradients, aggregation, SGD with momentum, update). '
    'Temporaries from `memory_analysis()` in units of D (the bytes of one '
    'gradient); "RSS" = how much the peak resident memory of a fresh '
    'process grows while the step runs (the cross-check: XLA:CPU leaves '
    'the buffers of a while loop body, the lean scans, out of its '
    'temporaries); step time = median on this CPU; "diff" = max relative '
    'difference of the lean update from the vmapped one.',
    '',
    '| method | vmapped temp | vmapped RSS | lean temp | lean RSS | '
    'vmapped ms | lean ms | lean / vmapped time | diff |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  rss = lambda r: (
    f'{r["rss_growth_bytes"] / d:.1f} D' if 'rss_growth_bytes' in r else '-'
  )
  for name in dict.fromkeys(r['method'] for r in rows):
    v = next(r for r in rows if r['method'] == name and r['form'] == 'vmapped')
    lean = next(r for r in rows if r['method'] == name and r['form'] == 'lean')
    lines.append(
      f'| {name} | {v["temp_bytes"] / d:.1f} D | {rss(v)} | '
      f'{lean["temp_bytes"] / d:.2f} D | {rss(lean)} | '
      f'{v["seconds"] * 1e3:.0f} | {lean["seconds"] * 1e3:.0f} | '
      f'{lean["seconds"] / v["seconds"]:.2f}x | {lean["rel_diff"]:.1e} |'
    )
  return '\n'.join(lines) + '\n'


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--h1', type=int, default=3000)
  parser.add_argument('--h2', type=int, default=2400)
  parser.add_argument('--k', type=int, default=32)
  parser.add_argument('--per-microbatch', type=int, default=8)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--only', default=None)
  parser.add_argument('--json', default=None)
  parser.add_argument('--rss-one', nargs=2, metavar=('METHOD', 'FORM'))
  args = parser.parse_args(argv)
  if args.rss_one:
    print(
      peak_rss_growth(*args.rss_one, args.h1, args.h2, args.k,
                      args.per_microbatch)
    )  # fmt: skip
    return None
  rows = measure(
    args.h1, args.h2, args.k, args.per_microbatch, args.repeats, args.only
  )
  d = rows[0]['d_bytes']
  for r in rows:
    print(
      f'{r["method"]:20s} {r["form"]:8s} temp {r["temp_bytes"] / d:7.2f} D'
      f'  {r["seconds"] * 1e3:9.1f} ms  diff {r["rel_diff"]:.1e}'
    )
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({'args': vars(args), 'rows': rows}, f, indent=2)
  return rows


if __name__ == '__main__':
  main()
