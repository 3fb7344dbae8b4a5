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
"""An optimiser's cost inside a real jitted train step.

A ReLU MLP ``784 -> 2048 -> 2048 -> 10`` (5.8M float32 params), a batch of
128 (fixed random inputs and labels: the arithmetic, not the data, is
timed), and for each optimiser the step a user writes: forward, backward,
``tx.update``, ``optax.apply_updates``, jitted with params and state
donated. Every optimiser's step is timed in the same run, round-robin (a
few steps of each per round, the first of each burst not counted), and
reported as the median step time, its ratio to ``optax.adamw``'s and
``optax.sgd``'s steps, the ratio of the mean step times (which counts
periodic work, such as DPF's mask refresh, that a median hides), and the
optimiser's overhead: the step time minus
plain ``optax.sgd``'s (no state), against its memory-traffic bound (its
state read and written once at the machine's stream bandwidth).

The population variant: ``grad_population(loss, K = 8)`` (microbatches of
16), an aggregator, then AdamW; ratios to the same step with the mean.

Where pytorch_optimizer (or torch.optim) has the method, the same model and
batch in PyTorch (its default threads) are timed after the JAX rounds, and
reported as a ratio to torch.optim.AdamW's step and to our adamw step.

The whole measurement runs twice: with the C library's default allocator
settings, then in a fresh process with ``KEEP_FREED_MEMORY`` in its
environment (glibc keeps freed blocks up to 32 MB in the process, so the
step's fresh buffers are not page-faulted in again on every call). On this
machine a fresh buffer costs about six times a reused one (the
``bandwidths`` "into a fresh output" figure), which inflates every
optimiser whose step allocates more than AdamW's.

``python benchmarks/run.py --only train_step`` runs it and writes
``results/train_step.{json,md}``.
"""

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tables

from optax_ext import population

SIZES = (784, 2048, 2048, 10)
BATCH = 128


def mlp(sizes=SIZES, seed=0):
  """``(params, loss, batch)`` of the benchmark's ReLU MLP."""
  rng = np.random.default_rng(seed)
  params = [
    {
      'w': jnp.asarray(rng.normal(size=(a, b)) / np.sqrt(a), jnp.float32),
      'b': jnp.zeros(b, jnp.float32),
    }
    for a, b in zip(sizes[:-1], sizes[1:], strict=True)
  ]
  batch = {
    'x': jnp.asarray(rng.normal(size=(BATCH, sizes[0])), jnp.float32),
    'y': jnp.asarray(rng.integers(0, sizes[-1], BATCH), jnp.int32),
  }

  def loss(p, batch):
    h = batch['x']
    for i, layer in enumerate(p):
      h = h @ layer['w'] + layer['b']
      if i < len(p) - 1:
        h = jax.nn.relu(h)
    logp = jax.nn.log_softmax(h)
    return -jnp.mean(jnp.take_along_axis(logp, batch['y'][:, None], 1))

  return params, loss, batch


# glibc's malloc options that keep freed blocks (up to 32 MB) in the
# process, set in the environment of a fresh process (set later, with
# mallopt, they did not take hold here).
KEEP_FREED_MEMORY = {
  'MALLOC_MMAP_THRESHOLD_': str(32 << 20),
  'MALLOC_TRIM_THRESHOLD_': str(1 << 32),
  'MALLOC_TOP_PAD_': str(256 << 20),
}


def _copy(tree):
  return jax.tree.map(jnp.copy, tree)


