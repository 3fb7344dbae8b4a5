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
"""Population rules inside a train step: vmapped, lean and ghost populations.

``python benchmarks/run.py --only populations`` compiles, on the tanh MLP
784-1024-1024-10 (batch 128) and the LM workload's Transformer
(``benchmarks/workloads/lm.py``, default size, batch 16), the jitted and
donated train step ``population -> rule -> AdamW`` for each rule and each
way of making the population:

* ``vmapped``: ``population.grad_population`` (``K`` stacked gradients);
* ``lean``: ``population.microbatches`` (one microbatch at a time; the
  Gramian rules take ``K`` forward-mode passes), for ``K <= 32``;
* ``ghost``: ``population.ghost`` (one backward pass; Gramians, norms and
  combinations from activations and output cotangents),

at ``K = 8``, ``K = 32`` and ``K = B`` (per-example members), and times
them round-robin in one run next to the plain step (``jax.grad`` then
``optax.adamw``), reporting each as a ratio to it (median of rounds), with
XLA's temporaries of the compiled step (``memory_analysis``).
"""

import argparse
import json
import pathlib
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

RULES = {
  'mean': lambda k: optax_ext.aggregate_by_mean(),
  'clip + mean': lambda k: optax.chain(
    robust.clip_each_by_global_norm(1.0), optax_ext.aggregate_by_mean()
  ),
  'krum': lambda k: robust.aggregate_by_krum(1),
  'upgrad': lambda k: alignment.aggregate_by_upgrad(),
  'geometric median': lambda k: robust.aggregate_by_geometric_median(
    maxiter=10
  ),
}


def mlp(sizes=(784, 1024, 1024, 10), batch_size=128, seed=0):
  """Tanh MLP on synthetic inputs and labels (timing only)."""
  rng = np.random.default_rng(seed)
  params = {
    f'l{i}': {
      'w': jnp.asarray(rng.normal(size=(a, b)) / np.sqrt(a), jnp.float32),
      'b': jnp.zeros((b,), jnp.float32),
    }
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
  }
  batch = {
    'x': jnp.asarray(rng.normal(size=(batch_size, sizes[0])), jnp.float32),
    'y': jnp.asarray(rng.integers(0, sizes[-1], batch_size), jnp.int32),
  }
  n = len(sizes) - 1

  def loss(p, b):
    h = b['x']
    for i in range(n):
      h = h @ p[f'l{i}']['w'] + p[f'l{i}']['b']
      if i < n - 1:
        h = jnp.tanh(h)
    return optax.softmax_cross_entropy_with_integer_labels(h, b['y']).mean()

  return loss, params, batch


def transformer(quick=False, seed=0):
  import lm  # noqa: PLC0415 - benchmarks/workloads on the path

  workload = lm.Workload(lm.SMOKE if quick else lm.Config())
  return workload.loss, workload.init(seed), next(workload.batches(seed))


def _step(loss, rule, make, k):
  tx = optax.chain(rule, optax.adamw(1e-3))

  def step(params, state, batch):
    if make == 'plain':
      grads = jax.grad(loss)(params, batch)
    elif make == 'vmapped':
      grads = population.grad_population(loss, k)(params, batch)[1]
    elif make == 'lean':
      grads = population.microbatches(loss, params, batch, k)
    else:
      grads = population.ghost(loss, params, batch, k)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return tx, jax.jit(step, donate_argnums=(0, 1))


class _Runner:
  def __init__(self, loss, params, batch, rule, make, k):
    tx, step = _step(loss, rule, make, k)
    copy = jax.tree.map(jnp.copy, params)
    state = tx.init(copy)
    t0 = time.perf_counter()
    self.compiled = step.lower(copy, state, batch).compile()
    self.compile_seconds = time.perf_counter() - t0
    analysis = self.compiled.memory_analysis()
    self.temp_bytes = None if analysis is None else analysis.temp_size_in_bytes
    self.carry = [copy, state]
    self.batch = batch
    self.times = []
    jax.block_until_ready(self.run())

  def run(self):
    self.carry = list(self.compiled(*self.carry, self.batch))
    return self.carry[0]

  def burst(self, n):
    t0 = time.perf_counter()
    for _ in range(n):
      out = self.run()
    jax.block_until_ready(out)
    self.times.append((time.perf_counter() - t0) / n)


