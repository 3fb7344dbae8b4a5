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
"""Order statistics over members: sorting networks, sort and median.

NaN members sort last (or count as outliers for the median); the XLA:CPU
sorting network and the plain ``jnp.sort`` are chosen in ``kernels``.
"""

import functools

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import axes as axes_lib
from optax_ext._src import kernels
from optax_ext._src import layouts
from optax_ext._src import lean
from optax_ext._src import numerics


def _batcher_pairs(n: int) -> list[tuple[int, int]]:
  """Comparators of Batcher's odd-even merge sort for ``n`` (a power of 2)."""
  pairs = []
  p = 1
  while p < n:
    k = p
    while k >= 1:
      for j in range(k % p, n - k, 2 * k):
        for i in range(min(k, n - j - k)):
          if (i + j) // (2 * p) == (i + j + k) // (2 * p):
            pairs.append((i + j, i + j + k))
      k //= 2
    p *= 2
  return pairs


def network_sort(rows: list[jax.Array], pad) -> list[jax.Array]:
  """Sorts ``rows`` (equal-shaped arrays) with element-wise min/max.

  Batcher's odd-even merge network on a list of member rows (integer order
  keys in this package, see ``numerics.order_key``).

  XLA:CPU sorts along a leading axis much slower than this straight-line
  network (docs/benchmarks.md, kernel notes), and unused outputs (e.g. all
  but the middle ones for a median) are pruned by dead-code elimination.
  ``pad`` is the largest value (padding up to a power of two).
  """
  k = len(rows)
  n = 1 << max(k - 1, 0).bit_length()
  rows = list(rows) + [jnp.full_like(rows[0], pad)] * (n - k)
  for a, b in _batcher_pairs(n):
    rows[a], rows[b] = (
      jnp.minimum(rows[a], rows[b]),
      jnp.maximum(rows[a], rows[b]),
    )
  return rows[:k]


def _nan_count(x: jax.Array) -> jax.Array:
  """How many members of ``x`` ``[K, ...]`` are NaN, per coordinate."""
  (count,) = numerics.sum_over_members(
    x, (lambda m: jnp.isnan(m).astype(jnp.float32),), jnp.float32
  )
  return count


def _sorted_rows(x: jax.Array, keep_nan: bool) -> list[jax.Array]:
  """The ``K`` order statistics of ``x`` along axis 0 (NaN last).

  With ``keep_nan=False`` NaN is returned as ``+Inf``. Up to
  ``NETWORK_MAX`` members (with ``kernels.cpu_tuned()``; else ``jnp.sort``)
  go through a sorting network on
  :func:`numerics.order_key` integer keys, one member row at a time: a
  population-wide conversion was materialised by XLA:CPU into a freshly
  allocated ``[K, ...]`` buffer (docs/benchmarks.md), while per-row
  conversions fuse into the network.
  """
  k = x.shape[0]
  if k > kernels.NETWORK_MAX or not kernels.cpu_tuned():
    xs = jnp.sort(x, axis=0)
    if not keep_nan:
      xs = jnp.where(xs < jnp.inf, xs, jnp.inf)
    return [xs[i] for i in range(k)]
  members = [x[i] for i in range(k)]
  keys = network_sort(
    [numerics.order_key(r) for r in members],
    numerics.max_order_key(x.dtype),
  )
  rows = [numerics.from_order_key(r, x.dtype) for r in keys]
  if keep_nan:  # restore NaN in the last slots, as jnp.sort orders them
    n_nan = _nan_count(x)
    rows = [
      jnp.where(k - 1 - i < n_nan, jnp.nan, r) for i, r in enumerate(rows)
    ]
  return rows


def sort(
  population: axes_lib.Population, axes: axes_lib.PopulationAxes | None = None
) -> axes_lib.Population:
  """Sorts every coordinate across the members (ascending).

  The result is a stacked population whose ``k``-th member holds the
  ``k``-th order statistic of every coordinate. NaN sorts last (as
  ``jnp.sort``). On the named path the population is gathered first (see
  :func:`gather` for the cost). Up to 64 members are sorted with a Batcher
  odd-even merge network of element-wise ``min``/``max`` (much faster than
  XLA's sort along the member axis on CPU); more fall back to ``jnp.sort``.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    axes: where the members live.

  Returns:
    Leaves ``[K, *shape]``, identical on every index of the named axis.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> population.sort(jnp.array([[3., 0.], [1., 2.]]))
    Array([[1., 0.],
           [3., 2.]], dtype=float32)
  """
  return jax.tree.map(
    lambda x: jnp.stack(_sorted_rows(x, keep_nan=True)),
    layouts.gather(population, axes),
  )


def coordinate_median(x: jax.Array, nan_as_outlier: bool) -> jax.Array:
  """The median over axis 0 of ``x`` ``[K, ...]``, in ``x``'s dtype."""
  k = x.shape[0]
  lo, hi = (k - 1) // 2, k // 2
  acc = numerics.accumulation_dtype(x.dtype)
  rows = _sorted_rows(x, keep_nan=False)  # NaN as +inf
  mid = 0.5 * (rows[lo].astype(acc) + rows[hi].astype(acc))
  if not nan_as_outlier:
    mid = jnp.where(_nan_count(x) > 0, jnp.nan, mid)
  return mid.astype(x.dtype)


def median(
  population: axes_lib.Population,
  axes: axes_lib.PopulationAxes | None = None,
  *,
  nan_as_outlier: bool = False,
) -> optax.Params:
  """Coordinate-wise median across the members.

  For even ``K`` it is the mean of the two middle order statistics, computed
  in float32 and cast back to each leaf's dtype. On a named axis the
  members are coordinate-sharded (``layouts.map_coordinates``): O(D) memory and
  traffic per index. By default a coordinate with
  any NaN member is NaN (``jnp.median``'s behaviour); with
  ``nan_as_outlier=True`` NaN counts as larger than every number (it sorts
  last), so the median stays finite while fewer than half the members are
  NaN or infinite in that coordinate.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    axes: where the members live.
    nan_as_outlier: treat NaN as the largest value instead of propagating it.

  Returns:
    A param-shaped tree, identical on every index of the named axis.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> population.median(jnp.array([[1., 10.], [2., 20.], [100., 30.]]))
    Array([ 2., 20.], dtype=float32)
  """
  if lean.is_lean(population):
    raise lean.unsupported('median', 'the coordinate-wise median')
  return layouts.map_coordinates(
    population,
    functools.partial(coordinate_median, nan_as_outlier=nan_as_outlier),
    axes,
  )
