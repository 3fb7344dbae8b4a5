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
"""Helpers for the optimiser aliases and their states: hyper-parameters
evaluated per step, weight decay and the learning rate, dtypes kept, state
buffers and lookups."""

import jax
import jax.numpy as jnp
import optax


def scalar_at(value, count) -> jax.Array:
  """A hyper-parameter (number, array or schedule of ``count``) as float32."""
  if callable(value):
    value = value(count)
  return jnp.asarray(value, jnp.float32)


def with_decay_and_lr(
  direction: optax.GradientTransformation,
  learning_rate: optax.ScalarOrSchedule,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  mask=None,
  *,
  coupled: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """The alias shape: a direction, weight decay and the learning rate.

  ``coupled=False`` (decoupled, AdamW-style): ``θ ← θ - η(u + λθ)``;
  ``coupled=True`` (L2 added to the gradient before ``direction``):
  ``u = direction(g + λθ)``, ``θ ← θ - ηu``.
  """
  decay = optax.add_decayed_weights(weight_decay, mask)
  if coupled:
    return optax.chain(
      decay, direction, optax.scale_by_learning_rate(learning_rate)
    )
  return optax.chain(
    direction, decay, optax.scale_by_learning_rate(learning_rate)
  )


def keep_dtypes(
  inner: optax.GradientTransformation,
) -> optax.GradientTransformationExtraArgs:
  """Wraps ``inner`` so updates and state keep their dtypes.

  Updates take the incoming gradients' dtypes (optax transforms that keep
  float32 state would otherwise return float32 updates for bfloat16
  gradients); the new state takes the old state's dtypes (``optax.contrib.
  ademamix`` stores its moments in ``mu_dtype`` at ``init`` but returns them
  in the computation's dtype, which breaks ``lax.scan`` and ``lax.cond``).
  """
  inner = optax.with_extra_args_support(inner)

  def update_fn(updates, state, params=None, **extra_args):
    out, new_state = inner.update(updates, state, params, **extra_args)
    out = jax.tree.map(
      lambda u, g: u.astype(jnp.asarray(g).dtype), out, updates
    )
    new_state = jax.tree.map(
      lambda new, old: new.astype(jnp.asarray(old).dtype), new_state, state
    )
    return out, new_state

  return optax.GradientTransformationExtraArgs(inner.init, update_fn)


def state_zeros(tree, dtype=jnp.float32):
  """Zeros shaped like every leaf of ``tree``, for state buffers.

  Float32 by default; ``dtype`` is e.g. a ``mu_dtype`` already resolved by
  ``validation.state_dtype``.
  """
  # zeros_like keeps the sharding of a concrete (eagerly initialised) leaf.
  return jax.tree.map(lambda p: jnp.zeros_like(p, dtype), tree)


def find_state(where: str, state, cls):
  """The unique ``cls`` node inside ``state`` (an optax chain, ...).

  Raises:
    ValueError: if ``state`` holds no ``cls`` node or several, naming the
      function that asked.
  """
  found = [
    node
    for node in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, cls))
    if isinstance(node, cls)
  ]
  if len(found) != 1:
    raise ValueError(
      f'{where}: expected exactly one {cls.__name__} inside the optimiser '
      f'state, found {len(found)}.'
    )
  return found[0]
