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

1. the stream bandwidth of ``a = b + c`` on large float32 arrays (``3N``
   bytes per step), written *in place* into a donated buffer (``a <- a +
   s * c``), as an optimiser step with donated params and state is. Writing
   into a freshly allocated output instead costs page faults on every call
   and measured about 6x slower on the development machine; that figure is
   reported too but not used as the bound;
2. for every aggregator, the jitted ``update`` step on a stacked population
   of ``K`` members of ``D`` float32 parameters, for several ``K``, and its
   ratio to the memory-traffic bound ``bytes / stream bandwidth`` with bytes
   = ``K*D`` read + ``D`` written + state read and written; also the ratio to
   one pass over the members plus the output;
3. for every param-shaped optimiser, the jitted step on 10M float32 params
   with params and state donated: bytes = params read and written, grads
   read, state read and written (plus one more read of the gradient for the
   transforms in ``TWO_PASS``, which reduce before their elementwise step);
   plus compile time, state bytes per parameter, XLA's peak memory of the
   step (``memory_analysis``: arguments + non-aliased outputs +
   temporaries), and pytorch_optimizer's CPU ``step()`` on the same size
   where installed.

Step times are medians of repeats after warm-up (``block_until_ready``).
Writes JSON and a Markdown table under ``benchmarks/results/``::

  python benchmarks/run.py            # full: D = 1M, K = 2..32; 10M params
  python benchmarks/run.py --quick    # a few seconds; asserts nothing
  python benchmarks/run.py --only memory  # vmapped vs lean train step
  python benchmarks/run.py --only scale --before-tree /tmp/before
      # per-device HLO costs at N = 4..32 simulated devices (subprocesses)
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tables
import train_step

import optax_ext

RESULTS = pathlib.Path(__file__).parent / 'results'


def _peak_bytes(compiled) -> int | None:
  """XLA's peak memory of one compiled step: live arguments, outputs not
  aliased to a donated argument, and temporaries (``memory_analysis``)."""
  try:
    ma = compiled.memory_analysis()
  except (AttributeError, NotImplementedError):
    return None
  if ma is None:
    return None
  return (
    ma.argument_size_in_bytes
    + ma.output_size_in_bytes
    - ma.alias_size_in_bytes
    + ma.temp_size_in_bytes
  )


def bench_aggregators(d, ks, bw, repeats):
  rows = []
  for name, (factory, reads, writes) in tables.AGGREGATORS.items():
    tx = factory()
    params = jnp.zeros(d, jnp.float32)
    step = jax.jit(lambda g, s, p, tx=tx: tx.update(g, s, p), donate_argnums=1)
    for k in ks:
      # Members of different spreads (scale 1..K): in high dimension equal
      # spreads make every member equidistant from the mean, and Weiszfeld
      # would stop after one or two iterations.
      spread = jnp.arange(1, k + 1, dtype=jnp.float32)[:, None]
      population = spread * jax.random.normal(
        jax.random.key(k), (k, d), jnp.float32
      )
      s = tx.init(params)  # fresh: the previous state buffers were donated

      def run(g, p, step=step):
        nonlocal s
        u, s = step(g, s, p)
        return u

      try:
        peak = _peak_bytes(step.lower(population, s, params).compile())
        t = tables.median_time(run, (population, params), repeats)
      except ValueError as e:  # e.g. K too small for the trimming
        print(f'{name:24s} K={k:3d} skipped: {e}')
        continue
      moved = (k * d + d + (reads + writes) * d) * 4
      bound = moved / bw['stream']
      one_pass = (k * d + d) * 4 / bw['stream']
      read_once = k * d * 4 / bw['read']
      mean_t = next(
        (
          r['seconds']
          for r in rows
          if r['transform'] == 'aggregate_by_mean' and r['K'] == k
        ),
        t,
      )
      iterations = getattr(s, 'num_iterations', None)
      rows.append(
        {
          'transform': name,
          'K': k,
          'D': d,
          'iterations': None if iterations is None else int(iterations),
          'seconds': t,
          'bound_seconds': bound,
          'ratio_to_bound': t / bound,
          'ratio_to_one_pass_plus_output': t / one_pass,
          # The yardstick: reading the K * D floats once, at the
          # read-only bandwidth, and the plain mean (one read pass) timed in
          # the same run.
          'ratio_to_read_once': t / read_once,
          'ratio_to_mean': t / mean_t,
          'peak_bytes': peak,
        }
      )
      print(
        f'{name:24s} K={k:3d} D={d:>9,d} {t * 1e3:8.3f} ms  '
        f'x{t / bound:5.2f} bound  x{t / read_once:5.2f} read once  '
        f'x{t / mean_t:5.2f} mean'
        + (f'  peak {peak / 2**20:7.1f} MiB' if peak else '')
      )
  return rows


