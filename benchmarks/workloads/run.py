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
"""Time-to-target workloads: methods compared under one protocol.

Workloads (no download): ``lm``, a byte-level Transformer language model
on the standard library's sources (bits per byte); ``digits_mlp`` and
``digits_cnn`` on scikit-learn's digits (accuracy); two population
workloads on the digits MLP: ``digits_large_batch`` (batch 1024, VRGD on 16
microbatch gradients against its base optimiser) and
``digits_byzantine_alie`` / ``digits_byzantine_sign_flip`` (8 workers, 2
Byzantine, robust aggregators against the mean with and without the
attack); and ``digits_multitask`` (three heads on one trunk, multi-task
aggregators of the task Jacobian against the mean). The protocol is in
``protocol.py``: a learning-rate grid on seed 0, the best rate for the
other seeds, one step budget, steps and time to the value every baseline
run reaches. Results go to
``benchmarks/workloads/results/<workload>.{json,md,png}``::

  python benchmarks/workloads/run.py --workload lm          # ~25 min, 2 cores
  python benchmarks/workloads/run.py --workload digits_mlp  # ~2 min
  python benchmarks/workloads/run.py --workload lm --smoke  # < 1 min, for CI

``--smoke`` runs every method once (first rate, one seed, a tiny model for
the LM, 20 steps), fails on a non-finite value and writes nothing unless
``--out`` is given.
"""

import argparse
import json
import os
import pathlib
import platform
import sys
import time
import types

import digits
import jax
import lm
import numpy as np
import optax
import protocol

import optax_ext
from optax_ext import alignment
from optax_ext import lookahead
from optax_ext import momentum
from optax_ext import robust
from optax_ext import variance

HERE = pathlib.Path(__file__).resolve().parent
ADAM_GRID = (1e-3, 3e-3, 1e-2)
DIGITS_GRID = (3e-3, 1e-2, 3e-2)


def _adamw(schedule, steps):
  del steps
  return optax.adamw(schedule, weight_decay=0.1)


def _ademamix(schedule, steps):
  # The paper's defaults (b3 = 0.9999, alpha = 5) with its warm-ups of alpha
  # and b3 over the whole run (the runs here are short).
  return momentum.ademamix_with_warmup(
    schedule,
    alpha_warmup_steps=steps,
    beta3_warmup_steps=steps,
    weight_decay=0.1,
  )


def _lookahead(schedule, steps):
  del steps
  return lookahead.lookahead(optax.adamw(schedule, weight_decay=0.1))


def _multilayer(schedule, steps):
  del steps
  return lookahead.multilayer_lookahead(optax.adamw(schedule, weight_decay=0.1))


def _slow(params, state):
  del params
  return lookahead.lookahead_slow_params(state)


def _slowest(params, state):
  del params
  return lookahead.multilayer_lookahead_slow_params(state)


ADAMW = protocol.Method('adamw', _adamw, ADAM_GRID)
LM_METHODS = [
  ADAMW,
  protocol.Method('ademamix', _ademamix, ADAM_GRID),
  protocol.Method('lookahead(adamw)', _lookahead, ADAM_GRID, _slow),
  protocol.Method(
    'multilayer_lookahead(adamw)', _multilayer, ADAM_GRID, _slowest
  ),
]
DIGITS_METHODS = [
  protocol.Method('adamw', _adamw, DIGITS_GRID),
  protocol.Method(
    'sgd(momentum=0.9)',
    lambda s, n: optax.sgd(s, momentum=0.9),
    (0.03, 0.1, 0.3),
  ),
  protocol.Method('qhadam', lambda s, n: momentum.qhadam(s), DIGITS_GRID),
  protocol.Method('ademamix', _ademamix, DIGITS_GRID),
  protocol.Method('lookahead(adamw)', _lookahead, DIGITS_GRID, _slow),
]

LARGE_BATCH = 1024
LARGE_BATCH_MEMBERS = 16  # microbatches of 64
LARGE_BATCH_METHODS = [
  protocol.Method('adam', lambda s, n: optax.adam(s), DIGITS_GRID),
  protocol.Method(
    'vr_adam',
    lambda s, n: variance.vr_adam(s),
    DIGITS_GRID,
    members=LARGE_BATCH_MEMBERS,
  ),
  protocol.Method(
    'sgd(momentum=0.9)',
    lambda s, n: optax.sgd(s, momentum=0.9),
    (0.1, 0.3, 1.0),
  ),
  protocol.Method(
    'vr_sgd',
    lambda s, n: variance.vr_sgd(s, momentum=0.9),
    (0.1, 0.3, 1.0),
    members=LARGE_BATCH_MEMBERS,
  ),
]


