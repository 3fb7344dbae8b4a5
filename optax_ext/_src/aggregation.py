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
"""The basic aggregators: mean and sum of a gradient population."""

from collections.abc import Callable

import optax

from optax_ext._src import base
from optax_ext._src import metadata
from optax_ext._src import population as pop_lib


def reducing_aggregator(
  where: str,
  reduce_fn: Callable[[optax.Params, pop_lib.PopulationAxes], optax.Params],
  axes: pop_lib.PopulationAxes | None,
  *,
  lean_ok: bool | str = False,
) -> base.Aggregator:
  """A stateless aggregator applying ``reduce_fn`` to the population.

  ``lean_ok``: ``reduce_fn`` also takes a memory-lean ``Microbatches``.
  """
  axes = base.resolve_axes(where, axes)

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None, **extra_args):
    updates = base.population_arg(where, updates, extra_args)
    base.check_population(where, updates, params, axes, lean_ok=lean_ok)
    return reduce_fn(updates, axes), state

  return base.Aggregator(init_fn, update_fn)


@metadata.describe(
  citations=('robbins1951stochastic',),
  properties=metadata.Properties(
    robust=False,
    multitask=metadata.Multitask(
      non_conflicting=False,
      linear_under_scaling=True,
      permutation_invariant=True,
      homogeneity_degree=1,
    ),
  ),
  case=metadata.Case(kind='aggregator', kwargs={}, rosenbrock=(1e-3, 5000)),
  benchmarks=(
    metadata.Benchmark('aggregators', 'aggregate_by_mean'),
    metadata.Benchmark('train_step', 'mean'),
  ),
  row=metadata.Row(
    'foundation',
    'mean of the population',
    papers='[Robbins & Monro 1951](https://doi.org/10.1214/aoms/1177729586)',
  ),
)
def aggregate_by_mean(
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""Aggregates a gradient population by its mean.

  .. math::
    u = \frac{1}{K} \sum_{k=1}^{K} g_k .

  With a per-example or per-microbatch population of a mean loss this is the
  ordinary mini-batch gradient, so ``optax.chain(aggregate_by_mean(), tx)``
  equals ``tx`` applied to the mean gradient.

  Properties: permutation-invariant, linear, weighted (uniform weights
  ``1/K``); not robust (breakdown point 0: one corrupted member moves the
  output arbitrarily far; NaN or Inf in any member propagates).

  Cost: one pass over the population; on the named path one ``psum`` of a
  param-sized buffer (an all-reduce), the same as data-parallel SGD.

  Args:
    axes: where the members live (default: stacked on axis 0). Updates passed
      to ``update`` have leaves ``[K, *param.shape]`` (stacked) or param shape
      (one member per index of ``axes.axis_name``).

  Returns:
    An :class:`optax_ext.Aggregator`; its updates have the params' shapes and
    the population's dtypes.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import optax_ext
    >>> tx = optax.chain(optax_ext.aggregate_by_mean(), optax.sgd(0.1))
    >>> params = jnp.array([1.0, 2.0])
    >>> state = tx.init(params)
    >>> population = jnp.array([[1.0, 0.0], [3.0, 2.0]])  # K=2 members
    >>> updates, state = tx.update(population, state, params)
    >>> updates
    Array([-0.2, -0.1], dtype=float32)

  References:
    Robbins and Monro, `A Stochastic Approximation Method
    <https://doi.org/10.1214/aoms/1177729586>`_, 1951.
  """
  return reducing_aggregator(
    'aggregate_by_mean', pop_lib.mean, axes, lean_ok=True
  )


@metadata.describe(
  citations=('quinton2024jacobian',),
  properties=metadata.Properties(
    robust=False,
    multitask=metadata.Multitask(
      non_conflicting=False,
      linear_under_scaling=True,
      permutation_invariant=True,
      homogeneity_degree=1,
    ),
  ),
  case=metadata.Case(
    kind='aggregator',
    kwargs={},
    lr=0.1 / metadata.BATTERY_MEMBERS,
    rosenbrock=(1e-3 / metadata.BATTERY_MEMBERS, 5000),
  ),
  benchmarks=(metadata.Benchmark('aggregators', 'aggregate_by_sum'),),
  row=metadata.Row(
    'foundation',
    'sum of the population',
    papers='[Quinton & Rey 2024](https://arxiv.org/abs/2406.16232)',
  ),
)
def aggregate_by_sum(
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""Aggregates a gradient population by its sum.

  .. math::
    u = \sum_{k=1}^{K} g_k .

  Useful when each member is already the gradient of a summed loss or a
  pre-weighted task loss (e.g. the rows of a task Jacobian with the task
  weights folded in), as in TorchJD's ``Sum`` aggregator.

  Properties: permutation-invariant, linear, weighted (unit weights); not
  robust (breakdown point 0; NaN or Inf in any member propagates).

  Cost: one pass over the population; on the named path one ``psum`` of a
  param-sized buffer.

  Args:
    axes: where the members live (default: stacked on axis 0).

  Returns:
    An :class:`optax_ext.Aggregator`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> import optax_ext
    >>> tx = optax_ext.aggregate_by_sum()
    >>> updates, _ = tx.update(jnp.array([[1.0], [2.0]]), tx.init(None))
    >>> updates
    Array([3.], dtype=float32)

  References:
    Quinton and Rey, `Jacobian Descent for Multi-Objective Optimization
    <https://arxiv.org/abs/2406.16232>`_, 2024.
  """
  return reducing_aggregator(
    'aggregate_by_sum', pop_lib.sum, axes, lean_ok=True
  )
