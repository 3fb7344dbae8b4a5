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
"""Ranger21: an optax chain of AGC, centralisation, AdaPNM and Lookahead."""

import math
from typing import Any

import jax
from jax import lax
import jax.numpy as jnp
import optax

from optax_ext._src import alias
from optax_ext._src import metadata
from optax_ext._src import validation
from optax_ext.lookahead import _lookahead
from optax_ext.momentum import _pnm


def _reduce_axes(x, channel_axis):
  """All axes but the output-channel axis (all axes for ``ndim <= 1``)."""
  if x.ndim <= 1:
    return None
  keep = channel_axis % x.ndim
  return tuple(a for a in range(x.ndim) if a != keep)


def _centralize_and_normalize(
  channel_axis: int, centralize: bool, normalize: bool
) -> optax.GradientTransformation:
  """Gradient centralisation then division by the (unbiased) std + 1e-8.

  Centralisation subtracts, for ``ndim > 1``, the mean over every axis but
  the output-channel axis; normalisation divides leaves of more than 2
  elements by their std (Ranger21's ``normalize_gradient``).
  """

  def one(g):
    g32 = g.astype(jnp.float32)
    axes = _reduce_axes(g32, channel_axis)
    if not (centralize and axes is not None):
      if normalize and g32.size > 2:
        g32 = g32 / (jnp.std(g32, ddof=1) + 1e-8)
      return g32.astype(g.dtype)
    # Centralised: the per-channel means and the centred values' variance
    # from two independent reductions of the gradient, a plain sum and a
    # sum of squares shifted by the first slice along the reduced axes (no
    # precision lost to a common offset): M2_c = sum (g - c)^2 - n (mean_c -
    # c)^2, and the centred values (mean 0) have variance sum_c M2_c / (N -
    # 1). Neither reduction reads an intermediate, so XLA keeps no centred
    # copy: jnp.mean then jnp.std did (its cost in docs/benchmarks.md).
    shift = g32
    for a in axes:
      shift = lax.slice_in_dim(shift, 0, 1, axis=a)
    n = g32.size // g32.shape[channel_axis % g32.ndim]
    mean = jnp.sum(g32, axis=axes, keepdims=True) / n
    if normalize and g32.size > 2:
      s2 = jnp.sum(jnp.square(g32 - shift), axis=axes, keepdims=True)
      m2 = jnp.sum(jnp.maximum(s2 - n * jnp.square(mean - shift), 0.0))
      std = jnp.sqrt(m2 / (g32.size - 1))
      return ((g32 - mean) / (std + 1e-8)).astype(g.dtype)
    return (g32 - mean).astype(g.dtype)

  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(one, updates), state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)


def _with_stable_decay_and_norm_loss(
  core: optax.GradientTransformation,
  weight_decay,
  norm_loss_factor,
  eps,
  b2,
  channel_axis: int,
) -> optax.GradientTransformationExtraArgs:
  """Adds stable weight decay and the norm loss to AdaPNM's direction.

  ``u + (lambda / sigma) theta + 2 c (1 - 1 / (||theta_unit|| + eps))
  theta`` with ``sigma = sqrt(mean(v / (1 - b2^t)))`` over all parameters
  (stable weight decay) and unit norms over all axes but the output
  channel (norm loss).
  """

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError('ranger21: `params` are required by update.')
    u, state = core.update(updates, state, params, **extra_args)
    t = state.count.astype(jnp.float32)
    bc2 = 1.0 - jnp.power(alias.scalar_at(b2, state.count - 1), t)
    leaves = jax.tree.leaves(state.nu)
    size = sum(v.size for v in leaves)
    total = sum((jnp.sum(v) for v in leaves), jnp.float32(0.0))
    sigma = jnp.sqrt(total / bc2 / max(size, 1))
    lam = alias.scalar_at(weight_decay, state.count)
    # No decay while every second moment is 0 (sigma = 0).
    decay = jnp.where(sigma > 0.0, lam / jnp.where(sigma > 0, sigma, 1), 0.0)
    c = alias.scalar_at(norm_loss_factor, state.count)
    e = alias.scalar_at(eps, state.count)

    def one(u, p):
      p32 = p.astype(jnp.float32)
      norm = jnp.sqrt(
        jnp.sum(
          jnp.square(p32), axis=_reduce_axes(p32, channel_axis), keepdims=True
        )
      )
      norm_loss = 2.0 * c * (1.0 - 1.0 / (norm + e))
      out = u.astype(jnp.float32) + (decay + norm_loss) * p32
      return out.astype(u.dtype)

    return jax.tree.map(one, u, params), state

  return optax.GradientTransformationExtraArgs(core.init, update_fn)


