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
"""The Gramian of a population and weighted combinations of its members.

A rule written as Gramian -> weights runs on every layout through these two:
``gramian`` (``K x K`` inner products, optionally centred on the coordinate
median) and ``combine`` (``sum_k w_k g_k``), plus ``mix`` (``W @ members``).
"""

import functools
import operator
from typing import Literal

import jax
from jax import lax
import jax.numpy as jnp
import optax

from optax_ext._src import axes as axes_lib
from optax_ext._src import kernels
from optax_ext._src import layouts
from optax_ext._src import lean
from optax_ext._src import numerics
from optax_ext._src import order_statistics


def mix(
  population: axes_lib.Population,
  matrix: jax.Array,
  axes: axes_lib.PopulationAxes | None = None,
) -> axes_lib.Population:
  r"""Each member replaced by a combination of all: :math:`g_i \leftarrow
  \sum_j M_{ij} g_j`.

  Non-finite values count as 0 in the sums (a member with weight 0 cannot
  leak NaN). On a named axis the members are coordinate-sharded (one
  ``all_to_all``), each index mixes its ``[K, D/N]`` block and a second
  ``all_to_all`` returns every member's rows to its index: per index O(D)
  memory and traffic, whatever ``K`` (leaves smaller than ``N`` are
  gathered whole).

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    matrix: ``[K, K]`` float32, the same on every index, member order as
      :func:`gather`.
    axes: where the members live.

  Returns:
    A population with the same layout and dtypes (mixed in float32, float64
    for float64 leaves).
  """
  axes = axes_lib.resolve(axes)
  k_local = layouts.local_size(population, axes)
  if lean.is_lean(population):
    raise lean.unsupported('mix', 'mixing the members')
  acc = numerics.tree_common_accumulation_dtype(population)
  m_acc = jnp.asarray(matrix, acc)

  def clean(x):
    y = x.astype(acc)
    return jnp.where(jnp.isfinite(y), y, 0.0)

  def one(x):
    local_shape = x.shape
    flat = clean(axes_lib.local_flat(x, axes))  # [k, d]
    d = flat.shape[1]
    if not axes.is_named:
      out = jnp.matmul(m_acc, flat, precision=lax.Precision.HIGHEST)
    elif axes_lib.shards_coordinates(axes, d):
      n = lax.axis_size(axes.axis_name)
      block = axes_lib.to_coordinate_shards(
        flat, axes_lib.PopulationAxes(0, axes.axis_name)
      )
      mixed = jnp.matmul(m_acc, block, precision=lax.Precision.HIGHEST)
      m = mixed.shape[1]
      back = lax.all_to_all(
        mixed.reshape(n, k_local, m),
        axes.axis_name,
        split_axis=0,
        concat_axis=1,
      )  # [k_local, n, m]: this index's members, every block
      out = back.reshape(k_local, n * m)[:, :d]
    else:
      everyone = axes_lib.all_gather(flat, axes.axis_name, tiled=True)
      rows = axes_lib.local_slice(m_acc, axes, k_local)
      out = jnp.matmul(rows, everyone, precision=lax.Precision.HIGHEST)
    if axes.axis is None:
      return out.reshape(local_shape).astype(x.dtype)
    moved = axes_lib.leading(x, axes.axis).shape
    out = out.reshape(moved)
    return jnp.moveaxis(out, 0, axes.axis).astype(x.dtype)

  return jax.tree.map(one, population)


