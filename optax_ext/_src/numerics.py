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

import jax
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
  """The widest accumulation dtype over the leaves of ``tree``."""
  dtypes = [accumulation_dtype(x.dtype) for x in jax.tree.leaves(tree)]
  if not dtypes:
    return jnp.dtype(jnp.float32)
  return max(dtypes, key=lambda d: d.itemsize)


_GROUP = 64  # members summed in one straight-line fusion
# Up to this many local members, XLA:CPU code may be written member by member.
STRAIGHT_LINE_MEMBERS = _GROUP
_MAX_STATIC_GROUPS = 4  # beyond 4 * 64 members, loop over groups


def sum_over_members(x: jax.Array, fns, dtype=None) -> tuple[jax.Array, ...]:
  """``tuple(sum_k f(x[k]) for f in fns)`` over axis 0 of ``x``.

  Equivalent to ``jnp.sum(f(x), axis=0)`` for each ``f``, but written as
  element-wise additions of member slices, which XLA compiles to loops that
  stream the members. On XLA:CPU a reduction over the leading (major) axis is
  20-40x slower than this, and a ``fori_loop`` over small chunks writes its
  accumulators once per chunk (costly where writes are slow); see
  ``benchmarks/``. Up to 64 members are summed in straight-line code; up to
  256 in static groups of 64 whose partial sums are then added; beyond that a
  ``lax.fori_loop`` runs over groups of 64, which keeps compile time flat.

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
  networks run on keys: the coordinate median over 16-32 members was 1.3x
  faster on XLA:CPU (AVX-512) than on floats. Same width as ``x`` (``int16``
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