def weiszfeld_iteration_seconds(rows) -> dict[int, float]:
  """Geometric median: extra time per extra Weiszfeld iteration, per K.

  (t(10-iteration budget) - t(1 iteration)) / (iterations run - 1), with the
  iteration count read from the aggregator's state.
  """
  runs = {(r['transform'], r['K']): r for r in rows}
  out = {}
  for (name, k), many in runs.items():
    one = runs.get(('geometric_median(1 iteration)', k))
    if name == 'geometric_median(10 iterations)' and one:
      extra = (many.get('iterations') or 1) - 1
      if extra > 0:
        out[k] = (many['seconds'] - one['seconds']) / extra
  return out


def _state_bytes(tx, params):
  shapes = jax.eval_shape(tx.init, params)
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes))


def bench_transforms(shape, bw, repeats):
  """Jitted full-optimiser steps with donated params and state."""
  rows = []
  n = int(np.prod(shape))
  for name, (factory, peer) in tables.TRANSFORMS.items():
    tx = factory()
    params = jnp.zeros(shape, jnp.float32)
    grads = jax.random.normal(jax.random.key(0), shape, jnp.float32) * 1e-2

    def step(p, s, g, tx=tx):
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s

    jitted = jax.jit(step, donate_argnums=(0, 1))
    t0 = time.perf_counter()
    compiled = jitted.lower(params, tx.init(params), grads).compile()
    compile_s = time.perf_counter() - t0
    peak = _peak_bytes(compiled)
    state_b = _state_bytes(tx, params)
    carry = [params, tx.init(params)]

    def run(g, compiled=compiled, carry=carry):
      carry[0], carry[1] = compiled(carry[0], carry[1], g)
      return carry[0]

    t = tables.median_time(run, (grads,), repeats)
    moved = 4 * n * 2 + state_b + 4 * n + state_b  # read p, g, s; write p, s
    if name in tables.TWO_PASS:
      moved += 4 * n  # the reduction's own read of the gradient
    bound = moved / bw['stream']
    row = {
      'transform': name,
      'params': n,
      'seconds': t,
      'bound_seconds': bound,
      'ratio_to_bound': t / bound,
      'two_pass_bound': name in tables.TWO_PASS,
      'state_bytes_per_param': state_b / n,
      'compile_seconds': compile_s,
      'peak_bytes': peak,
      'peak_bytes_per_param': peak / n if peak else None,
      'torch_seconds': None,
    }
    if peer is not None:
      row['torch_seconds'] = _torch_step_time(peer, shape, repeats)
    rows.append(row)
    speed = (
      f'  pytorch_optimizer {row["torch_seconds"] * 1e3:8.2f} ms '
      f'(x{row["torch_seconds"] / t:5.1f} slower)'
      if row['torch_seconds']
      else ''
    )
    print(
      f'{name:26s} {t * 1e3:8.2f} ms  x{t / bound:5.2f} bound  '
      f'state {state_b / n:4.1f} B/param  '
      + (f'peak {peak / n:5.1f} B/param  ' if peak else '')
      + f'compile {compile_s:5.2f}s{speed}'
    )
  return rows