class _Runner:
  """A compiled, donated train step and its own params and state."""

  def __init__(self, step, tx, params, batch):
    self.params = _copy(params)
    self.state = tx.init(self.params)
    self.batch = batch
    t0 = time.perf_counter()
    self.compiled = (
      jax.jit(step, donate_argnums=(0, 1))
      .lower(self.params, self.state, batch)
      .compile()
    )
    self.compile_seconds = time.perf_counter() - t0
    stats = self.compiled.memory_analysis()
    self.temp_bytes = getattr(stats, 'temp_size_in_bytes', None)
    self.state_bytes = sum(
      x.size * x.dtype.itemsize for x in jax.tree.leaves(self.state)
    )
    self.times = []

  def burst(self, n):
    for i in range(n):
      t0 = time.perf_counter()
      self.params, self.state, loss = self.compiled(
        self.params, self.state, self.batch
      )
      jax.block_until_ready(loss)
      if i:  # the first step of a burst is not counted
        self.times.append(time.perf_counter() - t0)

  def finite(self):
    return all(
      bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(self.params)
    )


def _plain_step(loss, tx):
  def step(params, state, batch):
    value, grads = jax.value_and_grad(loss)(params, batch)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, value

  return step


def _population_step(loss, tx, k):
  grads_of = population.grad_population(loss, k)

  def step(params, state, batch):
    value, pop = grads_of(params, batch)
    updates, state = tx.update(pop, state, params)
    return optax.apply_updates(params, updates), state, value

  return step


def _round_robin(runners, rounds, burst):
  for _ in range(rounds):
    for r in runners.values():
      r.burst(burst)
  return {n: statistics.median(r.times) for n, r in runners.items()}


def _torch_times(peers, rounds, burst):
  """Median train-step time per peer (``name -> (cls_name, kwargs)``), the
  first entry torch.optim.AdamW; ``{}`` without torch."""
  try:
    import torch  # noqa: PLC0415
  except ImportError:
    return {}
  try:
    import pytorch_optimizer  # noqa: PLC0415
  except ImportError:
    pytorch_optimizer = None
  torch.manual_seed(0)
  layers = []
  for a, b in zip(SIZES[:-1], SIZES[1:], strict=True):
    layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
  model = torch.nn.Sequential(*layers[:-1])
  x = torch.randn(BATCH, SIZES[0])
  y = torch.randint(0, SIZES[-1], (BATCH,))
  out = {}
  for name, (cls_name, kwargs) in peers.items():
    if cls_name == 'torch.optim.AdamW':
      opt = torch.optim.AdamW(model.parameters(), **kwargs)
    elif pytorch_optimizer is None:
      continue
    else:
      opt = getattr(pytorch_optimizer, cls_name)(model.parameters(), **kwargs)

    def step(opt=opt):
      opt.zero_grad(set_to_none=True)
      loss = torch.nn.functional.cross_entropy(model(x), y)
      loss.backward()
      opt.step()

    times = []
    for _ in range(rounds):
      for i in range(burst):
        t0 = time.perf_counter()
        step()
        if i:
          times.append(time.perf_counter() - t0)
    out[name] = statistics.median(times)
  return out


