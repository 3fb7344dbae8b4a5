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
"""Classifier-free-guidance training losses: standard and CFG-aligned."""

import jax
import jax.numpy as jnp

from optax_ext._src import metadata
from optax_ext._src import validation

_F32 = jnp.float32


def _check_shapes(where, pred_cond, pred_uncond, target, drop_mask):
  shapes = {
    'pred_cond': jnp.shape(pred_cond),
    'pred_uncond': jnp.shape(pred_uncond),
    'target': jnp.shape(target),
  }
  if len(set(shapes.values())) != 1 or not shapes['target']:
    listed = ', '.join(f'`{k}` {v}' for k, v in shapes.items())
    raise ValueError(
      f'{where}: predictions and target must share one shape [B, ...], got '
      f'{listed}.'
    )
  batch = shapes['target'][0]
  if jnp.shape(drop_mask) != (batch,):
    raise ValueError(
      f'{where}: `drop_mask` must have shape ({batch},), one flag per '
      f'example, got {jnp.shape(drop_mask)}.'
    )
  return batch


def _per_example(x, batch, name, where):
  """A scalar or ``[B]`` array as float32 ``[B]``."""
  x = jnp.asarray(x, _F32)
  if x.shape not in ((), (batch,)):
    raise ValueError(
      f'{where}: `{name}` must be a scalar or have shape ({batch},), got '
      f'{x.shape}.'
    )
  return jnp.broadcast_to(x, (batch,))


def _squared_error(target, pred):
  d = target.astype(_F32) - pred.astype(_F32)
  return jnp.sum(jnp.square(d).reshape(d.shape[0], -1), axis=1)


@metadata.describe(citations=('ho2022classifier',))
def cfg_guided_prediction(
  pred_cond: jax.Array, pred_uncond: jax.Array, guidance: jax.typing.ArrayLike
) -> jax.Array:
  r"""The classifier-free-guidance combination used by samplers.

  .. math::
    \tilde\epsilon_w = (1 + w)\,\epsilon_\theta(x_t, c) - w\,
    \epsilon_\theta(x_t, \varnothing)

  (:math:`w = 0`: the conditional prediction; diffusers' scale is
  :math:`s = 1 + w`). Guidance is affine in the output, so this works for
  :math:`\epsilon`-, :math:`v`- and :math:`x_0`-prediction alike.

  Args:
    pred_cond: conditional predictions ``[B, ...]``.
    pred_uncond: unconditional (null-token) predictions, same shape.
    guidance: :math:`w`, a scalar or ``[B]`` array.

  Returns:
    An array shaped like ``pred_cond`` in its dtype.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import losses
    >>> losses.cfg_guided_prediction(jnp.ones((1, 2)), jnp.zeros((1, 2)), 2.0)
    Array([[3., 3.]], dtype=float32)

  References:
    Patel, Salamanca and Barba, `Bridging the Gap: Addressing
    Discrepancies in Diffusion Model Training for Classifier-Free Guidance
    <https://arxiv.org/abs/2311.00938>`_, 2023 (abstract only; see the
    note); Ho and Salimans, `Classifier-Free Diffusion Guidance
    <https://arxiv.org/abs/2207.12598>`_, 2022.
  """
  w = jnp.asarray(guidance, _F32)
  w = w.reshape(w.shape + (1,) * (jnp.ndim(pred_cond) - w.ndim))
  out = (1.0 + w) * pred_cond.astype(_F32) - w * pred_uncond.astype(_F32)
  return out.astype(pred_cond.dtype)


