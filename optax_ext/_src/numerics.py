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
"""Numerical helpers shared by every family: accumulation dtypes, casts."""

from collections.abc import Callable
import functools

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from optax_ext._src import kernels


def accumulation_dtype(dtype) -> jnp.dtype:
  """Returns the dtype reductions over ``dtype`` values accumulate in.

  Floating dtypes narrower than 32 bits (bfloat16, float16, float8) accumulate
  in float32; float32 and float64 accumulate in themselves. Integer and boolean
  inputs accumulate in float32.

  Args:
    dtype: the dtype of the values being reduced.

  Returns:
    The accumulation dtype.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext._src import numerics
    >>> numerics.accumulation_dtype(jnp.bfloat16)
    dtype('float32')
  """
  dtype = jnp.dtype(dtype)
  if jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize >= 4:
    return dtype
  if jnp.issubdtype(dtype, jnp.complexfloating):
    return dtype
  return jnp.dtype(jnp.float32)


def to_accumulation(x: jax.Array) -> jax.Array:
  """Casts ``x`` to its accumulation dtype (a no-op for float32)."""
  return x.astype(accumulation_dtype(x.dtype))


def tree_common_accumulation_dtype(tree) -> jnp.dtype:
  """The widest accumulation dtype over the leaves of ``tree`` (arrays, or
  dtypes as :func:`~optax_ext.population.member_dtypes` gives)."""
  dtypes = [
    accumulation_dtype(getattr(x, 'dtype', x)) for x in jax.tree.leaves(tree)
  ]
  if not dtypes:
    return jnp.dtype(jnp.float32)
  return max(dtypes, key=lambda d: d.itemsize)


_GROUP = kernels.STRAIGHT_LINE_MEMBERS  # members summed in one fusion
_MAX_STATIC_GROUPS = 4  # beyond 4 * 64 members, loop over groups


def sum_over_members(x: jax.Array, fns, dtype=None) -> tuple[jax.Array, ...]:
  """``tuple(sum_k f(x[k]) for f in fns)`` over axis 0 of ``x``.

  Equivalent to ``jnp.sum(f(x), axis=0)`` for each ``f``, but written as
  element-wise additions of member slices, which XLA compiles to loops that
  stream the members. On XLA:CPU a reduction over the leading (major) axis
  is much slower than this, and a ``fori_loop`` over small chunks writes its
  accumulators once per chunk (costly where writes are slow); see
  docs/benchmarks.md, kernel notes. Up to 64 members are summed in
  straight-line code; up to 256 in static groups of 64 whose partial sums
  are then added; beyond that a ``lax.fori_loop`` runs over groups of 64,
  which keeps compile time flat.

  Off XLA:CPU (``kernels.cpu_tuned()`` false) it is ``jnp.sum(f(x),
  axis=0)`` for each ``f``.

  Memory traffic: XLA:CPU emits one loop per output (it does not fuse sibling
  outputs here), so each function costs one read of the members, plus one
  accumulator write per group of 64.

  Args:
    x: ``[K, ...]`` array, ``K >= 1``.
    fns: callables applied to each member (already cast to ``dtype``).
    dtype: accumulation dtype; default ``accumulation_dtype(x.dtype)``.

  Returns:
    A tuple with one ``x.shape[1:]`` array per function, in ``dtype``.
  """
  dtype = accumulation_dtype(x.dtype) if dtype is None else jnp.dtype(dtype)
  if not kernels.cpu_tuned():
    return tuple(jnp.sum(f(x.astype(dtype)), axis=0) for f in fns)

  def add(acc, vals):
    if acc is None:
      return vals
    return tuple(a + v for a, v in zip(acc, vals, strict=True))

  def straight_line(members, start, stop):
    acc = None
    for i in range(start, stop):
      m = members[i].astype(dtype)
      acc = add(acc, tuple(f(m) for f in fns))
    return acc

  k = x.shape[0]
  n_groups, rest = divmod(k, _GROUP)
  if n_groups <= _MAX_STATIC_GROUPS:
    acc = None
    for start in range(0, k, _GROUP):
      acc = add(acc, straight_line(x, start, min(start + _GROUP, k)))
    return acc

  def body(g, acc):
    block = jax.lax.dynamic_slice_in_dim(x, g * _GROUP, _GROUP)
    return add(acc, straight_line(block, 0, _GROUP))

  zeros = tuple(jnp.zeros(x.shape[1:], dtype) for _ in fns)
  acc = jax.lax.fori_loop(0, n_groups, body, zeros)
  if rest:
    acc = add(acc, straight_line(x, n_groups * _GROUP, k))
  return acc