def _torch_step_time(peer, shape, repeats):
  """Median ``opt.step()`` time of a pytorch_optimizer class, or ``None``."""
  try:
    import pytorch_optimizer  # noqa: PLC0415
    import torch  # noqa: PLC0415
  except ImportError:
    return None
  cls_name, kwargs = peer
  p = torch.nn.Parameter(torch.zeros(shape))
  p.grad = torch.randn(shape) * 1e-2
  opt = getattr(pytorch_optimizer, cls_name)([p], **kwargs)

  def run():
    opt.step()
    return p

  for _ in range(2):
    run()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    run()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def _torchjd_time(cls_name, kwargs, jac, repeats):
  """Median time of a TorchJD aggregator on ``jac`` (numpy), or ``None``."""
  try:
    import torch  # noqa: PLC0415
    import torchjd.aggregation as tjd  # noqa: PLC0415

    agg = getattr(tjd, cls_name)(**kwargs)
    j = torch.tensor(jac)
    agg(j)  # warm-up (and optional-dependency check)
  except Exception as e:  # noqa: BLE001 - any missing backend: no peer
    print(f'  TorchJD {cls_name} unavailable: {type(e).__name__}: {e}')
    return None
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    agg(j)
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def bench_gramian(d, ks, repeats):
  """``population.gramian`` against torch's ``J @ J.T`` (its threads), timed
  interleaved in one run (bursts of calls, median per call).
  """
  try:
    import torch  # noqa: PLC0415
  except ImportError:
    torch = None
  rows = []
  for k in ks:
    jac = np.asarray(jax.random.normal(jax.random.key(k), (k, d), jnp.float32))
    population = jnp.asarray(jac)
    gram = jax.jit(optax_ext.population.gramian).lower(population).compile()
    j = torch.tensor(jac) if torch is not None else None
    ours, peer = [], []
    # Rounds of a few calls each, ours then torch's, the first call of each
    # burst not counted: torch's OpenMP threads spin for a while after a
    # call and would slow a JAX call that follows at once.
    for _ in range(max(10, repeats)):
      for _ in range(4):
        t0 = time.perf_counter()
        jax.block_until_ready(gram(population))
        ours.append(time.perf_counter() - t0)
      if j is not None:
        for _ in range(4):
          t0 = time.perf_counter()
          j @ j.T
          peer.append(time.perf_counter() - t0)
      del ours[-4], peer[-4:-3]
    t = float(np.median(ours))
    p = float(np.median(peer)) if j is not None else None
    rows.append(
      {
        'aggregator': 'gramian alone (vs torch J @ J.T)',
        'K': k,
        'D': d,
        'seconds': t,
        'compile_seconds': 0.0,
        'torchjd_seconds': p,
      }
    )
    line = f'gramian      K={k} D={d:,} {t * 1e3:8.2f} ms'
    if p:
      line += f'  torch J @ J.T {p * 1e3:8.2f} ms (x{p / t:.2f})'
    print(line)
  return rows


