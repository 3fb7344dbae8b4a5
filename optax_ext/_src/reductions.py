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
"""Reductions over members: sums, means, variances, norms, clipping.

Each has the stacked, named and lean (streamed) paths; results accumulate
in float32 (float64 for float64 inputs).
"""

import jax
from jax import lax
import jax.numpy as jnp
import optax

from optax_ext._src import axes as axes_lib
from optax_ext._src import gram as gram_lib
from optax_ext._src import kernels
from optax_ext._src import layouts
from optax_ext._src import lean
from optax_ext._src import numerics


def _total(
  population, axes: axes_lib.PopulationAxes, divisor: int | None = None
):
  """Sum of the members (divided by ``divisor``), in each leaf's dtype."""
  layouts.local_size(population, axes)
  if lean.is_lean(population):  # uniform weights, one streamed pass
    k = layouts.size(population, axes)
    w = jnp.full((k,), 1.0 if divisor is None else 1.0 / divisor)
    return gram_lib.combine(population, w, axes)

  def one(x):
    total = axes_lib.psum(axes_lib.local_sum(x, axes), axes)
    return (total if divisor is None else total / divisor).astype(x.dtype)

  return jax.tree.map(one, population)


def sum(  # pylint: disable=redefined-builtin
  population: axes_lib.Population, axes: axes_lib.PopulationAxes | None = None
) -> optax.Params:
  r"""Sum of the members, :math:`\sum_k g_k`, in each leaf's dtype.

  Accumulates in float32 (float64 for float64 leaves), then casts back.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    axes: where the members live.

  Returns:
    A param-shaped tree, identical on every index of the named axis.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> population.sum({'w': jnp.array([[1., 2.], [3., 4.]])})
    {'w': Array([4., 6.], dtype=float32)}
  """
  return _total(population, axes_lib.resolve(axes))


def mean(
  population: axes_lib.Population, axes: axes_lib.PopulationAxes | None = None
) -> optax.Params:
  r"""Mean of the members, :math:`\frac1K\sum_k g_k`, in each leaf's dtype.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    axes: where the members live.

  Returns:
    A param-shaped tree, identical on every index of the named axis.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> population.mean({'w': jnp.array([[1., 2.], [3., 4.]])})
    {'w': Array([2., 3.], dtype=float32)}
  """
  axes = axes_lib.resolve(axes)
  return _total(population, axes, divisor=layouts.size(population, axes))