@metadata.describe(
  citations=('ho2022classifier',),
  row=metadata.Row(
    'losses',
    'standard classifier-free-guidance loss',
    papers='[Ho & Salimans 2022](https://arxiv.org/abs/2207.12598)',
  ),
)
def cfg_standard_loss(
  pred_cond: jax.Array,
  pred_uncond: jax.Array,
  target: jax.Array,
  *,
  drop_mask: jax.Array,
  weights: jax.Array | None = None,
) -> jax.Array:
  r"""The standard classifier-free-guidance training loss, per example.

  .. math::
    \ell = \lambda\,\|\mathrm{target} - \epsilon_\theta(x_t,
    d\,?\,\varnothing : c)\|^2,

  where :math:`d` marks examples whose condition was dropped (with
  probability ``p_uncond``, 0.1-0.2 in the literature). Both predictions are
  passed so that this and :func:`cfg_aligned_loss` share one signature; the
  unused one gets zero gradient. Equal to :func:`cfg_aligned_loss` with
  ``align_weight=0``.

  Args:
    pred_cond: conditional predictions ``[B, ...]``.
    pred_uncond: null-condition predictions, same shape.
    target: the regression target (:math:`\epsilon`, :math:`v` or
      :math:`x_0`), same shape.
    drop_mask: bool ``[B]``, true where the condition was dropped.
    weights: :math:`\lambda`, ``None`` (1), a scalar or ``[B]``.

  Returns:
    float32 ``[B]``: squared errors summed over the non-batch axes.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import losses
    >>> losses.cfg_standard_loss(
    ...   jnp.ones((2, 3)), jnp.zeros((2, 3)), jnp.ones((2, 3)),
    ...   drop_mask=jnp.array([False, True]))
    Array([0., 3.], dtype=float32)

  References:
    Patel, Salamanca and Barba, `Bridging the Gap: Addressing
    Discrepancies in Diffusion Model Training for Classifier-Free Guidance
    <https://arxiv.org/abs/2311.00938>`_, 2023 (abstract only; see the
    note); Ho and Salimans, `Classifier-Free Diffusion Guidance
    <https://arxiv.org/abs/2207.12598>`_, 2022.
  """
  return cfg_aligned_loss(
    pred_cond,
    pred_uncond,
    target,
    0.0,
    drop_mask=drop_mask,
    align_weight=0.0,
    weights=weights,
  )