@metadata.describe(
  citations=('wright2021ranger21', 'xie2021positive', 'zhang2019lookahead')
)
def ranger21_schedule(
  learning_rate: float,
  num_iterations: int,
  b2: float = 0.999,
  num_warmup_iterations: int | None = None,
  warmdown_start_pct: float = 0.72,
  warmdown_min_lr: float = 3e-5,
) -> optax.Schedule:
  r"""Ranger21's learning rate: linear warm-up, flat, linear warm-down.

  With :math:`t` = count + 1, :math:`T` = ``num_iterations``, warm-up
  length :math:`W` = ``ceil(2 / (1 - b2))`` (0.22 T when that exceeds
  0.45 T) unless given, and warm-down start :math:`S = \lfloor 0.72 T
  \rfloor`:

  .. math::
    \eta_t = \begin{cases}
      \eta \min(1, t / W) & t < S \\
      \max\big(\eta - (\eta - \eta_{\min})
        \min(1, \tfrac{t + 1 - S}{T - S + 1}), \eta_{\min}\big) & t \ge S .
    \end{cases}

  Args:
    learning_rate: the flat rate :math:`\eta > 0`.
    num_iterations: total steps :math:`T \ge 1`.
    b2: the second-moment decay that sets the default warm-up, in
      ``[0, 1)``.
    num_warmup_iterations: :math:`W \ge 1`, or ``None`` for the default.
    warmdown_start_pct: :math:`S / T` in ``[0, 1]``.
    warmdown_min_lr: final rate :math:`\eta_{\min} \ge 0`.

  Returns:
    An ``optax.Schedule`` (float32, strict-promotion clean).

  Example:
    >>> from optax_ext import momentum
    >>> sched = momentum.ranger21_schedule(1.0, 100, num_warmup_iterations=10)
    >>> [round(float(sched(c)), 3) for c in (0, 9, 50, 71, 99)]
    [0.1, 1.0, 1.0, 0.966, 0.0]

  References:
    Wright and Demeure, `Ranger21: a synergistic deep learning optimizer
    <https://arxiv.org/abs/2106.13731>`_, 2021.
  """
  where = 'ranger21_schedule'
  validation.check_number(
    where, 'learning_rate', learning_rate, lower=0.0, allow_schedule=False
  )
  validation.check_integer(where, 'num_iterations', num_iterations, lower=1)
  validation.check_decay(where, 'b2', b2)
  validation.check_number(
    where, 'warmdown_start_pct', warmdown_start_pct, lower=0.0, upper=1.0
  )
  validation.check_non_negative(where, 'warmdown_min_lr', warmdown_min_lr)
  if num_warmup_iterations is None and isinstance(b2, jax.core.Tracer):
    # inject_hyperparams under jit: the same rule on the traced value.
    warmup = jnp.ceil(2.0 / (1.0 - b2))
    warmup = jnp.where(
      warmup / num_iterations > 0.45,
      jnp.float32(max(int(0.22 * num_iterations), 1)),
      warmup,
    )
  elif num_warmup_iterations is None:
    warmup = math.ceil(2.0 / (1.0 - float(b2)))  # float64, as the reference
    if warmup / num_iterations > 0.45:
      warmup = max(int(0.22 * num_iterations), 1)
  else:
    validation.check_integer(
      where, 'num_warmup_iterations', num_warmup_iterations, lower=1
    )
    warmup = num_warmup_iterations
  start = int(warmdown_start_pct * num_iterations)
  length = num_iterations - start

  def schedule(count):
    t = jnp.asarray(count, jnp.float32) + 1.0
    lr = jnp.asarray(learning_rate, jnp.float32)
    warm = lr * jnp.minimum(1.0, t / warmup)
    frac = jnp.minimum(jnp.maximum(t + 1.0 - start, 1.0) / (length + 1), 1.0)
    down = jnp.maximum(lr - (lr - warmdown_min_lr) * frac, warmdown_min_lr)
    return jnp.where(t >= start, down, warm)

  return schedule


