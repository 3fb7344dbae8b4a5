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
"""Shape checks shared by the scalarizers."""

import jax
import jax.numpy as jnp


def task_losses(where: str, losses) -> jax.Array:
  """``losses`` as a float array of at least one task, else a clear error."""
  losses = jnp.asarray(losses)
  if losses.ndim != 1 or losses.shape[0] < 1:
    raise ValueError(
      f'{where}: `losses` must be a vector of K >= 1 task losses, got shape '
      f'{losses.shape}.'
    )
  if not jnp.issubdtype(losses.dtype, jnp.floating):
    losses = losses.astype(jnp.float32)
  return losses


def same_shape(where: str, name: str, value, losses: jax.Array) -> jax.Array:
  """``value`` as an array shaped like ``losses``, else a clear error."""
  value = jnp.asarray(value)
  if value.shape != losses.shape:
    raise ValueError(
      f'{where}: `{name}` must have the shape of `losses` {losses.shape}, '
      f'got {value.shape}.'
    )
  return value


def is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)