def mean_and_var(
  population: axes_lib.Population,
  axes: axes_lib.PopulationAxes | None = None,
  *,
  ddof: int = 0,
) -> tuple[optax.Params, optax.Params]:
  r"""Per-coordinate mean and variance over the members.

  .. math::
    \mu = \frac1K \sum_k g_k, \qquad
    \sigma^2 = \frac{1}{K - \mathrm{ddof}} \sum_k (g_k - \mu)^2 .

  Both are returned in the accumulation dtype (float32 for float32, bfloat16
  and float16 leaves) because they are statistics, not updates.

  The local members are reduced in one pass with the *shifted* sums
  :math:`S_1 = \sum_k (g_k - c)`, :math:`S_2 = \sum_k (g_k - c)^2` with the
  shift :math:`c = g_1` (the first local member), so that
  :math:`M_2 = S_2 - S_1^2 / k` does not lose precision when
  :math:`|\mu| \gg \sigma` (unlike :math:`E[g^2] - E[g]^2`), while XLA reads
  the population once (both sums fuse into one loop). On the named path
  every index's local mean and :math:`M_2` are merged across the axis with
  the parallel formula of Chan, Golub and LeVeque (all indices hold the same
  number of members): :math:`M_2 = \sum_p M_{2,p} + \sum_p k (\mu_p -
  \mu)^2` (two all-reduces).

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    axes: where the members live.
    ddof: delta degrees of freedom; ``1`` gives the unbiased estimator.

  Returns:
    ``(mean, var)``, two param-shaped trees.

  Raises:
    ValueError: at trace time, if ``K - ddof <= 0``.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> m, v = population.mean_and_var({'w': jnp.array([[1.], [3.]])}, ddof=1)
    >>> m['w'], v['w']
    (Array([2.], dtype=float32), Array([2.], dtype=float32))
  """
  axes = axes_lib.resolve(axes)
  if isinstance(ddof, bool) or not isinstance(ddof, int) or ddof < 0:
    raise ValueError(
      f'mean_and_var: `ddof` must be an integer >= 0, got {ddof!r}.'
    )
  k_local = layouts.local_size(population, axes)
  k = layouts.size(population, axes)
  if k - ddof <= 0:
    raise ValueError(
      f'mean_and_var: the population has K={k} member(s), which is too few '
      f'for ddof={ddof}; need K > ddof.'
    )

  if lean.is_lean(population):
    _, lean_mean, lean_m2 = lean.mean_and_var_local(population)

  def one(x, *streamed):
    acc = numerics.accumulation_dtype(x.dtype)
    if streamed:
      local_mean, local_m2 = streamed
    elif axes.axis is None:
      local_mean = x.astype(acc)
      local_m2 = jnp.zeros_like(local_mean)
    else:
      xs = axes_lib.leading(x, axes.axis)
      shift = xs[0].astype(acc)
      s1, s2 = numerics.sum_over_members(
        xs, (lambda m: m - shift, lambda m: jnp.square(m - shift))
      )
      local_mean = shift + s1 / k_local
      local_m2 = jnp.maximum(s2 - s1 * s1 / k_local, 0.0)
    if not axes.is_named:
      return local_mean, local_m2 / (k - ddof)
    n_index = k // k_local
    global_mean = lax.psum(local_mean, axes.axis_name) / n_index
    offset = local_mean - global_mean
    m2 = lax.psum(local_m2 + k_local * offset * offset, axes.axis_name)
    return global_mean, m2 / (k - ddof)

  if lean.is_lean(population):
    pairs = jax.tree.map(one, population.params, lean_mean, lean_m2)
    outer = jax.tree.structure(population.params)
  else:
    pairs = jax.tree.map(one, population)
    outer = jax.tree.structure(population)
  inner = jax.tree.structure((0, 0))
  return jax.tree.transpose(outer, inner, pairs)


def norms(
  population: axes_lib.Population,
  axes: axes_lib.PopulationAxes | None = None,
  *,
  center: optax.Params | None = None,
) -> jax.Array:
  r"""The global L2 norm of each member, :math:`\|g_k - c\|_2` over all leaves.

  With ``center`` (a param-shaped tree, the same on every index) the norms
  of the deviations :math:`g_k - c`, without materialising them.

  Overflow-safe: when a squared norm is not finite (a member above ~1.8e19
  in float32, or a NaN/Inf member), the norms are recomputed from
  :math:`\max_i |x_i|` and the sum of squares of :math:`x / \max_i |x_i|`,
  so every finite member has a finite norm and only NaN/Inf members give
  NaN/Inf.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    axes: where the members live.

  Returns:
    A float32 array with the norms of the *local* members: shape ``[k]`` when
    ``axes.axis`` is not ``None``, a scalar otherwise (each index's own
    member). Pass it to :func:`gather` with the same ``axes`` to get all ``K``.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> population.norms({'a': jnp.array([[3.], [0.]]),
    ...                   'b': jnp.array([[4.], [1.]])})
    Array([5., 1.], dtype=float32)
  """
  axes = axes_lib.resolve(axes)
  layouts.local_size(population, axes)
  if lean.is_lean(population):
    return lean.norms(population, center)
  leaves = jax.tree.leaves(population)
  acc = numerics.tree_common_accumulation_dtype(population)
  centers = [None] * len(leaves) if center is None else jax.tree.leaves(center)

  def flats():
    # Recomputed inside each branch below: a centred copy passed into the
    # conditional would be materialised (K D floats) instead of fused.
    out = []
    for x, c in zip(leaves, centers, strict=True):
      f = axes_lib.local_flat(x, axes).astype(acc)
      if c is not None:
        f = f - jnp.reshape(jnp.asarray(c).astype(acc), (1, -1))
      out.append(f)
    return out

  out = numerics.row_norms(flats)
  return out[0] if axes.axis is None else out


def all_norms(
  population: axes_lib.Population,
  axes: axes_lib.PopulationAxes | None = None,
  *,
  center: optax.Params | None = None,
) -> jax.Array:
  """:func:`norms` of all ``K`` members, ``[K]`` on every index.

  On a named axis the local norms are gathered (``K`` floats per index).
  """
  axes = axes_lib.resolve(axes)
  return layouts.all_members(norms(population, axes, center=center), axes)


