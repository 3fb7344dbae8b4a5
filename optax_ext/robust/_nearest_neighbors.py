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
"""Nearest-neighbour rules: NNA, MoNNA mixing, NNM pre-aggregation."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import aggregation
from optax_ext._src import base
from optax_ext._src import metadata
from optax_ext._src import population as pop_lib
from optax_ext._src import validation


# Battery case: f = 2 of 4 with the median pivot: the two nearest are g +- d.
@metadata.describe(
  citations=('farhadkhani2023robust',),
  properties=metadata.Properties(robust=True, lean=False),
  case=metadata.Case(
    kind='aggregator', kwargs={'num_byzantine': 2}, rosenbrock=(1e-3, 5000)
  ),
  benchmarks=(
    metadata.Benchmark('aggregators', 'nearest_neighbors(f=1)', args=(1,)),
  ),
  row=metadata.Row(
    'robust',
    'nearest-neighbour averaging (NNA), MoNNA peer-to-peer mixing',
    papers='[Farhadkhani et al. 2023](https://arxiv.org/abs/2209.10931)',
    also=('nna_mix',),
  ),
)
def aggregate_by_nearest_neighbors(
  num_byzantine: int,
  pivot: Callable[..., Any] | None = None,
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""Nearest-neighbour averaging (NNA): mean of the members nearest a pivot.

  Averages the :math:`K - f` members closest (global L2) to the pivot. The
  default pivot is the coordinate median (a robust server-side choice);
  ``pivot`` can be any ``(population, axes) -> param-shaped`` function, e.g.
  another aggregator's output.

  Properties: permutation-invariant; identical members returned unchanged;
  ``f = 0`` is the mean. **Breakdown point**: ``f`` corrupted members as
  long as the pivot is within the honest members' spread (the default median
  pivot tolerates ``f < K / 2``). NaN/Inf members are infinitely far and not
  averaged.

  Cost: the pivot, one pass for the distances, one for the mean; on a named
  axis the default pivot (the coordinate median) is coordinate-sharded:
  O(D) per index.

  .. note::
    This is the server-side aggregator; the peer-to-peer MoNNA setting (each
    node pivots on its own model) is :func:`nna_mix`.

  Args:
    num_byzantine: ``f`` in ``[0, K - 1]`` (checked at trace time).
    pivot: ``(population, axes) -> param-shaped tree``; default coordinate
      median.
    axes: where the members live.

  Returns:
    An :class:`optax_ext.Aggregator`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import robust
    >>> tx = robust.aggregate_by_nearest_neighbors(num_byzantine=1)
    >>> pop = jnp.array([[0.], [1.], [2.5], [3.], [100.]])
    >>> tx.update(pop, tx.init(jnp.zeros(1)))[0]  # mean of 0, 1, 2.5, 3
    Array([1.625], dtype=float32)

  References:
    Farhadkhani et al., `Robust Collaborative Learning with Linear Gradient
    Overhead <https://arxiv.org/abs/2209.10931>`_, 2023.
  """
  where = 'aggregate_by_nearest_neighbors'
  validation.check_integer(where, 'num_byzantine', num_byzantine, lower=0)
  if pivot is not None:
    validation.check_callable(where, 'pivot', pivot)
  pivot_fn = pivot or (lambda g, a: pop_lib.median(g, a, nan_as_outlier=True))

  def reduce(updates, axes):
    k = pop_lib.size(updates, axes)
    if num_byzantine >= k:
      raise ValueError(
        f'{where}: `num_byzantine` must be < K={k}, got {num_byzantine}.'
      )
    center = pivot_fn(updates, axes)
    d = pop_lib.all_norms(updates, axes, center=center)
    d = jnp.where(jnp.isfinite(d), d, jnp.inf)
    order = jnp.argsort(d, stable=True)
    chosen = jnp.zeros((k,), jnp.bool_).at[order[: k - num_byzantine]].set(True)
    return pop_lib.mean_of_selected(updates, chosen, axes)

  # The default pivot, the coordinate median, needs every member at once.
  lean_ok = True if pivot is not None else 'the default pivot (the median)'
  return aggregation.reducing_aggregator(where, reduce, axes, lean_ok=lean_ok)


def _nearest_neighbour_mix(where, updates, num_byzantine, axes):
  """Each member replaced by the mean of its ``K - f`` nearest members."""
  k_local = pop_lib.local_size(updates, axes)
  k = pop_lib.size(updates, axes)
  if num_byzantine >= k:
    raise ValueError(
      f'{where}: `num_byzantine` must be < K={k}, got {num_byzantine}.'
    )
  finite = jnp.isfinite(pop_lib.all_norms(updates, axes))
  d = pop_lib.squared_distances(updates, axes)
  d = jnp.where(finite[:, None] & finite[None, :], d, jnp.inf)
  d = d.at[jnp.diag_indices(k)].set(0.0)
  order = jnp.argsort(d, axis=1, stable=True)[:, : k - num_byzantine]
  mixing = jnp.zeros((k, k), jnp.float32)
  mixing = jax.vmap(lambda row, idx: row.at[idx].set(1.0))(mixing, order)
  mixing = mixing / jnp.float32(k - num_byzantine)
  mixed = pop_lib.mix(updates, mixing, axes)
  mine = pop_lib.local_slice(finite, axes, k_local)

  def keep_non_finite(x, y):
    # A non-finite member is not mixed (it stays as it is, for the next
    # aggregator to exclude).
    if axes.axis is None:
      return jnp.where(mine[0], y, x)
    shape = [1] * x.ndim
    shape[axes.axis] = -1
    return jnp.where(mine.reshape(shape), y, x)

  return jax.tree.map(keep_non_finite, updates, mixed)


