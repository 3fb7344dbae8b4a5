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
"""Cautious masking around any optimiser (Liang et al. 2024)."""

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import validation

_F32 = jnp.float32


def cautious(
  inner: optax.GradientTransformation,
  *,
  updates_oppose_gradient: bool = True,
) -> optax.GradientTransformationExtraArgs:
  r"""Cautious masking: drop update coordinates that disagree with the gradient.

  With :math:`u` the inner optimiser's update and :math:`g` the gradient,
  per leaf (a tensor, as in the reference code):

  .. math::
    \phi = \mathbb{1}[u \odot g \text{ agrees}], \qquad
    u \leftarrow u \odot \phi \cdot \frac{\dim(\phi)}{\|\phi\|_0 + 1},

  so only coordinates where the momentum-based step still descends along
  the current gradient move, rescaled to keep the average step size.
  "Agrees" means :math:`u_i g_i < 0` for a full optax optimiser (its updates
  are added to the params: ``optax.adam(lr)`` returns :math:`-\eta\,\cdot`)
  and :math:`u_i g_i > 0` for a direction before the learning rate
  (``optax.scale_by_adam()``; pass ``updates_oppose_gradient=False``).

  The state is the inner optimiser's state, unchanged; memory: one
  param-sized mask per step (fused by XLA).

  .. note::
    The paper writes the rescaling as :math:`\dim(\phi) / (\|\phi\|_0 +
    1)` per parameter tensor (its code and pytorch_optimizer's
    ``apply_cautious`` agree); a leaf here is a tensor.

  Args:
    inner: any optax optimiser or transform; its extra arguments are passed
      through.
    updates_oppose_gradient: the sign convention of ``inner``'s output (see
      above).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with ``inner``'s state.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import momentum
    >>> tx = momentum.cautious(optax.sgd(1.0, momentum=0.9))
    >>> params = jnp.zeros(2)
    >>> state = tx.init(params)
    >>> _, state = tx.update(jnp.array([1.0, 1.0]), state, params)
    >>> # the momentum still points along +1 in both; the new gradient
    >>> # flips the second coordinate: that one is masked, the first kept
    >>> u, _ = tx.update(jnp.array([1.0, -0.5]), state, params)
    >>> u  # (-1.9, masked) x 2 / (1 + 1)
    Array([-1.9,  0. ], dtype=float32)

  References:
    Liang et al., `Cautious Optimizers: Improving Training with One Line of
    Code <https://arxiv.org/abs/2411.16085>`_, 2024.
  """
  where = 'cautious'
  if not isinstance(inner, optax.GradientTransformation):
    raise TypeError(
      f'{where}: `inner` must be an optax.GradientTransformation, got '
      f'{type(inner).__name__}.'
    )
  validation.check_bool(
    where, 'updates_oppose_gradient', updates_oppose_gradient
  )
  inner = optax.with_extra_args_support(inner)

  def mask(u, g):
    prod = u.astype(_F32) * g.astype(_F32)
    keep = (prod < 0 if updates_oppose_gradient else prod > 0).astype(_F32)
    scale = keep.size / (jnp.sum(keep) + 1.0)
    return (u.astype(_F32) * keep * scale).astype(u.dtype)

  def update_fn(updates, state, params=None, **extra_args):
    out, state = inner.update(updates, state, params, **extra_args)
    return jax.tree.map(mask, out, updates), state

  return optax.GradientTransformationExtraArgs(inner.init, update_fn)
