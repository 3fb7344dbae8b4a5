"""DPF inside a real train step: the refresh steps, not only the median.

``python benchmarks/dpf_refresh.py`` trains the MLP of ``--only
train_step`` (784-2048-2048-10, batch 128, params and state donated) with
SGD-momentum alone and inside ``pruning.dpf`` (90% sparsity, refresh every
16 steps): the mask refresh in the update (``'sort'`` and ``'bisect'``)
and outside it (``refresh_in_update=False`` plus a separately jitted
``dpf_refresh`` every 16 steps), all in one run, round-robin; also the
``'sort'`` refresh through ``jnp.argsort`` (the plain kernel GPUs and TPUs
trace; XLA:CPU's sort is the slow part there). A median hides
the refresh steps, so the table gives the mean step (what a training run
pays) and the slowest. Writes ``benchmarks/results/dpf_refresh.{json,md}``
(``--quick``: a small MLP and 12 steps, for CI, written to ``--out``).
"""

import argparse
import datetime
import json
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import train_step

from optax_ext import pruning
from optax_ext._src import kernels

RESULTS = pathlib.Path(__file__).parent / 'results'
EVERY, STEPS, WARMUP = 16, 64, 4


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true', help='smoke run (CI)')
  parser.add_argument('--out', default=str(RESULTS), help='results folder')
  args = parser.parse_args(argv)
  every, steps_total, warmup = (
    (4, 12, 2) if args.quick else (EVERY, STEPS, WARMUP)
  )
  params0, loss, batch = train_step.mlp(
    (64, 128, 128, 10) if args.quick else train_step.SIZES
  )

  def inner():
    return optax.sgd(1e-3, momentum=0.9)

  outside = pruning.dpf(
    inner(), 0.9, update_every=every, refresh_in_update=False
  )
  txs = {
    'sgd(momentum)': inner(),
    "dpf, refresh in the update ('sort')": pruning.dpf(
      inner(), 0.9, update_every=every
    ),
    "dpf, refresh in the update ('sort' as argsort, the plain kernel)": (
      pruning.dpf(inner(), 0.9, update_every=every)
    ),
    "dpf, refresh in the update ('bisect')": pruning.dpf(
      inner(), 0.9, update_every=every, threshold_method='bisect'
    ),
    'dpf, refresh_in_update=False + dpf_refresh': outside,
  }
  steps, states, params = {}, {}, {}
  for name, tx in txs.items():
    pruned = name != 'sgd(momentum)'

    def step(p, s, tx=tx, pruned=pruned):
      w = pruning.dpf_pruned_params(p, s) if pruned else p
      u, s = tx.update(jax.grad(loss)(w, batch), s, p)
      return optax.apply_updates(p, u), s

    params[name] = jax.tree.map(jnp.copy, params0)
    states[name] = tx.init(params[name])
    with kernels.use('plain' if 'plain kernel' in name else 'auto'):
      steps[name] = (
        jax.jit(step, donate_argnums=(0, 1))
        .lower(params[name], states[name])
        .compile()
      )
  refresh = (
    jax.jit(lambda s, p: pruning.dpf_refresh(outside, s, p), donate_argnums=0)
    .lower(outside.init(params0), params0)
    .compile()
  )
  times = {name: [] for name in txs}
  for i in range(1, steps_total + 1):
    for name in txs:
      start = time.perf_counter()
      params[name], states[name] = steps[name](params[name], states[name])
      if name == 'dpf, refresh_in_update=False + dpf_refresh' and (
        i % every == 0
      ):
        states[name] = refresh(states[name], params[name])
      jax.block_until_ready((params[name], states[name]))
      times[name].append(time.perf_counter() - start)
  base = float(np.mean(times['sgd(momentum)'][warmup:]))
  rows = []
  for name, ts in times.items():
    t = np.asarray(ts[warmup:]) * 1e3
    rows.append(
      {
        'method': name,
        'mean_ms': float(t.mean()),
        'median_ms': float(np.median(t)),
        'max_ms': float(t.max()),
        'x_sgd_mean': float(t.mean()) / (base * 1e3),
      }
    )
  meta = {
    'date': datetime.date.today().isoformat(),
    'command': 'python benchmarks/dpf_refresh.py',
    'machine': f'{platform.processor() or platform.machine()}, '
    f'{jax.device_count()} {jax.default_backend()} device(s), '
    f'jax {jax.__version__}',
    'steps': steps_total - warmup,
    'update_every': every,
    'quick': args.quick,
  }
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / 'dpf_refresh.json').write_text(
    json.dumps({'meta': meta, 'rows': rows}, indent=1) + '\n'
  )
  lines = [
    f'# DPF inside a train step ({meta["date"]}, `{meta["command"]}`)',
    '',
    f'{meta["machine"]}; {meta["steps"]} steps after {warmup} warm-up, mask '
    f'refresh every {every} steps (the refresh steps are in the mean).',
    '',
    '| method | mean step (ms) | x sgd(momentum), mean | median (ms) | '
    'slowest (ms) |',
    '|---|---:|---:|---:|---:|',
  ]
  lines += [
    f'| {r["method"]} | {r["mean_ms"]:.2f} | {r["x_sgd_mean"]:.2f} | '
    f'{r["median_ms"]:.2f} | {r["max_ms"]:.1f} |'
    for r in rows
  ]
  (out / 'dpf_refresh.md').write_text('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