def gramian(
  population: axes_lib.Population,
  axes: axes_lib.PopulationAxes | None = None,
  *,
  center_on_median: bool | Literal['auto'] = False,
) -> jax.Array:
  r"""The ``K x K`` Gram matrix :math:`G_{ij} = \langle g_i, g_j \rangle`.

  Inner products run over all leaves, accumulated in float32. On the named
  path the members are coordinate-sharded (one ``all_to_all``: each index
  holds all ``K`` members of ``1/N`` of the coordinates), each index forms
  the ``K x K`` partial Gramian of its block and one ``psum`` of ``K^2``
  floats completes it: per index O(D + K^2) memory and traffic, whatever
  ``K`` (``K^2 D / N`` multiply-adds). Leaves smaller than ``N`` are
  gathered whole (see ``layouts.map_coordinates``).

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    axes: where the members live.
    center_on_median: the Gramian of the members minus their coordinate
      median (NaN as an outlier), computed on the same coordinate blocks (no
      extra pass or collective). Distances from it keep float32 accuracy
      relative to the members' spread whatever their common offset.
      ``'auto'``: centred where that is available and needed, for rules
      that take distances from the Gramian (Krum, nearest neighbours): on a
      named axis always (no extra cost); on a stacked population only when
      cancellation would cost more than about 3 digits of some distance
      (:math:`d_{ij} < 1.2 \cdot 10^{-3} (G_{ii} + G_{jj})`), since the
      centred contraction reads a fused operand and is slower on XLA:CPU;
      never on a lean population (no coordinates to centre on).

  Returns:
    A float32 ``[K, K]`` symmetric positive semi-definite matrix, identical on
    every index of the named axis.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> population.gramian({'w': jnp.array([[1., 0.], [1., 1.]])})
    Array([[1., 1.],
           [1., 2.]], dtype=float32)
  """
  axes = axes_lib.resolve(axes)
  layouts.local_size(population, axes)
  if center_on_median == 'auto':
    if lean.is_lean(population):
      center_on_median = False
    elif axes.is_named:
      center_on_median = True
    else:
      raw = _gramian(population, axes, center_on_median=False)
      diag = jnp.diagonal(raw)
      scale = diag[:, None] + diag[None, :]
      off = ~jnp.eye(raw.shape[0], dtype=bool)
      lossy = jnp.any(off & (scale - 2.0 * raw < 1.2e-3 * scale) & (scale > 0))
      return lax.cond(
        lossy,
        lambda: _gramian(population, axes, center_on_median=True),
        lambda: raw,
      )
  return _gramian(population, axes, center_on_median=bool(center_on_median))


def _gramian(
  population: axes_lib.Population,
  axes: axes_lib.PopulationAxes,
  *,
  center_on_median: bool,
) -> jax.Array:
  """:func:`gramian` with the centring decided."""
  if lean.is_lean(population):
    if not axes.is_named:
      return lean.gramian(population)
    if not isinstance(population, lean.MemberFree):
      raise ValueError(
        'gramian: a population.microbatches population on a named axis '
        'gives each index only its own members; the Gramian rules need '
        'every pair across the indices. Use population.ghost (it gathers '
        "the members' activations and cotangents) or grad_population, or "
        'keep the Gramian rules to one index (the mean, per-member clipping '
        'and the private mean work across indices).'
      )
    # Ghost leaves from their gathered rows; the other leaves' per-member
    # gradients as a population stacked on the axis.
    g, formed = population.gathered_gramian(axes.axis_name)
    if formed:
      g = g + _gramian(
        formed, axes.locally_stacked(), center_on_median=False
      ).astype(g.dtype)
    return g
  acc = numerics.tree_common_accumulation_dtype(population)
  k = layouts.size(population, axes)
  sharded = jnp.zeros((k, k), acc)  # partial sums, summed over the axis
  whole = jnp.zeros((k, k), acc)  # identical on every index already
  any_sharded = False

  # The blocked CPU loop slices the coordinates: fine on per-device arrays
  # (a named axis, or one device), but a global-view jit population
  # sharded on its coordinates (shard_coordinates) would be gathered to
  # slice it (several D of temporaries; docs/benchmarks.md), so multi-device
  # global views keep the single dot.
  blocked = kernels.cpu_tuned() and (axes.is_named or jax.device_count() == 1)

  def gram(rows):  # [K, m], all members of m coordinates
    mid = None
    if center_on_median:
      mid = order_statistics.coordinate_median(
        rows, nan_as_outlier=True
      ).astype(rows.dtype)
    return _gram_of_rows(rows, mid, acc, blocked=blocked)

  for x in jax.tree.leaves(population):
    if not axes.is_named:
      whole = whole + gram(axes_lib.local_flat(x, axes))
    elif axes_lib.shards_coordinates(
      axes, axes_lib.local_flat(x, axes).shape[1]
    ):
      sharded = sharded + gram(axes_lib.to_coordinate_shards(x, axes))
      any_sharded = True
    else:
      full = axes_lib.gather_leaf(x, axes)
      whole = whole + gram(jnp.reshape(full, (k, -1)))
  if any_sharded:
    whole = whole + lax.psum(sharded, axes.axis_name)
  return whole