def bench_multitask(d, k, repeats):
  """Multi-task aggregators at K x D: ours (jit) vs TorchJD (CPU torch).

  The first rows are the K x K Gramian alone (``population.gramian``, which
  every Gramian rule calls) against torch's ``J @ J.T`` in the same run, at
  this K and at K = 32: the aggregators' cost is mostly this contraction.
  Then every rule at this K, and UPGrad, MGDA and DualProj again at K = 32.
  """
  rows = bench_gramian(d, (k, 32), repeats)
  rows += _bench_multitask_rules(d, k, tables.MULTITASK, repeats)
  big = {n: tables.MULTITASK[n] for n in ('upgrad', 'mgda', 'dualproj')}
  rows += _bench_multitask_rules(d, 32, big, max(3, repeats // 2))
  return rows


def _bench_multitask_rules(d, k, rules, repeats):
  rows = []
  jac = np.asarray(jax.random.normal(jax.random.key(0), (k, d), jnp.float32))
  population = jnp.asarray(jac)
  params = jnp.zeros(d, jnp.float32)
  for name, (factory, (cls_name, kwargs)) in rules.items():
    tx = factory()
    state = tx.init(params)
    t0 = time.perf_counter()
    step = jax.jit(tx.update).lower(population, state, params).compile()
    compile_s = time.perf_counter() - t0
    t = tables.median_time(
      lambda g, s, p, step=step: step(g, s, p)[0],
      (population, state, params),
      repeats,
    )
    peer = _torchjd_time(cls_name, kwargs, jac, max(3, repeats // 4))
    rows.append(
      {
        'aggregator': name,
        'K': k,
        'D': d,
        'seconds': t,
        'compile_seconds': compile_s,
        'torchjd_seconds': peer,
      }
    )
    print(
      f'{name:12s} K={k} D={d:,} {t * 1e3:8.2f} ms (compile {compile_s:.2f} s)'
      + (f'  TorchJD {peer * 1e3:8.2f} ms (x{peer / t:.1f})' if peer else '')
    )
  return rows


def multitask_markdown(rows):
  lines = [
    '| multi-task aggregator | K | D | step (ms) | compile (s) | '
    'TorchJD (ms) (gramian rows: torch `J @ J.T`) | speed-up |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ]
  for r in rows:
    peer = r['torchjd_seconds']
    lines.append(
      f'| {r["aggregator"]} | {r["K"]} | {r["D"]:,} | '
      f'{r["seconds"] * 1e3:.2f} | {r["compile_seconds"]:.2f} | '
      + (
        f'{peer * 1e3:.2f} | {peer / r["seconds"]:.1f}x |'
        if peer
        else '- | - |'
      )
    )
  return '\n'.join(lines) + '\n'


def chart(path, rows, transforms, multitask):
  """A PNG of the ratios: aggregators and transforms to their bound, and
  the multi-task speed-ups over TorchJD (skipped without matplotlib)."""
  try:
    import matplotlib  # noqa: PLC0415

    matplotlib.use('Agg')
    from matplotlib import pyplot as plt  # noqa: PLC0415
  except ImportError:
    print('matplotlib not installed: no chart')
    return False
  panels = []
  if rows:
    k_max = max(r['K'] for r in rows)
    picked = [r for r in rows if r['K'] == k_max]
    panels.append(
      (
        f'aggregators, K={k_max}: x time of reading K*D floats once',
        [r['transform'] for r in picked],
        [r['ratio_to_read_once'] for r in picked],
      )
    )
  if transforms:
    panels.append(
      (
        'optimiser steps: x memory-traffic bound',
        [r['transform'] for r in transforms],
        [r['ratio_to_bound'] for r in transforms],
      )
    )
  if multitask:
    peers = [r for r in multitask if r['torchjd_seconds']]
    panels.append(
      (
        'multi-task, K=8: speed-up over TorchJD',
        [r['aggregator'] for r in peers],
        [r['torchjd_seconds'] / r['seconds'] for r in peers],
      )
    )
  if not panels:
    return False
  fig, axes = plt.subplots(
    len(panels), 1, figsize=(9, 3.2 * len(panels)), squeeze=False
  )
  for ax, (title, names, values) in zip(axes[:, 0], panels, strict=True):
    ax.barh(names, values)
    ax.axvline(1.0, color='gray', lw=0.8)
    ax.set_xscale('log')
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


def markdown(meta, rows):
  lines = [
    f'Machine: {meta["machine"]}; jax {meta["jax"]}, optax {meta["optax"]}; '
    f'{meta["date"]}. Stream bandwidth (in place, the bound) '
    f'{meta["stream_gb_s"]:.1f} GB/s; into a fresh output '
    f'{meta["stream_fresh_output_gb_s"]:.1f} GB/s; read-only '
    f'{meta["read_gb_s"]:.1f} GB/s.',
    '',
  ]
  if rows:
    lines += [
      '| aggregator | K | D | step (ms) | bound (ms) | x bound | '
      'x read K*D once | x mean | peak (MiB) |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ]
  for r in rows:
    lines.append(
      f'| {r["transform"]}'
      + (f' (ran {r["iterations"]})' if r.get('iterations') else '')
      + f' | {r["K"]} | {r["D"]:,} | '
      f'{r["seconds"] * 1e3:.3f} | {r["bound_seconds"] * 1e3:.3f} | '
      f'{r["ratio_to_bound"]:.2f} | '
      + (
        f'{r["ratio_to_read_once"]:.2f} | {r["ratio_to_mean"]:.2f} | '
        if 'ratio_to_mean' in r
        else '- | - | '
      )
      + (f'{r["peak_bytes"] / 2**20:.1f} |' if r.get('peak_bytes') else '- |')
    )
  per_iteration = weiszfeld_iteration_seconds(rows)
  if per_iteration:
    lines += [
      '',
      'Geometric median, cost of one more Weiszfeld iteration (difference'
      ' of the two budgets over the extra iterations run): '
      + ', '.join(
        f'K = {k}: {t * 1e3:.2f} ms' for k, t in sorted(per_iteration.items())
      )
      + '.',
    ]
  return '\n'.join(lines) + '\n'


def transforms_markdown(rows):
  lines = [
    '| transform | params | step (ms) | bound (ms) | x bound | '
    'state B/param | peak B/param | compile (s) | pytorch_optimizer (ms) | '
    'speed-up |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for r in rows:
    torch_ms = r['torch_seconds']
    label = r['transform'] + (' (two-pass)' if r.get('two_pass_bound') else '')
    lines.append(
      f'| {label} | {r["params"]:,} | {r["seconds"] * 1e3:.2f} | '
      f'{r["bound_seconds"] * 1e3:.2f} | {r["ratio_to_bound"]:.2f} | '
      f'{r["state_bytes_per_param"]:.1f} | '
      + (
        f'{r["peak_bytes_per_param"]:.1f} | '
        if r.get('peak_bytes_per_param')
        else '- | '
      )
      + f'{r["compile_seconds"]:.2f} | '
      + (
        f'{torch_ms * 1e3:.2f} | {torch_ms / r["seconds"]:.1f}x |'
        if torch_ms
        else '- | - |'
      )
    )
  return '\n'.join(lines) + '\n'


SCALE_DEVICES = (4, 8, 16, 32)
# Wall times only up to 16 simulated devices: at 32 on this 2-core machine
# an XLA:CPU collective (one thread per device) stalled for over 20 minutes
# in the timed loop; the HLO figures do not need a run.
TIMED_MAX_DEVICES = 16


def bench_scale(devices, d, before_tree=None, keep_dir=None):
  """Per-device HLO costs and wall time at N simulated devices, per mode.

  Each N needs its own process (the device count is fixed when JAX starts):
  ``benchmarks/scale.py`` runs once per N for this tree (``shard_map`` and
  global-view ``jit`` resharded by ``population.shard_coordinates``) and,
  with ``before_tree`` (a checkout of an earlier commit), once more with
  this script copied into it (``shard_map`` and ``jit_member_sharded``,
  the global view as it was).
  """
  import shutil  # noqa: PLC0415
  import subprocess  # noqa: PLC0415
  import sys  # noqa: PLC0415
  import tempfile  # noqa: PLC0415

  here = pathlib.Path(__file__).resolve()
  trees = [('after', here.parents[1], 'shard_map,jit')]
  if before_tree:
    before = pathlib.Path(before_tree).resolve()
    shutil.copy(here.parent / 'scale.py', before / 'benchmarks' / 'scale.py')
    trees.append(('before', before, 'shard_map,jit_member_sharded'))
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for n in devices:
      for label, tree, modes in trees:
        out = pathlib.Path(tmp) / f'{label}_{n}.json'
        if keep_dir is not None:  # partial results survive a failed run
          out = pathlib.Path(keep_dir) / f'scale_{label}_{n}.json'
          if out.exists():
            print(f'reusing {out}')
            for r in json.loads(out.read_text())['rows']:
              rows.append({**r, 'devices': n, 'code': label})
            continue
        cmd = [
          sys.executable, str(tree / 'benchmarks' / 'scale.py'),
          '--devices', str(n), '--d', str(d), '--modes', modes,
          '--json', str(out),
        ]  # fmt: skip
        if n <= TIMED_MAX_DEVICES:
          cmd.append('--time')
        print(' '.join(cmd[1:]), flush=True)
        done = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
        if done.returncode:
          raise RuntimeError(f'{cmd[1]} failed:\n{done.stderr[-3000:]}')
        for r in json.loads(out.read_text())['rows']:
          rows.append({**r, 'devices': n, 'code': label})
  return rows


def scale_markdown(meta, rows, d):
  """One table per mode: per-device temporaries and collectives in D."""
  unit = 4 * d
  devices = sorted({r['devices'] for r in rows})
  lines = [
    '# Per-device cost of aggregation across N simulated devices',
    '',
    f'{meta["machine"]}, jax {meta["jax"]}, {meta["date"]}. One member per '
    f'device (K = N), params D = {d:,} float32. Per device, from the compiled '
    'HLO (hardware-independent): temporaries '
    '(`memory_analysis().temp_size_in_bytes`) / collective result bytes, in '
    'units of D (the bytes of one gradient); then the median wall time of a '
    'call on the simulated CPU devices (all N share 2 cores: the times '
    'compare modes and N, not hardware). "before" is the commit before '
    '"Populations at scale (1/2)".',
  ]
  cases = [
    ('after', 'shard_map', 'shard_map (named axis), now'),
    ('before', 'shard_map', 'shard_map (named axis), before'),
    ('after', 'jit', 'global-view jit, resharded by shard_coordinates, now'),
    (
      'before',
      'jit_member_sharded',
      'global-view jit, sharded on the member axis, before',
    ),
  ]
  for code, mode, title in cases:
    sel = [r for r in rows if r['code'] == code and r['mode'] == mode]
    if not sel:
      continue
    head = ' | '.join(f'N = {n}' for n in devices)
    lines += ['', f'## {title}', '', f'| aggregator | {head} |']
    lines.append('|---|' + '---:|' * len(devices))
    for name in dict.fromkeys(r['name'] for r in sel):
      cells = []
      for n in devices:
        r = next((x for x in sel if x['name'] == name and x['devices'] == n),
                 None)  # fmt: skip
        if r is None or 'skipped' in r:
          cells.append('-')
          continue
        if 'seconds' in r:
          wall = f'{r["seconds"] * 1e3:.1f} ms'
        else:
          wall = 'run failed' if 'time_error' in r else 'not timed'
        cells.append(
          f'{r["temp_bytes"] / unit:.2f} / '
          f'{r["collective_bytes"] / unit:.2f} D, {wall}'
        )
      lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    '--quick',
    action='store_true',
    help='tiny sizes for a CI smoke run (asserts nothing)',
  )
  parser.add_argument('--out', default=str(RESULTS))
  parser.add_argument(
    '--only',
    choices=(
      'aggregators',
      'transforms',
      'multitask',
      'scale',
      'memory',
      'train_step',
      'populations',
    ),
    help='run one section (written to <section>.json/.md)',
  )
  parser.add_argument(
    '--device',
    action='store_true',
    help='every section but scale and memory, including train_step, on '
    'the default JAX backend, written to <backend>-<device kind>.json/.md',
  )
  parser.add_argument(
    '--before-tree',
    default=None,
    help='with --only scale: a checkout of an earlier commit to compare',
  )
  args = parser.parse_args(argv)
  if args.only == 'scale':
    return _main_scale(args)
  if args.only == 'memory':
    return _main_memory(args)
  if args.only == 'train_step':
    return _main_train_step(args)
  if args.only == 'populations':
    return _main_populations(args)
  if args.quick:
    d, ks, repeats, n_stream = 100_000, [2, 8], 3, 1_000_000
  else:
    d, ks, repeats, n_stream = 1_000_000, [2, 4, 8, 16, 32], 20, 50_000_000
  bw = tables.bandwidths(n_stream, repeats)
  print(
    f'bandwidth over {n_stream:,} float32: stream in place '
    f'{bw["stream"] / 1e9:.2f} (the bound), into a fresh output '
    f'{bw["stream_fresh_output"] / 1e9:.2f}, read {bw["read"] / 1e9:.2f} GB/s'
  )
  wanted = lambda section: args.only in (None, section)
  rows = bench_aggregators(d, ks, bw, repeats) if wanted('aggregators') else []
  shape = (200, 500) if args.quick else (2000, 5000)  # 100k or 10M params
  transforms = (
    bench_transforms(shape, bw, max(3, repeats // 2))
    if wanted('transforms')
    else []
  )
  multitask = (
    bench_multitask(d, 8, max(3, repeats // 2)) if wanted('multitask') else []
  )
  steps = []
  if args.device:
    steps, _ = train_step.rows(args.quick)
  meta = {
    'machine': f'{platform.machine()}, {jax.device_count()} x '
    f'{jax.devices()[0].platform}, {platform.processor() or "cpu"}',
    'jax': jax.__version__,
    'optax': optax.__version__,
    'stream_gb_s': bw['stream'] / 1e9,
    'stream_fresh_output_gb_s': bw['stream_fresh_output'] / 1e9,
    'read_gb_s': bw['read'] / 1e9,
    'date': datetime.date.today().isoformat(),
    'quick': args.quick,
    'device_kind': jax.devices()[0].device_kind,
  }
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  stem = 'quick' if args.quick else (args.only or 'latest')
  if args.device:
    stem = ('quick-' if args.quick else '') + device_stem()
  (out / f'{stem}.json').write_text(
    json.dumps(
      {
        'meta': meta,
        'aggregators': rows,
        'transforms': transforms,
        'multitask': multitask,
        'train_step': steps,
      },
      indent=2,
    )
  )
  (out / f'{stem}.md').write_text(
    '\n'.join(
      md
      for md, present in (
        (markdown(meta, rows), True),
        (transforms_markdown(transforms), transforms),
        (multitask_markdown(multitask), multitask),
        (
          steps and train_step.markdown(steps, {**meta, **_step_meta(meta)}),
          steps,
        ),
      )
      if present
    )
  )
  if chart(out / f'{stem}.png', rows, transforms, multitask):
    print(f'wrote {out / (stem + ".json")}, .md and .png')
  else:
    print(f'wrote {out / (stem + ".json")} and .md')
  return rows


def device_stem():
  """``<backend>-<device kind>``, e.g. ``gpu-nvidia-a100-sxm4-40gb``."""
  kind = jax.devices()[0].device_kind.lower()
  kind = ''.join(c if c.isalnum() else '-' for c in kind).strip('-')
  return f'{jax.default_backend()}-{kind or "unknown"}'


def _step_meta(meta):
  """The train-step table's extra header fields."""
  try:
    import torch  # noqa: PLC0415

    threads = torch.get_num_threads()
  except ImportError:
    threads = None
  return {
    'sizes': '-'.join(map(str, train_step.SIZES)),
    'torch_threads': threads,
    'machine': meta['machine'],
  }


def _main_populations(args):
  import sys  # noqa: PLC0415

  here = pathlib.Path(__file__).parent
  sys.path.insert(0, str(here / 'workloads'))
  import populations  # noqa: PLC0415

  memory = populations.memory_rows(quick=args.quick)
  rows = populations.measure(quick=args.quick, rounds=2 if args.quick else 3)
  meta = {
    'machine': f'{platform.machine()}, {jax.device_count()} x '
    f'{jax.devices()[0].platform}, {platform.processor() or "cpu"}',
    'jax': jax.__version__,
    'date': datetime.date.today().isoformat(),
    'quick': args.quick,
  }
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  stem = 'quick_populations' if args.quick else 'populations'
  if args.device:
    stem = ('quick_' if args.quick else '') + 'populations-' + device_stem()
  (out / f'{stem}.json').write_text(
    json.dumps({'meta': meta, 'populations': rows, 'memory': memory}, indent=2)
  )
  (out / f'{stem}.md').write_text(populations.markdown(rows, meta, memory))
  print((out / f'{stem}.md').read_text())
  return rows


def _main_memory(args):
  import sys  # noqa: PLC0415

  sys.path.insert(0, str(pathlib.Path(__file__).parent))
  import memory  # noqa: PLC0415

  h1, h2, k = (128, 128, 6) if args.quick else (3000, 2400, 32)
  rows = memory.measure(h1, h2, k, per_microbatch=8, repeats=3)
  rows = memory.add_rss(rows, h1, h2, k, per_microbatch=8)
  meta = {
    'machine': f'{platform.machine()}, {platform.processor() or "cpu"}',
    'jax': jax.__version__,
    'date': datetime.date.today().isoformat(),
    'h1': h1,
    'h2': h2,
    'k': k,
    'per_microbatch': 8,
    'quick': args.quick,
  }
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  stem = 'quick_memory' if args.quick else 'memory'
  (out / f'{stem}.json').write_text(
    json.dumps({'meta': meta, 'memory': rows}, indent=2)
  )
  (out / f'{stem}.md').write_text(memory.markdown(rows, meta))
  print((out / f'{stem}.md').read_text())
  return rows


def _main_train_step(args):
  import subprocess  # noqa: PLC0415
  import sys  # noqa: PLC0415
  import tempfile  # noqa: PLC0415

  rows, bw = train_step.rows(args.quick)
  # The second pass in a fresh process with glibc's options in its
  # environment.
  with tempfile.TemporaryDirectory() as tmp:
    out_json = pathlib.Path(tmp) / 'kept.json'
    cmd = [sys.executable, train_step.__file__, '--kept', '--json', out_json]
    if args.quick:
      cmd.append('--quick')
    print('again in a fresh process, freed memory kept (glibc options):')
    env = {**os.environ, **train_step.KEEP_FREED_MEMORY}
    done = subprocess.run(cmd, check=False, env=env).returncode == 0
    if done and out_json.exists():
      rows += json.loads(out_json.read_text())
  meta = {
    'machine': f'{platform.machine()}, {platform.processor() or "cpu"}',
    'jax': jax.__version__,
    'optax': optax.__version__,
    'date': datetime.date.today().isoformat(),
    'stream_gb_s': bw['stream'] / 1e9,
    'quick': args.quick,
  }
  meta.update(_step_meta(meta))
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  stem = 'quick_train_step' if args.quick else 'train_step'
  (out / f'{stem}.json').write_text(
    json.dumps({'meta': meta, 'train_step': rows}, indent=2)
  )
  (out / f'{stem}.md').write_text(train_step.markdown(rows, meta))
  print(f'wrote {out / (stem + ".json")} and .md')
  return rows


def _main_scale(args):
  d = 1 << 14 if args.quick else 1 << 20
  devices = (4, 8) if args.quick else SCALE_DEVICES
  keep = pathlib.Path(args.out) / 'scale_parts'
  keep.mkdir(parents=True, exist_ok=True)
  rows = bench_scale(devices, d, args.before_tree, keep_dir=keep)
  meta = {
    'machine': f'{platform.machine()}, {platform.processor() or "cpu"}',
    'jax': jax.__version__,
    'date': datetime.date.today().isoformat(),
    'd': d,
    'quick': args.quick,
  }
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  stem = 'quick_scale' if args.quick else 'scale'
  (out / f'{stem}.json').write_text(
    json.dumps({'meta': meta, 'scale': rows}, indent=2)
  )
  (out / f'{stem}.md').write_text(scale_markdown(meta, rows, d))
  print(f'wrote {out / (stem + ".json")} and .md')
  return rows


if __name__ == '__main__':
  main()