@metadata.describe(
  citations=('patel2023bridging', 'ho2022classifier'),
  row=metadata.Row(
    'losses',
    'CFG-aligned diffusion loss (*interpretation*)',
    papers=(
      '[Patel et al. 2023](https://arxiv.org/abs/2311.00938) (abstract only)'
    ),
    also=('cfg_guided_prediction',),
  ),
)
def cfg_aligned_loss(
  pred_cond: jax.Array,
  pred_uncond: jax.Array,
  target: jax.Array,
  guidance: jax.typing.ArrayLike,
  *,
  drop_mask: jax.Array,
  align_weight: jax.typing.ArrayLike = 1.0,
  stop_grad_uncond: bool = True,
  weights: jax.Array | None = None,
) -> jax.Array:
  r"""A CFG-aligned diffusion training loss (our interpretation), per example.

  Trains the guided combination the sampler will use, not only the
  conditional and unconditional branches. With
  :math:`\tilde\epsilon_w = (1 + w)\epsilon_\theta(x_t, c) -
  w\,\mathrm{sg}[\epsilon_\theta(x_t, \varnothing)]` and drop flag :math:`d`:

  .. math::
    \ell = \begin{cases}
    \lambda\|\mathrm{target} - \epsilon_\theta(x_t, \varnothing)\|^2
    & d \\
    \lambda\big[(1-\rho)\|\mathrm{target} - \epsilon_\theta(x_t, c)\|^2
    + \rho\|\mathrm{target} - \tilde\epsilon_w\|^2\big] & \text{otherwise,}
    \end{cases}

  :math:`\rho` = ``align_weight`` (0: the standard loss,
  :func:`cfg_standard_loss`), :math:`w` = ``guidance`` (set it to the
  sampling guidance; a ``[B]`` array trains over a range). With
  :math:`\epsilon_u = E[\epsilon\mid x_t]` and :math:`\rho = 1` the optimum is
  :math:`\epsilon_c = (\epsilon^*_c + w\epsilon^*_u)/(1 + w)`, so CFG at the
  training :math:`w` returns the true conditional prediction
  :math:`\epsilon^*_c`; for general :math:`\rho`, :math:`\epsilon_c =
  [(1-\rho)\epsilon^*_c + \rho(1+w)(\epsilon^*_c + w\epsilon^*_u)] /
  [(1-\rho) + \rho(1+w)^2]` (guidance damped, not removed).

  Cost: both predictions per example (two forward passes: batch the
  conditional and null inputs together), about twice the standard loss.

  .. note::
    **Interpretation, not a reproduction.** The published objective of
    Patel, Salamanca and Barba (2023) was unavailable (abstract only, no
    author code). This is the library's reconstruction of "a loss that
    aligns training with CFG sampling". Its choices: a stop-gradient on the
    unconditional branch inside the guided term (so that branch is trained
    only on dropped examples), a fixed (or per-example) training guidance
    :math:`w`, a :math:`\rho` mixture with the conditional loss, uniform
    :math:`\lambda` over timesteps unless ``weights`` says otherwise.
    Results obtained with it are not results of the paper.

  Args:
    pred_cond: conditional predictions ``[B, ...]``.
    pred_uncond: null-condition predictions, same shape.
    target: the regression target, same shape.
    guidance: :math:`w \ge 0`, a scalar or ``[B]``.
    drop_mask: bool ``[B]``, true where the condition was dropped.
    align_weight: :math:`\rho \in [0, 1]`, a scalar or ``[B]``.
    stop_grad_uncond: stop the gradient into ``pred_uncond`` through the
      guided term (default ``True``).
    weights: :math:`\lambda`, ``None`` (1), a scalar or ``[B]``.

  Returns:
    float32 ``[B]``: per-example losses, summed over the non-batch axes
    (reduce them yourself, as with ``optax.losses``).

  Raises:
    ValueError: mismatched shapes (named in the message), or concrete
      ``guidance < 0`` / ``align_weight`` outside ``[0, 1]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import losses
    >>> cond, uncond = jnp.full((2, 1), 0.5), jnp.zeros((2, 1))
    >>> target = jnp.ones((2, 1))
    >>> drop = jnp.array([False, True])
    >>> losses.cfg_aligned_loss(cond, uncond, target, 1.0, drop_mask=drop)
    Array([0., 1.], dtype=float32)

  References:
    Patel, Salamanca and Barba, `Bridging the Gap: Addressing
    Discrepancies in Diffusion Model Training for Classifier-Free Guidance
    <https://arxiv.org/abs/2311.00938>`_, 2023 (abstract only; see the
    note); Ho and Salimans, `Classifier-Free Diffusion Guidance
    <https://arxiv.org/abs/2207.12598>`_, 2022.
  """
  where = 'cfg_aligned_loss'
  for name, value, upper in (
    ('guidance', guidance, None),
    ('align_weight', align_weight, 1.0),
  ):
    if jnp.ndim(value) == 0:  # arrays and tracers are not checked
      validation.check_number(
        where, name, value, lower=0.0, upper=upper, allow_schedule=False
      )
  batch = _check_shapes(where, pred_cond, pred_uncond, target, drop_mask)
  w = _per_example(guidance, batch, 'guidance', where)
  rho = _per_example(align_weight, batch, 'align_weight', where)
  lam = _per_example(
    1.0 if weights is None else weights, batch, 'weights', where
  )
  uncond_in_guided = (
    jax.lax.stop_gradient(pred_uncond) if stop_grad_uncond else pred_uncond
  )
  guided = cfg_guided_prediction(pred_cond, uncond_in_guided, w)
  conditional = _squared_error(target, pred_cond)
  aligned = _squared_error(target, guided)
  kept = (1.0 - rho) * conditional + rho * aligned
  dropped = _squared_error(target, pred_uncond)
  return lam * jnp.where(jnp.asarray(drop_mask, bool), dropped, kept)