def _robust(name, aggregator, clean=False):
  return protocol.Method(
    name,
    lambda s, n: optax.chain(aggregator, optax.adam(s)),
    DIGITS_GRID,
    members=digits.Byzantine.workers,
    clean=clean,
  )


_F = digits.Byzantine.byzantine
BYZANTINE_METHODS = [
  _robust('mean, no attack', optax_ext.aggregate_by_mean(), clean=True),
  _robust('mean', optax_ext.aggregate_by_mean()),
  _robust('coordinate median', robust.aggregate_by_coordinate_median()),
  _robust('trimmed mean', robust.aggregate_by_trimmed_mean(_F)),
  _robust('multi-krum', robust.aggregate_by_krum(_F, num_selected=8 - _F)),
  _robust('geometric median', robust.aggregate_by_geometric_median(maxiter=10)),
  _robust('nna', robust.aggregate_by_nearest_neighbors(_F)),
  _robust('centered clipping', robust.aggregate_by_centered_clipping(1.0, 3)),
]


def _task_rule(name, aggregator):
  return protocol.Method(
    name,
    lambda s, n: optax.chain(aggregator, optax.adam(s)),
    DIGITS_GRID,
    tasks=True,
  )


MULTITASK_METHODS = [
  _task_rule('mean', optax_ext.aggregate_by_mean()),
  _task_rule('pcgrad', alignment.aggregate_by_pcgrad(key=0, reduction='mean')),
  _task_rule('upgrad', alignment.aggregate_by_upgrad()),
  _task_rule('mgda', alignment.aggregate_by_mgda()),
  _task_rule('cagrad(c=0.4)', alignment.aggregate_by_cagrad(c=0.4)),
]

WORKLOADS = {
  'lm': {
    'make': lambda smoke: lm.Workload(lm.SMOKE if smoke else lm.Config()),
    'methods': LM_METHODS,
    'steps': 300,
    'eval_every': 25,
  },
  'digits_mlp': {
    'make': lambda smoke: digits.Workload('mlp'),
    'methods': DIGITS_METHODS,
    'steps': 400,
    'eval_every': 20,
  },
  'digits_cnn': {
    'make': lambda smoke: digits.Workload('cnn'),
    'methods': DIGITS_METHODS,
    'steps': 400,
    'eval_every': 20,
  },
  'digits_large_batch': {
    'make': lambda smoke: digits.Workload(
      'mlp', batch_size=LARGE_BATCH, name='digits_large_batch'
    ),
    'methods': LARGE_BATCH_METHODS,
    'steps': 200,
    'eval_every': 10,
  },
  'digits_multitask': {
    'make': lambda smoke: digits.MultiTask(),
    'methods': MULTITASK_METHODS,
    'steps': 400,
    'eval_every': 20,
  },
  'digits_byzantine_alie': {
    'make': lambda smoke: digits.Byzantine('alie'),
    'methods': BYZANTINE_METHODS,
    'steps': 400,
    'eval_every': 20,
  },
  'digits_byzantine_sign_flip': {
    'make': lambda smoke: digits.Byzantine('sign_flip'),
    'methods': BYZANTINE_METHODS,
    'steps': 400,
    'eval_every': 20,
  },
}


