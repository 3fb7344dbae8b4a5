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
"""Per-example rules on a Transformer, at the cost of one backward pass.

Trains the byte-level Transformer of ``benchmarks/workloads/lm.py`` (the
running Python's own standard library as text; no download) with a rule
over the *per-example* gradients of each batch, made by
``population.ghost``: one forward and one backward pass, the rule's
Gramian, norms and combinations taken from the activations and output
cotangents of each contraction instead of per-example gradients. Prints
the validation bits per byte, the step time and which parameters ran ghost,
materialised or fell back::

  python examples/per_example_transformer.py --rule dp_sgd  # DP-SGD
  python examples/per_example_transformer.py --rule upgrad  # UPGrad
  python examples/per_example_transformer.py --smoke        # seconds (CI)
"""

import argparse
import collections
import pathlib
import sys
import time

import jax
import optax

from optax_ext import alignment
from optax_ext import population
from optax_ext import privacy

sys.path.insert(
  0,
  str(pathlib.Path(__file__).resolve().parents[1] / 'benchmarks' / 'workloads'),
)
import lm  # noqa: E402


def rule(name: str):
  if name == 'dp_sgd':
    # Clip each example's gradient to norm 1, add N(0, (1.1 * 1)^2) noise to
    # the sum, divide by the batch size.
    return privacy.aggregate_by_private_mean(
      l2_norm_clip=1.0, noise_multiplier=1.1, seed=0
    )
  if name == 'upgrad':
    return alignment.aggregate_by_upgrad()
  raise ValueError(f'unknown rule {name!r}')


def main(argv=None):
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    '--rule',
    choices=('dp_sgd', 'upgrad'),
    default='dp_sgd',
    help='the rule over the per-example gradients',
  )
  parser.add_argument(
    '--batch-size', type=int, default=64, help='examples (= members) per step'
  )
  parser.add_argument('--steps', type=int, default=200, help='training steps')
  parser.add_argument(
    '--learning-rate', type=float, default=3e-3, help="AdamW's learning rate"
  )
  parser.add_argument(
    '--smoke', action='store_true', help='a tiny model and a few steps (CI)'
  )
  args = parser.parse_args(argv)
  cfg = lm.SMOKE if args.smoke else lm.Config(batch_size=args.batch_size)
  steps = 4 if args.smoke else args.steps
  workload = lm.Workload(cfg)
  params = workload.init(0)
  tx = optax.chain(rule(args.rule), optax.adamw(args.learning_rate))
  state = tx.init(params)

  @jax.jit
  def step(params, state, batch):
    members = population.ghost(workload.loss, params, batch)  # K = batch
    updates, state = tx.update(members, state, params)
    return optax.apply_updates(params, updates), state, members.losses.mean()

  batches = workload.batches(0)
  first = next(batches)
  kinds = population.ghost_report(
    population.ghost(workload.loss, params, first)
  )
  counts = collections.Counter(kinds.values())
  print(
    f'{args.rule} over {cfg.batch_size} per-example gradients; leaves: '
    + ', '.join(f'{n} {kind}' for kind, n in sorted(counts.items()))
  )
  print(
    f'before training: validation {workload.evaluate(params):.3f} bits/byte'
  )
  times = []
  batch = first
  for i in range(steps):
    t0 = time.perf_counter()
    params, state, loss = step(params, state, batch)
    loss = float(loss)
    times.append(time.perf_counter() - t0)
    batch = next(batches)
    if (i + 1) % max(1, steps // 5) == 0 or i + 1 == steps:
      print(f'step {i + 1:4d}  train loss {loss:.3f}')
  step_ms = 1e3 * sorted(times[1:] or times)[len(times[1:] or times) // 2]
  print(
    f'after {steps} steps: validation {workload.evaluate(params):.3f} '
    f'bits/byte; median step {step_ms:.0f} ms'
  )


if __name__ == '__main__':
  main()