def measure(
  transforms, aggregators, bw, *, rounds=5, burst=4, k=8, malloc='default'
):
  """Rows for every optimiser, then every aggregator (see the module doc).

  Args:
    transforms: ``name -> (factory, peer)``, peer ``(pytorch_optimizer
      class name, kwargs)`` or ``None``; must hold ``'optax.adamw'``.
    aggregators: ``name -> factory`` of population aggregators; must hold
      ``'mean'``.
    bw: ``{'stream': bytes/s}``, the memory-traffic bound's bandwidth.
    malloc: a label for the rows (the allocator settings in force).
  """
  params, loss, batch = mlp()
  n_params = sum(x.size for x in jax.tree.leaves(params))
  base = {
    'optax.sgd': (lambda: optax.sgd(1e-3), None),
    'optax.adamw': transforms['optax.adamw'],
  }
  runners = {}
  for name, (factory, _) in {**base, **transforms}.items():
    tx = factory()
    runners[name] = _Runner(_plain_step(loss, tx), tx, params, batch)
  times = _round_robin(runners, rounds, burst)
  peers = {'optax.adamw': ('torch.optim.AdamW', {'lr': 1e-3})}
  peers.update({n: p for n, (_, p) in transforms.items() if p is not None})
  torch_times = _torch_times(peers, max(2, rounds // 2), burst)
  t_adamw, t_sgd = times['optax.adamw'], times['optax.sgd']
  mean_adamw = statistics.mean(runners['optax.adamw'].times)
  rows = []
  for name, r in runners.items():
    t = times[name]
    mean = statistics.mean(r.times)
    bound = 2 * r.state_bytes / bw['stream']
    torch_t = torch_times.get(name)
    row = {
      'malloc': malloc,
      'section': 'optimiser',
      'name': name,
      'params': n_params,
      'seconds': t,
      'x_adamw': t / t_adamw,
      'x_sgd': t / t_sgd,
      'mean_seconds': mean,
      'mean_x_adamw': mean / mean_adamw,
      'overhead_seconds': t - t_sgd,
      'bound_seconds': bound,
      'state_bytes_per_param': r.state_bytes / n_params,
      'temp_bytes_per_param': (
        r.temp_bytes / n_params if r.temp_bytes is not None else None
      ),
      'compile_seconds': r.compile_seconds,
      'finite': r.finite(),
      'torch_seconds': torch_t,
      'torch_x_torch_adamw': (
        torch_t / torch_times['optax.adamw']
        if torch_t and 'optax.adamw' in torch_times
        else None
      ),
      'torch_x_ours': torch_t / t if torch_t else None,
    }
    rows.append(row)
    print(
      f'{name:40s} {t * 1e3:7.2f} ms  x{row["x_adamw"]:.2f} adamw  '
      f'overhead {row["overhead_seconds"] * 1e3:6.2f} ms '
      f'(bound {bound * 1e3:5.2f})'
      + (f'  torch x{row["torch_x_ours"]:.2f} slower' if torch_t else '')
    )
  del runners
  pop_runners = {}
  for name, factory in aggregators.items():
    tx = optax.chain(factory(), optax.adamw(1e-3))
    pop_runners[name] = _Runner(
      _population_step(loss, tx, k), tx, params, batch
    )
  pop_times = _round_robin(pop_runners, rounds, burst)
  for name, r in pop_runners.items():
    t = pop_times[name]
    row = {
      'malloc': malloc,
      'section': f'population K={k} + adamw',
      'name': name,
      'params': n_params,
      'seconds': t,
      'x_mean': t / pop_times['mean'],
      'x_adamw': t / t_adamw,
      'mean_seconds': statistics.mean(r.times),
      'mean_x_mean': statistics.mean(r.times)
      / statistics.mean(pop_runners['mean'].times),
      'compile_seconds': r.compile_seconds,
      'finite': r.finite(),
    }
    rows.append(row)
    print(
      f'K={k} {name:34s} {t * 1e3:7.2f} ms  x{row["x_mean"]:.2f} mean  '
      f'x{row["x_adamw"]:.2f} plain adamw step'
    )
  return rows


def markdown(rows, meta):
  """The results as markdown tables (default allocator, and freed memory
  kept when that pass ran)."""
  by = {(r['malloc'], r['section'], r['name']): r for r in rows}
  opt = [
    r for r in rows if r['malloc'] == 'default' and r['section'] == 'optimiser'
  ]
  pop = [
    r for r in rows if r['malloc'] == 'default' and r['section'] != 'optimiser'
  ]

  def kept(r, key, scale=1.0, fmt='.2f'):
    other = by.get(('kept', r['section'], r['name']))
    return '-' if other is None else f'{other[key] * scale:{fmt}}'

  lines = [
    f'Machine: {meta["machine"]}; jax {meta["jax"]}, optax {meta["optax"]}; '
    f'{meta["date"]}. MLP {meta["sizes"]} ({opt[0]["params"]:,} params), '
    f'batch {BATCH}, float32; stream bandwidth {meta["stream_gb_s"]:.1f} '
    'GB/s. Median train-step time, every optimiser in the same run; '
    '"mean": the ratio of mean step times, which counts periodic work '
    "(DPF's mask refresh) that a median hides. "
    'Overhead: step time minus plain `optax.sgd`; bound: the optimiser '
    'state read and written once at the stream bandwidth; temporaries: '
    "XLA's temp buffers of the compiled step (`memory_analysis()`), fresh "
    'memory on every call. "kept": the same '
    'run repeated in a process with glibc told to keep freed blocks '
    '(`MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 '
    'MALLOC_TOP_PAD_=268435456`). PyTorch: the same model and batch, '
    'torch.optim.AdamW or '
    f'pytorch_optimizer, {meta.get("torch_threads")} threads.',
    '',
    '| optimiser | step (ms) | x optax.adamw | x optax.adamw, mean '
    '| x optax.sgd | overhead (ms) '
    '| bound (ms) | x optax.adamw, kept | overhead, kept (ms) '
    '| state (B/param) | temporaries (B/param) | PyTorch step (ms) '
    '| PyTorch x ours |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for r in opt:
    torch_t = r['torch_seconds']
    lines.append(
      f'| {r["name"]} | {r["seconds"] * 1e3:.2f} | {r["x_adamw"]:.2f} | '
      f'{r["mean_x_adamw"]:.2f} | {r["x_sgd"]:.2f} | '
      f'{r["overhead_seconds"] * 1e3:.2f} | '
      f'{r["bound_seconds"] * 1e3:.2f} | {kept(r, "x_adamw")} | '
      f'{kept(r, "overhead_seconds", 1e3)} | '
      f'{r["state_bytes_per_param"]:.1f} | '
      + (
        f'{r["temp_bytes_per_param"]:.1f} | '
        if r['temp_bytes_per_param'] is not None
        else '- | '
      )
      + (
        f'{torch_t * 1e3:.2f} | {r["torch_x_ours"]:.2f} |'
        if torch_t
        else '- | - |'
      )
    )
  if pop:
    lines += [
      '',
      f'Population variant ({pop[0]["section"]}): `grad_population` '
      'microbatches of 16, the aggregator, then `optax.adamw`.',
      '',
      '| aggregator | step (ms) | x mean | x mean, mean step '
      '| x plain adamw step | x mean, kept |',
      '|---|---:|---:|---:|---:|---:|',
    ]
    lines += [
      f'| {r["name"]} | {r["seconds"] * 1e3:.2f} | {r["x_mean"]:.2f} | '
      f'{r["mean_x_mean"]:.2f} | {r["x_adamw"]:.2f} | {kept(r, "x_mean")} |'
      for r in pop
    ]
  return '\n'.join(lines) + '\n'


def rows(quick, malloc='default'):
  """``measure`` over the benchmark tables' optimisers and aggregators."""
  bw = tables.bandwidths(1_000_000 if quick else 50_000_000, 5)
  aggregators = tables.TRAIN_STEP_AGGREGATORS
  transforms = tables.TRANSFORMS
  if quick:
    transforms = {n: tables.TRANSFORMS[n] for n in ('optax.adamw', 'mars')}
    aggregators = {n: aggregators[n] for n in ('mean', 'upgrad')}
  rows = measure(
    transforms, aggregators, bw, rounds=2 if quick else 8, malloc=malloc
  )
  return rows, bw


def _main():
  import argparse  # noqa: PLC0415
  import json  # noqa: PLC0415
  import pathlib  # noqa: PLC0415

  parser = argparse.ArgumentParser(description='one pass, as JSON rows')
  parser.add_argument(
    '--kept', action='store_true', help='label: KEEP_FREED_MEMORY is set'
  )
  parser.add_argument('--quick', action='store_true')
  parser.add_argument('--json', required=True)
  args = parser.parse_args()
  found, _ = rows(args.quick, 'kept' if args.kept else 'default')
  pathlib.Path(args.json).write_text(json.dumps(found))


if __name__ == '__main__':
  _main()
