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
"""Base types: the aggregator transform and trace-time population checks."""

import chex
import jax
from optax.experimental import aggregating

from optax_ext._src import population as pop_lib


class Aggregator(aggregating.Aggregator):
  """A transformation from a gradient population to param-shaped updates.

  An ``Aggregator`` is an ``optax.GradientTransformationExtraArgs`` whose
  ``update`` receives a gradient *population* (see
  :class:`optax_ext.PopulationAxes`) in place of the usual param-shaped
  gradient, and returns param-shaped updates. It therefore comes first in an
  ``optax.chain``; every transform after it is an ordinary optax transform.
  ``init`` receives the (param-shaped) parameters, so
  ``flax.nnx.Optimizer(model, tx, wrt=nnx.Param)`` works unchanged: pass the
  population as the gradient to ``optimizer.update``.

  It subclasses ``optax.experimental.aggregating.Aggregator`` so it can also
  be the aggregator of ``optax.experimental.aggregating.process``.

  Attributes:
    init: ``init(params) -> state``.
    update: ``update(population, state, params=None, **extra_args) ->
      (updates, state)``.
  """


def check_population(
  where: str,
  population: chex.ArrayTree,
  params: chex.ArrayTree | None,
  axes: pop_lib.PopulationAxes,
) -> int:
  """Trace-time check that ``population`` matches ``params`` under ``axes``.

  Args:
    where: the public name used in error messages.
    population: the gradient population.
    params: the parameters, or ``None`` to check only the population.
    axes: where the members live.

  Returns:
    The local number of members.

  Raises:
    ValueError: if the tree structures differ, or a leaf's shape is not the
      param's shape with the member axis inserted.
  """
  try:
    k_local = pop_lib.local_size(population, axes)
  except ValueError as e:
    raise ValueError(f'{where}: {e}') from None
  if params is None:
    return k_local
  p_def = jax.tree.structure(params)
  g_def = jax.tree.structure(population)
  if p_def != g_def:
    raise ValueError(
      f'{where}: the population and the params have different tree '
      f'structures.\n  population: {g_def}\n  params:     {p_def}'
    )
  for (path, g), p in zip(
    jax.tree_util.tree_leaves_with_path(population),
    jax.tree.leaves(params),
    strict=True,
  ):
    g_shape, p_shape = tuple(jax.numpy.shape(g)), tuple(jax.numpy.shape(p))
    if axes.axis is None:
      expected = p_shape
    else:
      expected = p_shape[: axes.axis] + (k_local,) + p_shape[axes.axis :]
    if g_shape != expected:
      layout = (
        'param-shaped members (axis=None)'
        if axes.axis is None
        else f'members on axis {axes.axis}'
      )
      raise ValueError(
        f'{where}: population leaf {jax.tree_util.keystr(path)} has shape '
        f'{g_shape} but params have shape {p_shape}; with {layout} the '
        f'population leaf must have shape {expected}. An aggregator must '
        'come first in a chain and receive the population as its updates.'
      )
  return k_local