def clip_factors(norms_: jax.Array, max_norm) -> tuple[jax.Array, jax.Array]:
  r"""Clipping factors :math:`c_k = \min(1, \tau / \|g_k\|)` and roots.

  Returns ``(c, r)``: ``c`` is 0 for non-finite norms, and ``r`` is
  :math:`\sqrt{c_k}` computed as :math:`\min(1, \sqrt\tau /
  \sqrt{\|g_k\|})`, a normal float for every finite norm (``c`` itself is
  subnormal, and flushed to 0 by XLA:CPU, above :math:`\tau \cdot 8.5
  \times 10^{37}`). Pass both to :func:`scale_members`.
  """
  # In the norms' dtype (float64 for a float64 population), at least float32.
  n = jnp.asarray(norms_)
  n = n.astype(numerics.accumulation_dtype(n.dtype))
  tau = jnp.asarray(max_norm, n.dtype)
  finite = jnp.isfinite(n)
  factor = jnp.minimum(1.0, tau / jnp.maximum(n, 1e-30))
  root = jnp.minimum(1.0, jnp.sqrt(tau) / jnp.sqrt(jnp.maximum(n, 1e-30)))
  return jnp.where(finite, factor, 0.0), jnp.where(finite, root, 0.0)


def scale_members(
  population: axes_lib.Population,
  factors: jax.Array,
  roots: jax.Array,
  axes: axes_lib.PopulationAxes | None = None,
) -> axes_lib.Population:
  """Each member times its factor, :math:`c_k g_k`; 0 where :math:`c_k = 0`.

  For clipping (``(factors, roots)`` from :func:`clip_factors`): a member
  with root 0 (non-finite, excluded) becomes 0 even if it holds NaN or Inf.
  Where the factor is below ``1e-30`` the product is taken as :math:`(g_k
  r_k) r_k`, so a huge member (up to the float32 maximum) scaled by a
  factor below the smallest normal float keeps its value; elsewhere it is
  the exact :math:`c_k g_k`.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    factors: the local members' non-negative factors, shaped as
      :func:`norms` returns norms (``[k]``, or a scalar when ``axes.axis is
      None``).
    roots: their square roots, the same shape.
    axes: where the members live.

  Returns:
    A population with the same layout, in the population's dtypes
    (computed in float32).

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext._src import population as pop_lib
    >>> c, r = pop_lib.clip_factors(jnp.array([3e38, jnp.nan, 5.0]), 1.0)
    >>> out = pop_lib.scale_members(jnp.array([[3e38], [jnp.nan], [5.]]), c, r)
    >>> out.round(5)
    Array([[1.],
           [0.],
           [1.]], dtype=float32)
  """
  axes = axes_lib.resolve(axes)
  layouts.local_size(population, axes)
  if lean.is_lean(population):  # the members are scaled as they are made
    return population.with_scales(factors)
  factors, roots = jnp.asarray(factors), jnp.asarray(roots)

  def one(x):
    c, r = factors, roots
    if axes.axis is not None:
      shape = [1] * x.ndim
      shape[axes.axis] = -1
      c, r = c.reshape(shape), r.reshape(shape)
    return _clip_scaled(x, c, r)

  return jax.tree.map(one, population)


def _clip_scaled(x: jax.Array, c: jax.Array, r: jax.Array) -> jax.Array:
  """``c x`` (``(x r) r`` below 1e-30; 0 where ``r == 0``), in ``x.dtype``."""
  acc = numerics.tree_common_accumulation_dtype((x, c))
  y = jnp.where(r == 0, jnp.zeros([], x.dtype), x).astype(acc)
  c, r = c.astype(acc), r.astype(acc)
  return jnp.where(c >= 1e-30, y * c, (y * r) * r).astype(x.dtype)