def _markdown(name, workload, result, meta) -> str:
  better = 'lower' if workload.lower_is_better else 'higher'
  lines = [
    f'# Workload `{name}`: {workload.metric} ({better} is better)',
    '',
    f'`{meta["command"]}` on {meta["machine"]}, Python {meta["python"]}, '
    f'JAX {meta["jax"]} ({meta["backend"]}), {meta["date"]}; '
    f'{meta["steps"]} steps, {meta["seeds"]} seeds at the rate chosen on '
    f"seed 0 from each grid. Target: the baseline's worst final value "
    f'({result["summary"][0]["target"]:.4f}).',
    '',
    '| method | lr | final (mean +- std) | reached target | steps to '
    'target | train s to target | train s |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ]
  for row in result['summary']:
    steps = row['steps_to_target']
    secs = row['seconds_to_target']
    lines.append(
      f'| {row["method"]} | {row["lr"]:g} | {row["final_mean"]:.4f} +- '
      f'{row["final_std"]:.4f} | {row["reached"]} | '
      f'{"-" if steps is None else f"{steps:.0f}"} | '
      f'{"-" if secs is None else f"{secs:.3g}"} | '
      f'{row["train_seconds"]:.3g} |'
    )
  lines += ['', 'Learning-rate grid on seed 0 (final value):', '']
  for method, lr in result['chosen_lr'].items():
    tried = [
      f'{r["lr"]:g}: {r["final"]:.4f}'
      for r in result['runs']
      if r['method'] == method and r['seed'] == 0
    ]
    lines.append(f'- {method} (chosen {lr:g}): ' + ', '.join(tried))
  return '\n'.join(lines) + '\n'


def _plot(path, name, workload, result):
  import matplotlib  # noqa: PLC0415

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # noqa: PLC0415

  fig, ax = plt.subplots(figsize=(6.5, 4))
  for method, lr in result['chosen_lr'].items():
    runs = [
      r for r in result['runs'] if r['method'] == method and r['lr'] == lr
    ]
    steps = [p[0] for p in runs[0]['curve']]
    values = np.array([[p[1] for p in r['curve']] for r in runs])
    mean = values.mean(0)
    ax.plot(steps, mean, label=f'{method} (lr {lr:g})')
    ax.fill_between(steps, values.min(0), values.max(0), alpha=0.15)
  ax.set_xlabel('step')
  ax.set_ylabel(workload.metric)
  ax.set_title(f'{name}: mean and range over seeds')
  if workload.lower_is_better:
    finals = [row['final_mean'] for row in result['summary']]
    ax.set_ylim(min(finals) * 0.95, max(finals) * 1.6)
  else:
    ax.set_ylim(0.8, 1.0)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _render(base, name):
  data = json.loads(base.with_suffix('.json').read_text())
  # The metric and its direction, as recorded by the run.
  workload = types.SimpleNamespace(
    metric=data['meta']['metric'],
    lower_is_better=data['meta']['lower_is_better'],
  )
  methods = [
    m for m in WORKLOADS[name]['methods'] if m.name in data['chosen_lr']
  ]
  data['summary'] = protocol.summarise(
    workload, methods, data['runs'], data['chosen_lr']
  )
  base.with_suffix('.json').write_text(json.dumps(data, indent=1) + '\n')
  base.with_suffix('.md').write_text(
    _markdown(name, workload, data, data['meta'])
  )
  _plot(base.with_suffix('.png'), name, workload, data)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workload', choices=[*WORKLOADS, 'all'], default='lm')
  parser.add_argument('--smoke', action='store_true')
  parser.add_argument('--seeds', type=int, default=3)
  parser.add_argument('--steps', type=int)
  parser.add_argument('--out', help='results directory')
  parser.add_argument(
    '--render',
    action='store_true',
    help="rebuild the summary, .md and .png from the results' .json",
  )
  args = parser.parse_args(argv)
  names = list(WORKLOADS) if args.workload == 'all' else [args.workload]
  out = args.out
  if out is None and not args.smoke:
    out = HERE / 'results'
  if args.render:
    for name in names:
      _render(pathlib.Path(out or HERE / 'results') / name, name)
    return 0
  ok = True
  for name in names:
    spec = WORKLOADS[name]
    start = time.perf_counter()
    workload = spec['make'](args.smoke)
    steps = args.steps or (20 if args.smoke else spec['steps'])
    seeds = 1 if args.smoke else args.seeds
    eval_every = 10 if args.smoke else spec['eval_every']
    print(f'{name}: {workload.info}, {steps} steps, {seeds} seed(s)')
    result = protocol.compare(
      workload,
      spec['methods'],
      seeds=seeds,
      steps=steps,
      eval_every=eval_every,
      grid_size=1 if args.smoke else None,
    )
    for row in result['summary']:
      print(
        f'  {row["method"]:28s} {row["final_mean"]:.4f} +- '
        f'{row["final_std"]:.4f}  reached {row["reached"]}'
      )
    ok &= all(r['finite'] for r in result['runs'])
    elapsed = time.perf_counter() - start
    print(f'{name} done in {elapsed:.0f}s')
    if out is None:
      continue
    meta = {
      'command': 'python benchmarks/workloads/run.py '
      + ' '.join(argv if argv is not None else sys.argv[1:]),
      'machine': f'{platform.machine()}, {os.cpu_count()} cores',
      'python': platform.python_version(),
      'jax': jax.__version__,
      'backend': jax.default_backend(),
      'date': time.strftime('%Y-%m-%d'),
      'steps': steps,
      'seeds': seeds,
      'seconds': elapsed,
      'data': workload.info,
      'metric': workload.metric,
      'lower_is_better': workload.lower_is_better,
    }
    pathlib.Path(out).mkdir(parents=True, exist_ok=True)
    base = pathlib.Path(out) / name
    base.with_suffix('.json').write_text(
      json.dumps({'meta': meta, **result}, indent=1) + '\n'
    )
    base.with_suffix('.md').write_text(_markdown(name, workload, result, meta))
    _plot(base.with_suffix('.png'), name, workload, result)
  if not ok:
    print('a run produced a non-finite value', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