def _gram_of_rows(
  rows: jax.Array, center: jax.Array | None, acc, *, blocked: bool
) -> jax.Array:
  """``(rows - center) (rows - center)^T`` in ``acc``, backend-aware.

  On GPU/TPU (and for short rows, or ``blocked=False``) one ``dot_general``.
  On XLA:CPU the dot of a ``[K, D]`` operand with a ``K x K`` result runs
  single-threaded at ~5 GFLOP/s. There the contraction runs as a
  ``fori_loop`` over column blocks, ``GRAM_BLOCK`` columns (a cache-resident
  ``[K, 8192]`` slice) at a time, and the members are split into groups of
  ``GRAM_GROUP`` rows: one small dot per block and pair of groups on or above
  the diagonal, ``q (q + 1) / 2`` independent dots for ``q`` groups (two or
  four blocks per loop step when there are few), which the CPU runtime runs
  on all its threads (and which skip the lower triangle).
  The lower triangle is filled by symmetry. The centring, when asked, is
  applied block by block (no centred copy of the rows). Measurements: docs
  and ``benchmarks/run.py --only multitask``.
  """
  k, d = rows.shape

  def centred(a, c):
    return a if c is None else a - c[None]

  def dot(a, b):
    return jnp.matmul(
      a, b.T, preferred_element_type=acc, precision=lax.Precision.HIGHEST
    ).astype(acc)

  if not blocked or d < 2 * kernels.GRAM_BLOCK:
    a = centred(rows, center)
    return dot(a, a)
  groups = [
    (s, min(s + kernels.GRAM_GROUP, k)) for s in range(0, k, kernels.GRAM_GROUP)
  ]
  pairs = [(a, b) for a in range(len(groups)) for b in range(a, len(groups))]
  # Column blocks per loop step: enough independent dots per step to keep
  # the runtime's threads busy when there are few group pairs.
  width = kernels.GRAM_BLOCK * (4 if len(pairs) == 1 else 2)

  def add_pairs(blk, sums):  # blk: [K, m], one dot per pair of groups
    parts = [blk[s:e] for s, e in groups]
    return tuple(
      g + dot(parts[a], parts[b]) for g, (a, b) in zip(sums, pairs, strict=True)
    )

  def body(i, sums):
    start = i * width
    blk = lax.dynamic_slice_in_dim(rows, start, width, axis=1)
    c = (
      None if center is None else lax.dynamic_slice_in_dim(center, start, width)
    )
    blk = centred(blk, c)
    for j in range(0, width, kernels.GRAM_BLOCK):
      sums = add_pairs(blk[:, j : j + kernels.GRAM_BLOCK], sums)
    return sums

  n = d // width
  zeros = tuple(
    jnp.zeros((groups[a][1] - groups[a][0], groups[b][1] - groups[b][0]), acc)
    for a, b in pairs
  )
  sums = lax.fori_loop(0, n, body, zeros) if n else zeros
  if d > n * width:  # the tail
    tail_c = None if center is None else center[n * width :]
    sums = add_pairs(centred(rows[:, n * width :], tail_c), sums)
  grid = [[None] * len(groups) for _ in groups]
  for g, (a, b) in zip(sums, pairs, strict=True):
    grid[a][b] = g
    grid[b][a] = g.T
  return jnp.block(grid)