@metadata.describe(citations=('farhadkhani2023robust',))
def nna_mix(
  params: optax.Params,
  num_byzantine: int,
  axes: pop_lib.PopulationAxes,
) -> optax.Params:
  r"""MoNNA's peer-to-peer step: each node averages its nearest peers' models.

  Every node (one per index of the named axis) replaces its model by the
  mean of the :math:`K - f` models nearest to its own (itself included),
  after its local optimiser step: NNA acting on *models*. With a local
  momentum optimiser this is MoNNA::

    local = optax.chain(optax.ema(0.99, debias=False), optax.scale(-lr))
    # on each node (inside shard_map / vmap over 'nodes'):
    updates, state = local.update(grads, state)
    params = optax.apply_updates(params, updates)
    params = robust.nna_mix(params, f, PopulationAxes(None, 'nodes'))

  (:func:`optax.ema` without debiasing is the reference's momentum with
  dampening equal to the momentum.) Same maths as
  :func:`mix_by_nearest_neighbors`; non-finite models are never mixed in.

  Args:
    params: this node's model (``axes.axis is None``) or a stack of models.
    num_byzantine: ``f`` in ``[0, K - 1]``.
    axes: where the nodes live (a named axis, one node per index).

  Returns:
    The mixed model(s), shaped and typed like ``params``.

  Example:
    >>> import jax, jax.numpy as jnp, optax_ext
    >>> from optax_ext import robust
    >>> models = jnp.array([[0.0], [1.0], [2.0], [90.0]])  # node 3 Byzantine
    >>> nodes = optax_ext.PopulationAxes(axis=None, axis_name='nodes')
    >>> jax.vmap(lambda m: robust.nna_mix(m, 1, nodes), axis_name='nodes')(
    ...   models)
    Array([[ 1.],
           [ 1.],
           [ 1.],
           [31.]], dtype=float32)

  References:
    Farhadkhani et al., `Robust Collaborative Learning with Linear Gradient
    Overhead <https://arxiv.org/abs/2209.10931>`_, ICML 2023.
  """
  where = 'nna_mix'
  validation.check_integer(where, 'num_byzantine', num_byzantine, lower=0)
  axes = base.resolve_axes(where, axes)
  try:
    pop_lib.local_size(params, axes)
  except ValueError as e:
    raise ValueError(f'{where}: {e}') from None
  return _nearest_neighbour_mix(where, params, num_byzantine, axes)


@metadata.describe(
  citations=('allouah2023fixing',),
  properties=metadata.Properties(robust=False, lean=False),
  case=metadata.Case(
    kind='population', kwargs={'num_byzantine': 1}, rosenbrock=(1e-3, 5000)
  ),
  row=metadata.Row(
    'robust',
    'nearest-neighbour mixing (NNM, pre-aggregation)',
    papers='[Allouah et al. 2023](https://arxiv.org/abs/2302.01772)',
  ),
)
def mix_by_nearest_neighbors(
  num_byzantine: int, axes: pop_lib.PopulationAxes | None = None
) -> optax.GradientTransformationExtraArgs:
  r"""Nearest-neighbour mixing (NNM): each member becomes its neighbours' mean.

  Member :math:`i` is replaced by the mean of the :math:`K - f` members
  nearest to it in global L2 (itself included; ties by index):

  .. math::
    \tilde g_i = \frac{1}{K - f}\sum_{j \in N_{K-f}(i)} g_j .

  A pre-aggregation (population -> population): chain a robust aggregator
  after it, ``optax.chain(mix_by_nearest_neighbors(f),
  aggregate_by_coordinate_median(), ...)``. Mixing shrinks the honest
  members' spread and bounds how far a Byzantine member can pull any mix.
  Non-finite members are infinitely far from the others (never mixed in)
  and are passed through unchanged for the next aggregator to handle.

  Properties: permutation-equivariant; ``f = K - 1`` is the identity;
  ``f = 0`` replaces every member by the mean; identical members are left
  unchanged.

  Cost: the K x K Gramian and one K x K mixing pass; on a named axis three
  ``all_to_all`` (distances, then the mix and back): O(D) per index.

  .. note::
    Only NNM's definition was available (abstract and a third-party
    docstring); the neighbour set includes the member itself, as NNA's.

  Args:
    num_byzantine: ``f`` in ``[0, K - 1]`` (checked at trace time).
    axes: where the members live.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` mapping a population to a
    population of the same layout.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import robust
    >>> tx = robust.mix_by_nearest_neighbors(num_byzantine=1)
    >>> pop = jnp.array([[0.0], [1.0], [2.0], [51.0]])
    >>> tx.update(pop, tx.init(jnp.zeros(1)))[0]  # each: mean of 3 nearest
    Array([[ 1.],
           [ 1.],
           [ 1.],
           [18.]], dtype=float32)

  References:
    Allouah et al., `Fixing by Mixing: A Recipe for Optimal Byzantine ML
    under Heterogeneity <https://arxiv.org/abs/2302.01772>`_, AISTATS 2023.
  """
  where = 'mix_by_nearest_neighbors'
  validation.check_integer(where, 'num_byzantine', num_byzantine, lower=0)
  axes = base.resolve_axes(where, axes)

  def update_fn(updates, state, params=None, **extra_args):
    updates = base.population_arg(where, updates, extra_args)
    base.check_population(where, updates, params, axes)
    return _nearest_neighbour_mix(where, updates, num_byzantine, axes), state

  return base.population_transform(lambda params: optax.EmptyState(), update_fn)
