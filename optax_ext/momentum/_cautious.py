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

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import alias
from optax_ext._src import metadata
from optax_ext._src import numerics
from optax_ext._src import validation

_F32 = jnp.float32


class CautiousState(NamedTuple):
  """State of :func:`cautious`.

  Attributes:
    count: int32 steps taken (evaluates a ``learning_rate`` schedule).
    inner_state: the inner optimiser's state.
  """

  count: jax.Array
  inner_state: optax.OptState


@metadata.describe(
  citations=('liang2024cautious',),
  case=metadata.Case(
    kind='wrapper',
    kwargs=lambda: {'inner': optax.sgd(0.05, momentum=0.9)},
    lr=0.05,
    rosenbrock=(1e-3, 20000),
    optimizer=lambda lr: cautious(optax.sgd(lr, momentum=0.9)),
  ),
  row=metadata.Row(
    'momentum',
    'cautious masking around any optimiser',
    papers='[Liang et al. 2024](https://arxiv.org/abs/2411.16085)',
  ),
)
def cautious(
  inner: optax.GradientTransformation,
  *,
  updates_oppose_gradient: bool = True,
  weight_decay: float = 0.0,
  learning_rate: optax.ScalarOrSchedule | None = None,
  mask: Any = None,
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

  Decoupled weight decay is applied outside the mask, as in the paper's
  C-AdamW and pytorch_optimizer's ``cautious=True``: with ``weight_decay``
  :math:`\lambda` and ``learning_rate`` :math:`\eta_t` the update is the
  masked one plus :math:`-\eta_t\lambda\theta`, so
  :math:`\theta \leftarrow \theta(1 - \eta_t\lambda) + u \odot \phi
  \cdot\ldots`. Give the decay here and build ``inner`` without its own
  (``optax.adamw(lr, weight_decay=0.0)``, ``optax.lion(lr,
  weight_decay=0.0)``): a decay inside ``inner`` is part of :math:`u`, so it
  would be masked and rescaled with the step, which the paper does not do.

  The state holds a step count and the inner optimiser's state; memory: one
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
    weight_decay: decoupled decay :math:`\lambda \ge 0`, applied unmasked
      (needs ``learning_rate`` when not 0).
    learning_rate: :math:`\eta_t`, a number ``>= 0`` or a schedule of the
      step count (the one ``inner`` uses); only the decay reads it.
    mask: which params decay, as in :func:`optax.add_decayed_weights`: a tree
      of bools like the params or a callable ``params -> tree``
      (``None``: all).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`CautiousState`.

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

    C-Lion with decoupled weight decay outside the mask:

    >>> tx = momentum.cautious(optax.lion(0.1, weight_decay=0.0),
    ...                        weight_decay=0.5, learning_rate=0.1)
    >>> params = jnp.ones(2)
    >>> u, _ = tx.update(jnp.array([1.0, -1.0]), tx.init(params), params)
    >>> params + u  # 1 - 0.1 * 0.5 -+ 0.1 * 2 / 3
    Array([0.8833333, 1.0166667], dtype=float32)

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
  validation.check_non_negative(
    where, 'weight_decay', weight_decay, allow_schedule=False
  )
  if learning_rate is not None:
    validation.check_non_negative(where, 'learning_rate', learning_rate)
  # With inject_hyperparams the decay arrives as an array (concrete at init,
  # where a non-zero one without a rate is caught, traced in the step).
  decays = learning_rate is not None
  concrete = not isinstance(weight_decay, jax.core.Tracer)
  if not decays and concrete and float(weight_decay) != 0.0:
    raise ValueError(
      f'{where}: `learning_rate` is required with a non-zero '
      '`weight_decay` (the decay is -learning_rate * weight_decay * params, '
      'applied outside the mask); pass the one `inner` uses.'
    )
  inner = optax.with_extra_args_support(inner)

  def keep_agreeing(u, g):
    acc = numerics.accumulation_dtype(u.dtype)  # float64 stays float64
    prod = u.astype(acc) * g.astype(acc)
    keep = (prod < 0 if updates_oppose_gradient else prod > 0).astype(acc)
    scale = keep.size / (jnp.sum(keep) + 1.0)
    return (u.astype(acc) * keep * scale).astype(u.dtype)

  def init_fn(params):
    return CautiousState(jnp.zeros([], jnp.int32), inner.init(params))

  def update_fn(updates, state, params=None, **extra_args):
    out, inner_state = inner.update(
      updates, state.inner_state, params, **extra_args
    )
    out = jax.tree.map(keep_agreeing, out, updates)
    if decays:
      if params is None:
        raise ValueError(
          f'{where}: `params` are required with a non-zero `weight_decay`.'
        )
      step = alias.scalar_at(learning_rate, state.count) * jnp.asarray(
        weight_decay, _F32
      )
      chosen = mask(params) if callable(mask) else mask
      if chosen is None:
        chosen = jax.tree.map(lambda _: True, params)

      def decay(u, p, on):
        acc = numerics.accumulation_dtype(u.dtype)
        d = step.astype(acc) * p.astype(acc)
        return (u.astype(acc) - jnp.where(on, d, 0.0)).astype(u.dtype)

      out = jax.tree.map(decay, out, params, chosen)
    count = optax.safe_increment(state.count)
    return out, CautiousState(count, inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