def measure(quick=False, rounds=5):
  """Rows ``{model, K, rule, population, seconds, x_plain, temp_bytes}``."""
  models = {'mlp': mlp(batch_size=32 if quick else 128)}
  models['transformer'] = transformer(quick)
  rows = []
  for name, (loss, params, batch) in models.items():
    b = jax.tree.leaves(batch)[0].shape[0]
    ks = sorted(k for k in ({8, b} if quick else {8, 32, b}) if b % k == 0)
    runners = {
      ('plain', 0, 'plain'): _Runner(
        loss, params, batch, optax.identity(), 'plain', 1
      )
    }
    for k in ks:
      for rule_name, rule in RULES.items():
        for make in ('vmapped', 'lean', 'ghost'):
          if make == 'lean' and k > 32:
            continue  # K forward-mode passes: the path this replaces
          runners[(rule_name, k, make)] = _Runner(
            loss, params, batch, rule(k), make, k
          )
          print(f'{name} K={k} {rule_name} {make}: compiled', flush=True)
    for _ in range(rounds):
      for r in runners.values():
        r.burst(1 if quick else 2)
    plain = statistics.median(runners[('plain', 0, 'plain')].times)
    for (rule_name, k, make), r in runners.items():
      t = statistics.median(r.times)
      rows.append(
        {
          'model': name,
          'batch': b,
          'K': k,
          'rule': rule_name,
          'population': make,
          'seconds': t,
          'x_plain': t / plain,
          'temp_bytes': r.temp_bytes,
          'compile_seconds': r.compile_seconds,
        }
      )
      print(
        f'{name:12s} K={k:4d} {rule_name:18s} {make:8s} '
        f'{t * 1e3:9.2f} ms  x{t / plain:7.2f}',
        flush=True,
      )
  return rows


def _memory_model(quick):
  sizes = (784, 256, 256, 10) if quick else (784, 2048, 2048, 10)
  return mlp(sizes, batch_size=256)


def peak_rss_growth(rule_name: str, make: str, quick: bool = False) -> int:
  """Bytes the peak RSS of this process grows by while one step runs (call
  it in a fresh process): the step is compiled and its inputs placed first,
  then the peak is reset (``benchmarks/memory.py``'s ``rss_growth``)."""
  import memory  # noqa: PLC0415 - benchmarks/ on the path

  loss, params, batch = _memory_model(quick)
  rule = optax.identity() if make == 'plain' else RULES[rule_name](256)
  tx, step = _step(loss, rule, make, 256)
  state = tx.init(params)
  compiled = step.lower(params, state, batch).compile()
  jax.block_until_ready((params, state, batch))
  return memory.rss_growth(lambda: compiled(params, state, batch))


def _rss_in_fresh_process(rule_name: str, make: str, quick: bool) -> int:
  out = subprocess.run(
    [sys.executable, __file__, '--rss-one', rule_name, make]
    + (['--quick'] if quick else []),
    check=True,
    capture_output=True,
    text=True,
    cwd=pathlib.Path(__file__).parent,
  )
  return int(out.stdout.strip().splitlines()[-1])


