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
"""Adaptive projected guidance (APG) for diffusion samplers."""

import jax
import jax.numpy as jnp

from optax_ext._src import metadata
from optax_ext._src import validation

_F32 = jnp.float32


@metadata.describe(
  citations=('sadat2025eliminating',),
  row=metadata.Row(
    'losses',
    'adaptive projected guidance (APG) for samplers',
    papers='[Sadat et al. 2025](https://arxiv.org/abs/2410.02416)',
  ),
)
def apg_guided_prediction(
  pred_cond: jax.Array,
  pred_uncond: jax.Array,
  guidance: jax.Array | float,
  *,
  eta: float = 0.0,
  momentum: float = -0.5,
  norm_threshold: float = 0.0,
  running: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  r"""Adaptive projected guidance: CFG without oversaturation at large scales.

  With :math:`\Delta = D_c - D_u` (conditional minus unconditional
  prediction) at each sampling step, per sample (over all non-batch axes):

  .. math::
    \bar\Delta_t = \Delta_t + \beta\,\bar\Delta_{t-1}, \qquad
    \bar\Delta_t \leftarrow \bar\Delta_t \min\!\Big(1,
      \frac{r}{\|\bar\Delta_t\|}\Big), \\
    \bar\Delta_\parallel = \frac{\langle\bar\Delta_t, D_c\rangle}
      {\|D_c\|^2} D_c, \quad \bar\Delta_\perp = \bar\Delta_t -
      \bar\Delta_\parallel, \qquad
    \tilde D = D_c + w\,(\bar\Delta_\perp + \eta\,\bar\Delta_\parallel).

  The parallel component is what oversaturates at high guidance; APG
  down-weights it (:math:`\eta`), bounds the update (:math:`r`) and uses
  *reverse* momentum (:math:`\beta < 0`) across steps. With :math:`\eta =
  1`, :math:`\beta = 0`, :math:`r = 0` it is exactly
  :func:`cfg_guided_prediction`; :math:`w` follows that function's
  convention (diffusers' scale is :math:`s = 1 + w`).

  .. note::
    Defaults: the paper's recommended :math:`\eta = 0` and :math:`\beta =
    -0.5`; the threshold :math:`r` depends on the model's output scale, so it
    is off (0) unless given (the paper tunes it per model). The reference
    function's own defaults (:math:`\eta = 1`, no momentum, no threshold)
    reduce to CFG. The projection is on :math:`D_c` per sample over all
    non-batch axes (the reference's ``dims=[-1, -2, -3]`` for ``[B, C, H,
    W]``), computed in float32.

  Args:
    pred_cond: conditional predictions :math:`D_c`, ``[B, ...]`` (any
      parameterisation the sampler guides: :math:`x_0`, as in the paper, or
      :math:`\epsilon`, :math:`v`).
    pred_uncond: unconditional predictions, same shape.
    guidance: :math:`w`, a scalar or ``[B]``.
    eta: :math:`\eta \ge 0`, weight of the parallel component.
    momentum: :math:`\beta \in (-1, 1)`, across sampling steps (0: off).
    norm_threshold: :math:`r \ge 0` (0: no rescaling).
    running: :math:`\bar\Delta_{t-1}` from the previous sampling step, or
      ``None`` at the first.

  Returns:
    ``(guided, running)``: the guided prediction (``pred_cond``'s dtype) and
    :math:`\bar\Delta_t` (float32) to pass to the next step.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import losses
    >>> cond, uncond = jnp.array([[2.0, 0.0]]), jnp.array([[0.0, 1.0]])
    >>> guided, running = losses.apg_guided_prediction(
    ...     cond, uncond, 3.0, momentum=0.0)
    >>> guided  # only the part of (2, -1) orthogonal to cond: (0, -1)
    Array([[ 2., -3.]], dtype=float32)

  References:
    Sadat, Hilliges and Weber, `Eliminating Oversaturation and Artifacts of
    High Guidance Scales in Diffusion Models
    <https://arxiv.org/abs/2410.02416>`_, ICLR 2025.
  """
  where = 'apg_guided_prediction'
  validation.check_number(where, 'eta', eta, lower=0.0, allow_schedule=False)
  validation.check_number(
    where,
    'momentum',
    momentum,
    lower=-1.0,
    upper=1.0,
    lower_inclusive=False,
    upper_inclusive=False,
    allow_schedule=False,
  )
  validation.check_number(
    where, 'norm_threshold', norm_threshold, lower=0.0, allow_schedule=False
  )
  if jnp.shape(pred_cond) != jnp.shape(pred_uncond) or not jnp.ndim(pred_cond):
    raise ValueError(
      f'{where}: `pred_cond` and `pred_uncond` must share a shape [B, ...], '
      f'got {jnp.shape(pred_cond)} and {jnp.shape(pred_uncond)}.'
    )
  cond = pred_cond.astype(_F32)
  diff = cond - pred_uncond.astype(_F32)
  if running is not None:
    if jnp.shape(running) != jnp.shape(diff):
      raise ValueError(
        f"{where}: `running` must have the predictions' shape "
        f'{jnp.shape(diff)}, got {jnp.shape(running)}.'
      )
    diff = diff + momentum * running.astype(_F32)
  new_running = diff
  axes = tuple(range(1, diff.ndim))

  def per_sample_norm(x):
    return jnp.sqrt(jnp.sum(jnp.square(x), axis=axes, keepdims=True))

  r = jnp.asarray(norm_threshold, _F32)  # may be traced
  n = per_sample_norm(diff)
  scale = jnp.minimum(1.0, r / jnp.maximum(n, 1e-30))
  diff = diff * jnp.where(r > 0, scale, 1.0)
  unit = cond / jnp.maximum(per_sample_norm(cond), 1e-30)
  parallel = jnp.sum(diff * unit, axis=axes, keepdims=True) * unit
  update = (diff - parallel) + eta * parallel
  w = jnp.asarray(guidance, _F32)
  w = w.reshape(w.shape + (1,) * (cond.ndim - w.ndim))
  return (cond + w * update).astype(pred_cond.dtype), new_running
