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
"""Tree helpers: multi-output maps and placement like a reference."""

import jax


def map_multi(fn, n_out: int, tree, *rest):
  """``jax.tree.map`` for ``fn`` returning ``n_out`` values: ``n_out`` trees.

  Works for trees without leaves (e.g. everything masked by
  :func:`optax.partition`).
  """
  treedef = jax.tree.structure(tree)
  flat = treedef.flatten_up_to(jax.tree.map(fn, tree, *rest))
  columns = list(zip(*flat, strict=True)) if flat else [()] * n_out
  return tuple(jax.tree.unflatten(treedef, list(xs)) for xs in columns)


def place_like(x: jax.Array, ref) -> jax.Array:
  """``x`` with the sharding of ``ref`` when ``ref`` is a concrete array.

  For state built from something other than ``ref``'s values (random
  draws): eager ``init`` then keeps the params' sharding, like
  ``jnp.zeros_like``. Under tracing it returns ``x`` (XLA decides).
  """
  if isinstance(ref, jax.Array) and not isinstance(ref, jax.core.Tracer):
    return jax.device_put(x, ref.sharding)
  return x