def mean_of_scaled_deviations(
  population: axes_lib.Population,
  center: optax.Params,
  factors: jax.Array,
  roots: jax.Array,
  axes: axes_lib.PopulationAxes | None = None,
) -> optax.Params:
  r""":math:`\frac1K \sum_k c_k (g_k - z)`, clipped as :func:`scale_members`.

  The same value as ``mean(scale_members(deviations(population, center),
  factors, roots))``. On XLA:CPU with up to 64 members stacked locally it is
  written member by member (each scaled deviation added where it is made,
  in the members' order, as :func:`mean` adds them): XLA:CPU writes a
  whole-population product out before a reduction over more than 8 member
  slices, so the composition above holds one or two ``[K, D]`` temporaries
  (measured in docs/benchmarks.md, centered clipping). Elsewhere it is that
  composition.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named), in a
      float dtype.
    center: a param-shaped tree :math:`z`.
    factors: the local members' factors :math:`c_k`, from
      :func:`clip_factors` (``[k]``, or a scalar when ``axes.axis is
      None``).
    roots: their square roots, the same shape.
    axes: where the members live.

  Returns:
    A param-shaped tree in each leaf's dtype, identical on every index of
    the named axis.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext._src import population as pop_lib
    >>> pop = jnp.array([[3., 4.], [1., 0.]])
    >>> c, r = pop_lib.clip_factors(jnp.array([5.0, 1.0]), 1.0)
    >>> pop_lib.mean_of_scaled_deviations(pop, jnp.zeros(2), c, r)
    Array([0.8, 0.4], dtype=float32)
  """
  axes = axes_lib.resolve(axes)
  k_local = layouts.local_size(population, axes)
  stacked = axes.axis is not None and not lean.is_lean(population)
  if not (
    stacked and kernels.cpu_tuned() and k_local <= kernels.STRAIGHT_LINE_MEMBERS
  ):
    devs = deviations(population, center, axes)
    return mean(scale_members(devs, factors, roots, axes), axes)
  factors, roots = jnp.asarray(factors), jnp.asarray(roots)
  k = layouts.size(population, axes)

  def one(x, z):
    z = jnp.asarray(z).astype(x.dtype)
    members = axes_lib.leading(x, axes.axis)
    acc = numerics.accumulation_dtype(x.dtype)
    total = None
    for i in range(k_local):
      scaled = _clip_scaled(members[i] - z, factors[i], roots[i]).astype(acc)
      total = scaled if total is None else total + scaled
    return (axes_lib.psum(total, axes) / k).astype(x.dtype)

  return jax.tree.map(one, population, center)


def mean_of_clipped_deviations(
  population: axes_lib.Population,
  center: optax.Params,
  max_norm: jax.Array | float,
  axes: axes_lib.PopulationAxes | None = None,
) -> optax.Params:
  r""":math:`\frac1K \sum_k \mathrm{clip}_\tau(g_k - z)`, a streamed statistic.

  Each deviation from ``center`` is clipped to norm ``max_norm`` (``tau``):
  scaled by :math:`\min(1, \tau / \|g_k - z\|)`, a non-finite member
  weighing 0. Stacked and named populations take the norms then one
  scaled pass (:func:`mean_of_scaled_deviations`); a lean population adds
  each clipped deviation as its member is made (one backward pass, O(D)).

  Args:
    population: the gradient population, any layout.
    center: a param-shaped tree :math:`z` (its dtype is the result's).
    max_norm: :math:`\tau > 0`.
    axes: where the members live.

  Returns:
    A param-shaped tree in ``center``'s dtypes, identical on every index.
  """
  axes = axes_lib.resolve(axes)
  if isinstance(population, lean.Microbatches):
    return _streamed_clipped_deviations(population, center, max_norm, axes)
  if lean.is_lean(population):
    # (1/K) sum_k f_k (g_k - z) = combine(f / K) - (sum_k f_k / K) z, the
    # factors from the distances to z.
    k = layouts.size(population, axes)
    factors, _ = clip_factors(norms(population, axes, center=center), max_norm)
    factors = layouts.all_members(factors, axes)
    moved = gram_lib.combine(population, factors / k, axes)
    keep = jnp.sum(factors) / k
    return jax.tree.map(
      lambda m, c: m.astype(c.dtype) - keep.astype(c.dtype) * c, moved, center
    )
  factors, roots = clip_factors(
    norms(population, axes, center=center), max_norm
  )
  return mean_of_scaled_deviations(
    jax.tree.map(lambda x, c: x.astype(c.dtype), population, center),
    center,
    factors,
    roots,
    axes,
  )


