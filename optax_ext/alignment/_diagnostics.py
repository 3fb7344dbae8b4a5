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
"""Conflict diagnostics of a gradient population, for logging."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import metadata
from optax_ext._src import population as pop_lib


class ConflictReport(NamedTuple):
  """Pairwise alignment of a population (all float32 or int32 scalars).

  Attributes:
    cosine: ``[K, K]`` pairwise cosine similarities (0 for zero members).
    num_conflicts: number of pairs ``i < j`` with a negative inner product.
    mean_cosine: the mean cosine over pairs ``i < j``.
    min_cosine: the most conflicting pair's cosine.
  """

  cosine: jax.Array
  num_conflicts: jax.Array
  mean_cosine: jax.Array
  min_cosine: jax.Array


@metadata.describe(
  citations=(),
  row=metadata.Row('multi-task', 'conflict diagnostics', papers='—'),
)
def conflict_report(
  population: optax.Params, axes: pop_lib.PopulationAxes | None = None
) -> ConflictReport:
  r"""Pairwise cosine similarities and conflict counts of a population.

  From the Gramian: :math:`\cos_{ij} = G_{ij}/\sqrt{G_{ii}G_{jj}}`; a pair
  *conflicts* when :math:`G_{ij} < 0` (a step along one member increases
  the other's loss, to first order).

  Args:
    population: leaves ``[K, *shape]`` (stacked) or one member per index of
      the named axis.
    axes: where the members live.

  Returns:
    A :class:`ConflictReport`, identical on every index of a named axis.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> jac = jnp.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    >>> report = alignment.conflict_report(jac)
    >>> int(report.num_conflicts), float(report.min_cosine.round(4))
    (1, -0.8412)
  """
  gram = pop_lib.gramian(population, axes)
  k = gram.shape[0]
  norms = jnp.sqrt(jnp.maximum(jnp.diag(gram), 0.0))
  denom = norms[:, None] * norms[None, :]
  cosine = jnp.where(denom > 0, gram / jnp.where(denom > 0, denom, 1.0), 0.0)
  upper = jnp.triu(jnp.ones((k, k), bool), 1)
  pairs = max(k * (k - 1) // 2, 1)
  return ConflictReport(
    cosine=cosine,
    num_conflicts=jnp.sum(upper & (gram < 0), dtype=jnp.int32),
    mean_cosine=jnp.sum(jnp.where(upper, cosine, 0.0)) / pairs,
    min_cosine=jnp.min(jnp.where(upper, cosine, jnp.inf))
    if k > 1
    else jnp.float32(1.0),
  )