def memory_rows(quick=False):
  """XLA temporaries of the compiled steps at ``K = B = 256`` on an MLP whose
  stacked per-example gradients would need several GB (compiled, not run),
  and the peak RSS growth of one step of the plain and ghost steps (each in
  a fresh process; the vmapped steps would need their GBs, so they are only
  compiled)."""
  loss, params, batch = _memory_model(quick)
  d = sum(x.size for x in jax.tree.leaves(params))
  rows = []
  for rule_name in ('mean', 'clip + mean', 'upgrad'):
    for make in ('plain', 'vmapped', 'ghost'):
      if make == 'plain' and rule_name != 'mean':
        continue
      rule = optax.identity() if make == 'plain' else RULES[rule_name](256)
      tx, step = _step(loss, rule, make, 256)
      compiled = step.lower(params, tx.init(params), batch).compile()
      analysis = compiled.memory_analysis()
      rows.append(
        {
          'rule': 'plain' if make == 'plain' else rule_name,
          'population': make,
          'params': d,
          'temp_bytes': None
          if analysis is None
          else analysis.temp_size_in_bytes,
          'rss_growth_bytes': None
          if make == 'vmapped'
          else _rss_in_fresh_process(rule_name, make, quick),
        }
      )
      print(f'memory {rows[-1]}', flush=True)
  return rows


def markdown(rows, meta, memory=()) -> str:
  lines = [
    '# Population rules in a train step (vmapped, lean, ghost)',
    '',
    f'{meta["date"]}, {meta["machine"]}, jax {meta["jax"]}. Median step '
    'time as a multiple of the plain step (`jax.grad` then `optax.adamw`) '
    'timed in the same run; the rule is followed by AdamW; XLA '
    'temporaries of the compiled step in MB.',
    '',
  ]
  for model in dict.fromkeys(r['model'] for r in rows):
    sub = [r for r in rows if r['model'] == model and r['rule'] != 'plain']
    plain = next(
      r for r in rows if r['model'] == model and r['rule'] == 'plain'
    )
    b = plain['batch']
    lines += [
      f'## {model} (batch {b}; plain step {plain["seconds"] * 1e3:.1f} ms)',
      '',
      '| rule | K | vmapped | lean | ghost | ghost temporaries MB |',
      '|---|---:|---:|---:|---:|---:|',
    ]
    for rule in dict.fromkeys(r['rule'] for r in sub):
      for k in sorted({r['K'] for r in sub}):
        cells = {
          r['population']: r for r in sub if r['rule'] == rule and r['K'] == k
        }
        ratios = [
          f'{cells[m]["x_plain"]:.2f}x' if m in cells else '—'
          for m in ('vmapped', 'lean', 'ghost')
        ]
        temp = cells.get('ghost', {}).get('temp_bytes')
        lines.append(
          f'| {rule} | {k} | ' + ' | '.join(ratios) + ' | '
          f'{"" if temp is None else f"{temp / 2**20:.1f}"} |'
        )
    lines.append('')
  if memory:
    d = memory[0]['params']
    lines += [
      f'## Memory at K = B = 256 (MLP, D = {d / 1e6:.2f}M; stacked '
      f'per-example gradients {256 * d * 4 / 2**30:.1f} GiB)',
      '',
      'XLA temporaries of the compiled train step (`memory_analysis`), '
      'and how much the peak resident memory of a fresh process grows while '
      'one step runs (inputs placed and the step compiled first; not run '
      'for the vmapped steps, which would need their GBs).',
      '',
      '| rule | population | temporaries MB | / plain | peak RSS growth MB |',
      '|---|---|---:|---:|---:|',
    ]
    plain = next(r for r in memory if r['population'] == 'plain')
    for r in memory:
      rss = r.get('rss_growth_bytes')
      lines.append(
        f'| {r["rule"]} | {r["population"]} | '
        f'{r["temp_bytes"] / 2**20:.0f} | '
        f'{r["temp_bytes"] / plain["temp_bytes"]:.2f}x | '
        f'{"—" if rss is None else f"{rss / 2**20:.0f}"} |'
      )
    lines.append('')
  return '\n'.join(lines)


if __name__ == '__main__':
  # One measurement in this fresh process (see _rss_in_fresh_process).
  parser = argparse.ArgumentParser(description='peak RSS of one step')
  parser.add_argument(
    '--rss-one',
    nargs=2,
    metavar=('RULE', 'POPULATION'),
    required=True,
    help='rule name (RULES) and population (plain, ghost)',
  )
  parser.add_argument('--quick', action='store_true', help='small model')
  args = parser.parse_args()
  print(json.dumps(peak_rss_growth(*args.rss_one, quick=args.quick)))