def combine(
  population: axes_lib.Population,
  weights: jax.Array,
  axes: axes_lib.PopulationAxes | None = None,
  *,
  skip_zero_weights: bool = False,
) -> optax.Params:
  r"""Weighted sum of the members, :math:`\sum_k w_k g_k`.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    weights: ``[K]`` weights, the same on every index of the named axis, in
      member order (named-axis index first, then local position).
    axes: where the members live.
    skip_zero_weights: members with weight exactly 0 contribute nothing even
      if they hold NaN or Inf (``0 * NaN`` would be NaN). For aggregators
      that select members.

  Returns:
    A param-shaped tree in each leaf's dtype (accumulated in float32),
    identical on every index of the named axis.

  Raises:
    ValueError: at trace time, if ``weights`` is not ``[K]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> pop = {'w': jnp.array([[1., 2.], [3., 4.]])}
    >>> population.combine(pop, jnp.array([0.25, 0.75]))
    {'w': Array([2.5, 3.5], dtype=float32)}
  """
  axes = axes_lib.resolve(axes)
  k_local = layouts.local_size(population, axes)
  k = layouts.size(population, axes)
  if jnp.shape(weights) != (k,):
    raise ValueError(
      f'combine: `weights` must have shape ({k},) for a population of K={k}'
      f' members, got shape {jnp.shape(weights)}.'
    )
  local_w = axes_lib.local_slice(weights, axes, k_local)
  if lean.is_lean(population):
    local = lean.combine(
      population, local_w, skip_zero_weights=skip_zero_weights
    )
    return jax.tree.map(
      lambda x: axes_lib.psum(
        x.astype(axes_lib.accumulation_dtype_of(x)), axes
      ).astype(x.dtype),
      local,
    )

  def one(x):
    acc = numerics.accumulation_dtype(x.dtype)
    w = local_w.astype(acc)
    if axes.axis is None:
      out = w[0] * x.astype(acc)
      if skip_zero_weights:
        out = jnp.where(w[0] != 0, out, 0.0)
    elif (
      skip_zero_weights
      and x.shape[axes.axis] <= kernels.NETWORK_MAX
      and kernels.cpu_tuned()
    ):
      # Member by member: a population-wide where before the contraction was
      # materialised in fresh memory by XLA:CPU (docs/benchmarks.md, kernel
      # notes).
      rows = [
        jnp.where(wi != 0, wi * xi.astype(acc), 0.0)
        for wi, xi in zip(w, axes_lib.leading(x, axes.axis), strict=True)
      ]
      out = functools.reduce(operator.add, rows)
    else:
      if skip_zero_weights:
        shape = [1] * x.ndim
        shape[axes.axis] = -1
        x = jnp.where((w != 0).reshape(shape), x, jnp.zeros([], x.dtype))
      out = jnp.tensordot(
        w,
        x.astype(acc),
        axes=(0, axes.axis),
        precision=lax.Precision.HIGHEST,
      )
    return axes_lib.psum(out, axes).astype(x.dtype)

  return jax.tree.map(one, population)


def squared_distances(
  population: axes_lib.Population, axes: axes_lib.PopulationAxes | None = None
) -> jax.Array:
  r"""[K, K] float32 squared distances; non-finite entries and diagonal inf.

  From the Gramian of the members minus their coordinate median:
  :math:`\|g_i - g_j\|^2 = G_{ii} + G_{jj} - 2G_{ij}` loses everything
  below ``eps * |g|^2`` to cancellation, so a common offset much larger
  than the spread (models rather than gradients, or gradients with a large
  common mean) would decide which members look close. Centred on a robust
  point, the honest members' distances keep float32 accuracy relative to
  their spread whatever the offset (far members only lose precision in
  distances that are large anyway).
  """
  g = gramian(population, axes, center_on_median='auto')
  diag = jnp.diagonal(g)
  d = jnp.maximum(diag[:, None] + diag[None, :] - 2.0 * g, 0.0)
  d = jnp.where(jnp.isfinite(d), d, jnp.inf)
  return d.at[jnp.diag_indices(d.shape[0])].set(jnp.inf)


def mean_of_selected(
  population: axes_lib.Population,
  chosen: jax.Array,
  axes: axes_lib.PopulationAxes | None = None,
) -> axes_lib.Population:
  """Mean of the members where ``chosen`` (bool [K]) is true."""
  w = chosen.astype(jnp.float32)
  w = w / jnp.maximum(jnp.sum(w), 1.0)
  return combine(population, w, axes, skip_zero_weights=True)
