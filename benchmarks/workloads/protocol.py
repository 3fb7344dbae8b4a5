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
"""The comparison protocol: a learning-rate grid, seeds, a step budget.

Per workload and method: every learning rate of the method's grid is run
with seed 0 and the best final validation metric picks the rate; seeds 1
.. S-1 then run at that rate, and the S runs at the chosen rate are
reported (final metric mean +- std, the curves). Every run has the same
step budget, a linear warm-up over the first 10% of the steps and a cosine
decay to a tenth of the rate (the schedule is part of the workload, not of
the method). The target of "steps to target" is the final value of the
baseline's (the first method's) worst seed, which every baseline run
reaches: how long each method needs to match the baseline. Wall time is
the training steps' time only (no compilation, no evaluation).
"""

from collections.abc import Callable
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_ext
from optax_ext import alignment


@dataclasses.dataclass(frozen=True)
class Method:
  """A method: ``make(schedule, steps) -> tx`` and its learning-rate grid.

  ``eval_params(params, opt_state)`` gives the parameters to evaluate (the
  slow weights for Lookahead); by default the params themselves. With
  ``members = K > 0`` the method receives a population of ``K`` microbatch
  gradients (``grad_population``), attacked by the workload's ``attack``
  if it has one, unless ``clean`` (a reference run without the attack).
  With ``tasks`` it receives the task Jacobian of the workload's
  ``task_losses(params, *batch)`` (``alignment.task_jacobian``).
  """

  name: str
  make: Callable[[Callable, int], optax.GradientTransformation]
  grid: tuple[float, ...]
  eval_params: Callable = lambda params, state: params
  members: int = 0
  clean: bool = False
  tasks: bool = False


def schedule(lr: float, steps: int):
  return optax.warmup_cosine_decay_schedule(
    0.0, lr, max(1, steps // 10), steps, end_value=lr / 10
  )


def _task_rows(task_losses):
  jac_fn = alignment.task_jacobian(task_losses)

  def fn(params, batch):
    losses, jac = jac_fn(params, *batch)
    return jnp.mean(losses), jac

  return fn


def _attacked(grad_fn, attack):
  def fn(params, batch):
    loss, grads = grad_fn(params, batch)
    return loss, attack(grads)

  return fn


def train(
  workload, method: Method, lr: float, seed: int, steps: int, eval_every: int
) -> dict:
  """One run: ``{'curve': [[step, metric, train_seconds], ...], ...}``."""
  tx = method.make(schedule(lr, steps), steps)
  params = workload.init(seed)
  state = tx.init(params)

  if method.tasks:
    grad_fn = _task_rows(workload.task_losses)
  elif method.members:
    grad_fn = optax_ext.grad_population(workload.loss, method.members)
    attack = getattr(workload, 'attack', None)
    if attack is not None and not method.clean:
      grad_fn = _attacked(grad_fn, attack)
  else:
    grad_fn = jax.value_and_grad(workload.loss)

  @jax.jit
  def step(params, state, batch):
    loss, grads = grad_fn(params, batch)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  eval_params = jax.jit(method.eval_params)
  batches = workload.batches(seed)
  # Compile outside the timed loop on a copy of the first batch.
  first = next(batches)
  jax.block_until_ready(step.lower(params, state, first).compile())
  curve = [[0, workload.evaluate(eval_params(params, state)), 0.0]]
  seconds = 0.0
  losses = []
  batch = first
  for i in range(1, steps + 1):
    start = time.perf_counter()
    params, state, loss = step(params, state, batch)
    jax.block_until_ready(loss)
    seconds += time.perf_counter() - start
    losses.append(float(loss))
    if i % eval_every == 0 or i == steps:
      curve.append([i, workload.evaluate(eval_params(params, state)), seconds])
    if i < steps:
      batch = next(batches)
  final = curve[-1][1]
  return {
    'method': method.name,
    'lr': lr,
    'seed': seed,
    'curve': curve,
    'final': final,
    'finite': bool(np.isfinite(final) and np.all(np.isfinite(losses))),
    'train_loss_last': float(np.mean(losses[-max(1, steps // 20) :])),
  }


def _better(workload, a: float, b: float) -> bool:
  if not np.isfinite(b):
    return bool(np.isfinite(a))
  return a < b if workload.lower_is_better else a > b


def compare(
  workload,
  methods: list[Method],
  *,
  seeds: int,
  steps: int,
  eval_every: int,
  grid_size: int | None = None,
  log=print,
) -> dict:
  """The protocol over ``methods``; returns everything for the results."""
  runs = []
  chosen = {}
  for method in methods:
    grid = method.grid[:grid_size] if grid_size else method.grid
    tuned = []
    for lr in grid:
      run = train(workload, method, lr, 0, steps, eval_every)
      log(f'  {method.name:22s} lr {lr:<8g} seed 0: {run["final"]:.4f}')
      tuned.append(run)
    best = tuned[0]
    for run in tuned[1:]:
      if _better(workload, run['final'], best['final']):
        best = run
    chosen[method.name] = best['lr']
    runs.extend(tuned)
    for seed in range(1, seeds):
      run = train(workload, method, best['lr'], seed, steps, eval_every)
      log(
        f'  {method.name:22s} lr {best["lr"]:<8g} seed {seed}: '
        f'{run["final"]:.4f}'
      )
      runs.append(run)
  return {
    'runs': runs,
    'chosen_lr': chosen,
    'summary': summarise(workload, methods, runs, chosen),
  }


def _first_reaching(workload, curve, target):
  for step, value, seconds in curve:
    if (value <= target) if workload.lower_is_better else (value >= target):
      return step, seconds
  return None, None


def summarise(workload, methods, runs, chosen) -> list[dict]:
  rows = []
  at_best = {
    m.name: [
      r for r in runs if r['method'] == m.name and r['lr'] == chosen[m.name]
    ]
    for m in methods
  }
  finals = [r['final'] for r in at_best[methods[0].name]]
  target = float(max(finals) if workload.lower_is_better else min(finals))
  for m in methods:
    rs = at_best[m.name]
    finals = np.array([r['final'] for r in rs])
    reach = [_first_reaching(workload, r['curve'], target) for r in rs]
    steps_ = [s for s, _ in reach if s is not None]
    secs = [t for s, t in reach if s is not None]
    rows.append(
      {
        'method': m.name,
        'lr': chosen[m.name],
        'seeds': len(rs),
        'final_mean': float(finals.mean()),
        'final_std': float(finals.std()),
        'target': target,
        'reached': f'{len(steps_)}/{len(rs)}',
        'steps_to_target': float(np.mean(steps_)) if steps_ else None,
        'seconds_to_target': float(np.mean(secs)) if secs else None,
        'train_seconds': float(np.mean([r['curve'][-1][2] for r in rs])),
      }
    )
  return rows
