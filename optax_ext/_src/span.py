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
"""Points in the span of a population's members, on every layout.

An iterative rule whose iterates are weighted means of the members
(Weiszfeld's geometric median) is written once against a *span*: the
distances from a point to every member, a weighted mean of the members,
interpolation and the distance between two points, and the point as a
param-shaped tree at the end. Two forms, chosen by the layout:

* :class:`CoordinateSpan` (stacked or named populations): points are
  param-shaped trees; distances are one pass over the members (no Gramian
  cancellation), and the start is the coordinate median;
* :class:`WeightSpan` (memory-lean populations, whose members are never
  held): points are weight vectors :math:`c` with :math:`z = \\sum_k c_k
  g_k`; distances come from the Gramian, :math:`\\|g_k - z\\|^2 = G_{kk} -
  2 (Gc)_k + c^\\top G c`, the start is the (weighted) medoid, and one
  combination pass makes the point at the end.
"""

import jax
from jax import lax
import jax.numpy as jnp

from optax_ext._src import axes as axes_lib
from optax_ext._src import gram as gram_lib
from optax_ext._src import layouts
from optax_ext._src import lean
from optax_ext._src import numerics
from optax_ext._src import order_statistics
from optax_ext._src import reductions


def _tree_norm(tree) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


class CoordinateSpan:
  """Points as param-shaped trees in the accumulation dtype."""

  def __init__(
    self, population: axes_lib.Population, axes: axes_lib.PopulationAxes
  ):
    self._population = population
    self._axes = axes
    self.dtype = numerics.tree_common_accumulation_dtype(population)
    # A NaN/Inf norm <=> a non-finite member.
    self.finite = jnp.isfinite(reductions.all_norms(population, axes))

  def _cast(self, tree):
    return jax.tree.map(lambda x: x.astype(self.dtype), tree)

  def start(self, weights: jax.Array):
    """The coordinate median (NaN members as outliers)."""
    del weights  # the median is unweighted
    return self._cast(
      order_statistics.median(self._population, self._axes, nan_as_outlier=True)
    )

  def distances(self, point) -> jax.Array:
    """``[K]`` distances from ``point`` to every member (NaN/Inf for a
    non-finite member)."""
    d = reductions.all_norms(self._population, self._axes, center=point)
    return d.astype(self.dtype)

  def mean(self, weights: jax.Array):
    """:math:`\\sum_k w_k g_k` (members of weight 0 skipped, NaN ones too)."""
    return self._cast(
      gram_lib.combine(
        self._population,
        lax.stop_gradient(weights),
        self._axes,
        skip_zero_weights=True,
      )
    )

  def lerp(self, p, q, t: jax.Array):
    """:math:`(1 - t) p + t q`."""
    return jax.tree.map(lambda a, b: (1.0 - t) * a + t * b, p, q)

  def distance(self, p, q) -> jax.Array:
    return _tree_norm(jax.tree.map(jnp.subtract, p, q))

  def materialise(self, point):
    """The point as a tree in the members' dtypes."""
    return jax.tree.map(
      lambda v, dt: v.astype(dt), point, layouts.member_dtypes(self._population)
    )


class WeightSpan:
  """Points as ``[K]`` float32 weight vectors over the members (lean)."""

  def __init__(
    self, population: axes_lib.Population, axes: axes_lib.PopulationAxes
  ):
    self._population = population
    self._axes = axes
    self.dtype = jnp.dtype(jnp.float32)
    gram = gram_lib.gramian(population, axes)
    self.finite = jnp.isfinite(jnp.diagonal(gram))
    both = self.finite[:, None] & self.finite[None, :]
    self._gram = jnp.where(both, gram, 0.0)
    self._diag = jnp.diagonal(self._gram)

  def _norm(self, c: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.maximum(c @ self._gram @ c, 0.0))

  def start(self, weights: jax.Array) -> jax.Array:
    """The medoid: the finite member with the least weighted sum of
    distances to the others (the coordinate median needs coordinates)."""
    diag, gram = self._diag, self._gram
    pair = jnp.sqrt(
      jnp.maximum(diag[:, None] + diag[None, :] - 2.0 * gram, 0.0)
    )
    score = jnp.where(self.finite, pair @ weights, jnp.inf)
    return jax.nn.one_hot(jnp.argmin(score), gram.shape[0], dtype=self.dtype)

  def distances(self, c: jax.Array) -> jax.Array:
    sq = self._diag - 2.0 * (self._gram @ c) + c @ self._gram @ c
    d = jnp.sqrt(jnp.maximum(sq, 0.0))
    return jnp.where(self.finite, d, jnp.nan)

  def mean(self, weights: jax.Array) -> jax.Array:
    return weights.astype(self.dtype)

  def lerp(self, p: jax.Array, q: jax.Array, t: jax.Array) -> jax.Array:
    return (1.0 - t) * p + t * q

  def distance(self, p: jax.Array, q: jax.Array) -> jax.Array:
    return self._norm(p - q)

  def materialise(self, c: jax.Array):
    """One combination pass: :math:`\\sum_k c_k g_k` in the members' dtypes."""
    return gram_lib.combine(
      self._population,
      lax.stop_gradient(c),
      self._axes,
      skip_zero_weights=True,
    )


def of(
  population: axes_lib.Population, axes: axes_lib.PopulationAxes
) -> CoordinateSpan | WeightSpan:
  """The span a population's layout supports."""
  if lean.is_lean(population):
    return WeightSpan(population, axes)
  return CoordinateSpan(population, axes)