# Battery case: The battery's optima are not at unit norm and gradient
# centralisation keeps the column means of a matrix fixed: no norm loss, no
# decay, no centralisation here (each is tested on its own); the parabola runs
# 500 steps.
@metadata.describe(
  citations=('wright2021ranger21', 'xie2021positive', 'zhang2019lookahead'),
  case=metadata.Case(
    kind='param',
    kwargs={
      'learning_rate': 0.05,
      'num_iterations': 500,
      'weight_decay': 0.0,
      'norm_loss_factor': 0.0,
      'centralize': False,
    },
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'b0', 'agc_clipping'),
    lr=0.1,
    rosenbrock=(metadata.cosine_decay(3e-2, 20000), 20000),
    static_args=(
      'num_iterations',
      'softplus_beta',
      'amsgrad',
      'centralize',
      'normalize',
      'lookahead_sync_period',
      'channel_axis',
    ),
    inject_rtol=1e-4,
  ),
  benchmarks=(
    metadata.Benchmark(
      'transforms',
      'ranger21',
      args=(1e-3,),
      kwargs={'num_iterations': 10_000},
      peer=('Ranger21', {'lr': 1e-3, 'num_iterations': 10_000}),
      two_pass=True,
    ),
  ),
  row=metadata.Row(
    'momentum',
    (
      'Ranger21 (AGC + centralisation + AdaPNM + stable decay + norm loss'
      ' + Lookahead + schedule)'
    ),
    papers='[Wright & Demeure 2021](https://arxiv.org/abs/2106.13731)',
    also=('ranger21_schedule',),
  ),
)
@validation.named_errors
def ranger21(
  learning_rate: optax.ScalarOrSchedule,
  num_iterations: int | None = None,
  b1: float = 0.9,
  b2: float = 0.999,
  b0: float = 1.0,
  eps: float = 1e-8,
  weight_decay: float = 1e-4,
  norm_loss_factor: float = 1e-4,
  agc_clipping: float = 1e-2,
  agc_eps: float = 1e-3,
  softplus_beta: float | None = 50.0,
  amsgrad: bool = True,
  centralize: bool = True,
  normalize: bool = True,
  lookahead_sync_period: int = 5,
  lookahead_slow_step_size: float = 0.5,
  channel_axis: int = -1,
  *,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Ranger21 as an optax chain of existing and new pieces.

  .. code-block:: python

    lookahead(chain(
        adaptive_grad_clip(agc_clipping, agc_eps),    # optax
        centralise + normalise the gradient,           # per output channel
        scale_by_adapnm(b1, b2, b0, eps, amsgrad, softplus_beta=50)
          + stable weight decay + norm loss,
        scale_by_learning_rate(ranger21_schedule(...)),
    ), lookahead_sync_period, lookahead_slow_step_size)

  Stable weight decay divides :math:`\lambda` by :math:`\bar\sigma =
  \sqrt{\mathrm{mean}(v / (1-\beta_2^t))}` over all parameters; the norm
  loss adds :math:`2c(1 - 1/(\|W_{unit}\| + \epsilon))W`, unit norms taken
  per output channel. With a number for ``learning_rate`` and
  ``num_iterations`` the rate follows :func:`ranger21_schedule`; a
  schedule is used as given.

  .. note::
    Ranger21's reference code is not ported line by line: its PNM uses
    :math:`\beta_0 = 1` with a noise norm computed from :math:`\beta_2`,
    its AMSGrad maximum is written back into the EMA against a zero
    buffer (a no-op), and its stable decay and norm loss act on the last
    parameter only (a stale loop variable). Here PNM is
    :func:`scale_by_adapnm` (noise norm from :math:`\beta_0`, AMSGrad on),
    decay and norm loss act on every parameter, and centralisation and
    normalisation run once (the reference runs them twice, which is
    idempotent up to rounding). The reference sums the second moments from
    0 (pytorch_optimizer from 1). Decays combine additively within a step
    (the reference multiplies them: an :math:`O(\eta^2)` difference).
    Channels are on ``channel_axis`` (-1 for Flax kernels; the reference's
    PyTorch weights have them on axis 0). The AGC unit norms are
    :func:`optax.adaptive_grad_clip`'s.

  Args:
    learning_rate: flat rate (reference required; pytorch_optimizer 1e-3)
      or a schedule.
    num_iterations: total steps, required for the built-in schedule
      (ignored with a schedule).
    b1: :math:`\beta_1` in ``[0, 1)`` (buffers decay by :math:`\beta_1^2`).
    b2: second-moment decay in ``[0, 1)``.
    b0: PNM's :math:`\beta_0 \ge 0`.
    eps: added to the denominator and the unit norms, ``>= 0``.
    weight_decay: stable weight decay :math:`\lambda \ge 0`.
    norm_loss_factor: norm-loss :math:`c \ge 0`.
    agc_clipping: AGC ratio, ``>= 0``.
    agc_eps: AGC's floor on parameter norms, ``>= 0``.
    softplus_beta: softplus smoothing of the denominator, ``> 0`` or
      ``None``.
    amsgrad: AMSGrad maximum of the second moment.
    centralize: gradient centralisation.
    normalize: divide each gradient leaf by its std.
    lookahead_sync_period: Lookahead :math:`k \ge 1`.
    lookahead_slow_step_size: Lookahead :math:`\alpha` in ``[0, 1]``.
    channel_axis: output-channel axis of weights with ``ndim > 1``.
    mu_dtype: storage dtype of AdaPNM's two momentum buffers (``None``:
      float32); the second moments stay float32.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`; ``update`` needs
    ``params``.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.ranger21(1e-3, num_iterations=1000)
    >>> params = {'w': jnp.ones((3, 2)), 'b': jnp.zeros(2)}
    >>> state = tx.init(params)
    >>> u, state = tx.update(params, state, params)
    >>> [x.shape for x in (u['b'], u['w'])]
    [(2,), (3, 2)]

  References:
    Wright and Demeure, `Ranger21: a synergistic deep learning optimizer
    <https://arxiv.org/abs/2106.13731>`_, 2021.
  """
  where = 'ranger21'
  validation.check_adam(where, b1, b2)
  validation.check_non_negative(where, 'weight_decay', weight_decay)
  validation.check_non_negative(where, 'norm_loss_factor', norm_loss_factor)
  # optax.adaptive_grad_clip takes numbers.
  validation.check_non_negative(
    where, 'agc_clipping', agc_clipping, allow_schedule=False
  )
  validation.check_non_negative(where, 'agc_eps', agc_eps, allow_schedule=False)
  validation.check_integer(where, 'channel_axis', channel_axis)
  validation.check_integer(
    where, 'lookahead_sync_period', lookahead_sync_period, lower=1
  )
  validation.check_number(
    where,
    'lookahead_slow_step_size',
    lookahead_slow_step_size,
    lower=0.0,
    upper=1.0,
    lower_inclusive=False,
    allow_schedule=False,
  )
  if callable(learning_rate):
    validation.check_non_negative(where, 'learning_rate', learning_rate)
    rate = learning_rate
  else:
    if num_iterations is None:
      raise ValueError(
        f'{where}: `num_iterations` is required with a constant '
        '`learning_rate` (it sets the warm-up and warm-down); pass a '
        'schedule instead to use your own.'
      )
    rate = ranger21_schedule(learning_rate, num_iterations, b2)
  core = _with_stable_decay_and_norm_loss(
    _pnm.scale_by_adapnm(b1, b2, b0, eps, amsgrad, softplus_beta, mu_dtype),
    weight_decay,
    norm_loss_factor,
    eps,
    b2,
    channel_axis,
  )
  inner = optax.chain(
    optax.adaptive_grad_clip(agc_clipping, agc_eps),
    _centralize_and_normalize(channel_axis, centralize, normalize),
    core,
    optax.scale_by_learning_rate(rate),
  )
  return _lookahead.lookahead(
    inner, lookahead_sync_period, lookahead_slow_step_size
  )