def _key_type(dtype) -> jnp.dtype:
  return jnp.dtype(f'int{8 * jnp.dtype(dtype).itemsize}')


def _flip_negatives(bits: jax.Array) -> jax.Array:
  # For a negative sign bit, flip the magnitude bits (an involution).
  sign = bits >> (8 * bits.dtype.itemsize - 1)  # arithmetic: 0 or -1
  return bits ^ (sign & jnp.iinfo(bits.dtype).max)


def max_order_key(dtype) -> int:
  """The key of ``+Inf`` (and NaN) for floats of dtype ``dtype``."""
  inf = np.array(np.inf, jnp.dtype(dtype))
  return int(inf.view(_key_type(dtype)))


def order_key(x: jax.Array, nan_above_inf: bool = False) -> jax.Array:
  """An order-preserving integer key of a float array; NaN maps to +Inf.

  ``order_key(a) < order_key(b)`` exactly when ``a < b`` (``-0.0`` below
  ``0.0``), with every NaN equal to ``+Inf`` (or, with ``nan_above_inf``,
  to ``max_order_key(dtype) + 1``, above ``+Inf``, so that NaN can be told
  apart without counting it). Signed integer ``min``/``max`` are single
  instructions where float ones need NaN tests, so sorting and selection
  networks run on keys, which XLA:CPU compares faster than floats
  (docs/benchmarks.md, kernel notes). Same width as ``x`` (``int16``
  keys for bf16/f16).
  """
  itype = _key_type(x.dtype)
  key = _flip_negatives(jax.lax.bitcast_convert_type(x, itype))
  top = max_order_key(x.dtype)
  if nan_above_inf:
    return jnp.where(x == x, key, jnp.asarray(top + 1, itype))
  return jnp.where(x < jnp.inf, key, jnp.asarray(top, itype))


def from_order_key(key: jax.Array, dtype) -> jax.Array:
  """The float of dtype ``dtype`` whose :func:`order_key` is ``key``."""
  return jax.lax.bitcast_convert_type(_flip_negatives(key), jnp.dtype(dtype))


def row_norms(flats: Callable[[], list[jax.Array]]) -> jax.Array:
  r"""Overflow-safe L2 norms of the rows of ``[k, d_i]`` blocks, ``[k]``.

  ``flats`` builds the blocks (in the accumulation dtype); it is called
  again inside the rescaled branch rather than passing its result in, so a
  centred copy is fused into each reduction instead of materialised. When a
  squared norm is not finite the norms are recomputed from the row's
  :math:`\max_i |x_i|`: every finite row has a finite norm, and only a
  NaN/Inf row gives NaN/Inf.
  """
  sq = sum(jnp.sum(jnp.square(x), axis=1) for x in flats())

  def scaled():
    flat = flats()
    # max|x| first, then the sum of squares of x / max|x|: finite for every
    # finite member (the plain sum of squares overflows above ~1.8e19 in
    # float32, which would count a finite member as non-finite).
    peak = functools.reduce(
      jnp.maximum, [jnp.max(jnp.abs(x), axis=1) for x in flat]
    )
    safe = jnp.where((peak > 0) & jnp.isfinite(peak), peak, 1.0)
    # x / peak as two multiplications by 1 / sqrt(peak): XLA turns the
    # division into a multiplication by 1 / peak, which is subnormal (and
    # flushed to 0) for peaks above ~8.5e37.
    inv_root = (1.0 / jnp.sqrt(safe))[:, None]
    ssq = sum(
      jnp.sum(jnp.square((x * inv_root) * inv_root), axis=1) for x in flat
    )
    finite_peak = (peak > 0) & jnp.isfinite(peak)
    # 0 for a zero member; the peak itself (Inf or NaN) for a non-finite one.
    rescaled = jnp.where(finite_peak, safe * jnp.sqrt(ssq), peak)
    return jnp.where(jnp.isfinite(sq), jnp.sqrt(sq), rescaled)

  # The rescaled pass runs only when some squared norm is not finite.
  return lax.cond(jnp.all(jnp.isfinite(sq)), lambda: jnp.sqrt(sq), scaled)