def _streamed_clipped_deviations(population, center, max_norm, axes):
  """:func:`mean_of_clipped_deviations` one member at a time."""
  k = layouts.size(population, axes)
  acc = numerics.tree_common_accumulation_dtype(center)

  def body(total, g, _, scale):
    member = jax.tree.map(lambda x: scale * x.astype(acc), g)
    stacked = jax.tree.map(lambda x: x[None], member)
    _, root = clip_factors(norms(stacked, center=center)[0], max_norm)

    def add(t, x, c):
      clipped = ((x - c) * root) * root  # a subnormal factor, split
      return t + jnp.where(root > 0, clipped, 0.0) / k

    return jax.tree.map(add, total, member, center)

  zeros = jax.tree.map(lambda c: jnp.zeros_like(c, acc), center)
  total = lean.scan_members(population, body, zeros)
  total = axes_lib.across_indices(total, axes)
  return jax.tree.map(lambda t, c: t.astype(c.dtype), total, center)


def range_means(
  population: axes_lib.Population,
  bounds: tuple[tuple[int, int], ...],
  axes: axes_lib.PopulationAxes | None = None,
) -> tuple[optax.Params, ...]:
  """The means of contiguous ranges of members ``[lo, hi)``, in member order.

  A stacked population is sliced (read once per range); on other layouts
  each range is a :func:`~optax_ext.population.combine` with indicator
  weights.
  """
  axes = axes_lib.resolve(axes)
  if not lean.is_lean(population) and not axes.is_named:

    def part(lo, hi):
      sub = jax.tree.map(
        lambda x: lax.slice_in_dim(x, lo, hi, axis=axes.axis), population
      )
      return mean(sub, axes)

    return tuple(part(lo, hi) for lo, hi in bounds)
  k = layouts.size(population, axes)
  ids = jnp.arange(k)
  acc = numerics.tree_common_accumulation_dtype(
    layouts.member_dtypes(population)
  )
  return tuple(
    gram_lib.combine(
      population,
      jnp.where((ids >= lo) & (ids < hi), 1.0 / (hi - lo), 0.0).astype(acc),
      axes,
    )
    for lo, hi in bounds
  )


def dots(
  population: axes_lib.Population,
  vector: optax.Params,
  axes: axes_lib.PopulationAxes | None = None,
) -> jax.Array:
  r"""Inner products :math:`\langle g_k, v\rangle` of the local members.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named), or a
      lean ``Microbatches`` (one forward-mode pass).
    vector: a param-shaped tree, the same on every index.
    axes: where the members live.

  Returns:
    Float32 ``[k]`` (the local members; a scalar when ``axes.axis`` is
    ``None``), like :func:`norms`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> population.dots(jnp.array([[1., 2.], [3., 4.]]), jnp.array([1., 1.]))
    Array([3., 7.], dtype=float32)
  """
  axes = axes_lib.resolve(axes)
  layouts.local_size(population, axes)
  if lean.is_lean(population):
    return lean.inner_products(population, vector)
  total = 0.0
  for x, v in zip(
    jax.tree.leaves(population), jax.tree.leaves(vector), strict=True
  ):
    flat = axes_lib.local_flat(x, axes).astype(jnp.float32)
    vv = jnp.reshape(jnp.asarray(v), (-1,)).astype(jnp.float32)
    total = total + jnp.matmul(flat, vv, precision=lax.Precision.HIGHEST)
  return total[0] if axes.axis is None else total


def deviations(
  population: axes_lib.Population,
  center: optax.Params,
  axes: axes_lib.PopulationAxes | None = None,
) -> axes_lib.Population:
  """Each member minus a param-shaped ``center``: :math:`g_k - c`.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    center: a param-shaped tree (the same on every index of the named axis).
    axes: where the members live.

  Returns:
    A population with the same layout, in the population's dtypes.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> population.deviations(jnp.array([[1., 2.], [3., 4.]]), jnp.ones(2))
    Array([[0., 1.],
           [2., 3.]], dtype=float32)
  """
  axes = axes_lib.resolve(axes)
  layouts.local_size(population, axes)
  if lean.is_lean(population):
    raise lean.unsupported('deviations', 'the members minus a point')

  def one(x, c):
    c = jnp.asarray(c).astype(x.dtype)
    if axes.axis is not None:
      c = jnp.expand_dims(c, axes.axis)
    return x - c

  return jax.tree.map(one, population, center)
