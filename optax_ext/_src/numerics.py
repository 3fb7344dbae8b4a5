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
