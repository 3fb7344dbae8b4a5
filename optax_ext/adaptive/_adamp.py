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
"""AdamP and SGDP: no radial step for scale-invariant weights."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import alias
from optax_ext._src import kernels
from optax_ext._src import metadata
from optax_ext._src import trees
from optax_ext._src import validation


def _cosine(dot, gg, pp, eps):
  """|cos| from a dot product and squared norms (torch's clamped norms)."""
  return jnp.abs(dot) / (
    jnp.maximum(jnp.sqrt(gg), eps) * jnp.maximum(jnp.sqrt(pp), eps)
  )


def project_scale_invariant(p, g, d, delta, eps, channel_axis):
  """AdamP's projection of a step ``d`` for one float32 weight ``p``.

  Tests the channel view (one row per slice along ``channel_axis``) and then
  the layer view (one row); the first whose largest ``|cos(g_row, p_row)|``
  is below ``delta / sqrt(row length)`` removes the radial part of ``d`` row
  by row. Weights with ``ndim <= 1`` are never projected. Rows are reduced
  in place (no transposes: XLA:CPU copies a transposed view, which made
  the step several times slower; docs/benchmarks.md, kernel notes); the
  layer view's sums are the channel sums summed.

  Returns:
    ``(d projected or not, whether it was projected)``.
  """
  if p.ndim <= 1:
    return d, jnp.asarray(False)
  keep = channel_axis % p.ndim
  axes = tuple(a for a in range(p.ndim) if a != keep)
  row_len = p.size // p.shape[keep]

  def rows(x):
    return jnp.sum(x, axis=axes, keepdims=True)

  # On XLA:CPU, barriers keep XLA from folding the layer sums below (sums
  # of the row sums) into fresh full reductions, which are slower there.
  barrier = (
    jax.lax.optimization_barrier if kernels.cpu_tuned() else (lambda x: x)
  )
  gp, gg, pp = barrier((rows(g * p), rows(g * g), rows(p * p)))
  fired_channel = jnp.max(_cosine(gp, gg, pp, eps)) < delta / jnp.sqrt(
    jnp.float32(row_len)
  )
  gp_all, gg_all, pp_all = jnp.sum(gp), jnp.sum(gg), jnp.sum(pp)
  fired_layer = _cosine(gp_all, gg_all, pp_all, eps) < delta / jnp.sqrt(
    jnp.float32(p.size)
  )

  def project(d):
    # d - unit <unit, d> with unit = p / (||p|| + eps), per row or overall.
    pd = barrier(rows(p * d))
    per_row = pd / jnp.square(jnp.sqrt(pp) + eps)
    overall = jnp.sum(pd) / jnp.square(jnp.sqrt(pp_all) + eps)
    return d - p * jnp.where(fired_channel, per_row, overall)

  fired = fired_channel | fired_layer
  # A select, not lax.cond: measured faster on XLA:CPU (the conditional
  # copies its operands).
  return jnp.where(fired, project(d), d), fired


def _check_projection_args(where, delta, wd_ratio, eps, weight_decay):
  validation.check_non_negative(where, 'delta', delta)
  validation.check_number(where, 'wd_ratio', wd_ratio, lower=0.0, upper=1.0)
  validation.check_non_negative(where, 'eps', eps)
  validation.check_non_negative(where, 'weight_decay', weight_decay)


def _require_params(where, params):
  if params is None:
    raise ValueError(
      f'{where}: `params` are required by update (the projection compares '
      'the gradient with the weights).'
    )


class ScaleByAdampState(NamedTuple):
  """State of :func:`scale_by_adamp`.

  Attributes:
    count: int32 number of updates so far.
    mu: EMA of the gradient (``mu_dtype``, float32 by default).
    nu: float32 EMA of the squared gradient.
  """

  count: jax.Array
  mu: optax.Updates
  nu: optax.Updates


# Battery case: Decoupled decay moves the optimum by lr * lambda * theta / step.
@metadata.describe(
  citations=('heo2021adamp',),
  case=metadata.Case(
    kind='param',
    kwargs={'weight_decay': 1e-3},
    hyperparams=('b1', 'b2', 'eps', 'weight_decay', 'delta', 'wd_ratio'),
    lr=0.05,
    rosenbrock=(metadata.cosine_decay(0.01, 20000), 20000),
    static_args=('nesterov', 'channel_axis'),
  ),
  row=metadata.Row(
    'adaptive',
    'AdamP, SGDP',
    papers='[Heo et al. 2021](https://arxiv.org/abs/2006.08217)',
    also=('adamp', 'scale_by_sgdp', 'sgdp'),
  ),
)
def scale_by_adamp(
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  delta: float = 0.1,
  wd_ratio: float = 0.1,
  nesterov: bool = False,
  channel_axis: int = -1,
  *,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AdamP direction, with its own (projection-dependent) weight decay.

  Adam's step :math:`d = m / (\sqrt{v / (1-\beta_2^t)} + \epsilon)` (or
  :math:`(\beta_1 m + (1-\beta_1) g)/\ldots` with ``nesterov``). For a weight
  :math:`W` with ``ndim > 1``, each row :math:`r` of a view (first one row per
  output channel, then the whole tensor as one row) is tested; if
  :math:`\max_r |\cos(g_r, W_r)| < \delta / \sqrt{\text{row length}}` the
  weight looks scale-invariant and the radial part is removed,

  .. math::
    d_r \leftarrow d_r - \hat W_r \langle \hat W_r, d_r\rangle, \quad
    \hat W_r = W_r / (\|W_r\| + \epsilon),

  and its decay is shrunk by ``wd_ratio``:

  .. math::
    u = \frac{d}{1 - \beta_1^t} + \lambda\, r\, W, \qquad
    r = \texttt{wd\_ratio} \text{ if projected else } 1 .

  Chain :func:`optax.scale_by_learning_rate` after it (or use :func:`adamp`):
  :math:`W \leftarrow W(1 - \eta\lambda r) - \eta d / (1 - \beta_1^t)`, the
  clovaai reference's update. The test is repeated every step.

  .. note::
    The reference (PyTorch) takes output channels on axis 0 of ``(out, in,
    ...)`` weights; Flax kernels are ``(..., in, out)``, so the default
    ``channel_axis=-1`` takes them on the last axis. Pass ``channel_axis=0``
    for PyTorch-layout weights.

  Cost: two float32 buffers; per step a few reductions per weight.

  Args:
    b1: first-moment decay in ``[0, 1)``.
    b2: second-moment decay in ``[0, 1)``.
    eps: added to the denominator and the norms, ``>= 0``.
    weight_decay: :math:`\lambda`, ``>= 0`` (reference 0; README 1e-2).
    delta: :math:`\delta` of the scale-invariance test, ``>= 0``.
    wd_ratio: decay multiplier of projected weights, in ``[0, 1]``.
    nesterov: Nesterov-style step.
    channel_axis: the output-channel axis of every weight with ``ndim > 1``.
    mu_dtype: storage dtype of the momentum buffer (e.g. ``jnp.bfloat16``);
      ``None`` keeps float32. Computation is in float32.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`ScaleByAdampState`; ``update`` needs ``params``.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import adaptive
    >>> tx = adaptive.scale_by_adamp()
    >>> w = jnp.array([[1.0], [0.0]])     # one output unit: column (1, 0)
    >>> g = jnp.array([[0.001], [1.0]])   # almost orthogonal to it
    >>> u, _ = tx.update(g, tx.init(w), w)
    >>> u.round(4)   # Adam's first step is sign(g); its part along w is gone
    Array([[0.],
           [1.]], dtype=float32)

  References:
    Heo et al., `AdamP: Slowing Down the Slowdown for Momentum Optimizers
    on Scale-invariant Weights <https://arxiv.org/abs/2006.08217>`_, ICLR
    2021.
  """
  where = 'scale_by_adamp'
  validation.check_adam(where, b1, b2)
  _check_projection_args(where, delta, wd_ratio, eps, weight_decay)
  validation.check_integer(where, 'channel_axis', channel_axis)
  mu_dtype = validation.state_dtype(where, 'mu_dtype', mu_dtype)

  def init_fn(params):
    return ScaleByAdampState(
      count=jnp.zeros([], jnp.int32),
      mu=alias.state_zeros(params, mu_dtype),
      nu=alias.state_zeros(params),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    _require_params(where, params)
    count = optax.safe_int32_increment(state.count)
    t = count.astype(jnp.float32)
    beta1 = alias.scalar_at(b1, state.count)
    beta2 = alias.scalar_at(b2, state.count)
    e = alias.scalar_at(eps, state.count)
    lam = alias.scalar_at(weight_decay, state.count)
    dlt = alias.scalar_at(delta, state.count)
    ratio = alias.scalar_at(wd_ratio, state.count)
    bc1 = 1.0 - jnp.power(beta1, t)
    sqrt_bc2 = jnp.sqrt(1.0 - jnp.power(beta2, t))

    def one(g, m, v, p):
      g32, p32 = g.astype(jnp.float32), p.astype(jnp.float32)
      m = beta1 * m.astype(jnp.float32) + (1.0 - beta1) * g32
      v = beta2 * v + (1.0 - beta2) * g32 * g32
      denom = jnp.sqrt(v) / sqrt_bc2 + e
      num = beta1 * m + (1.0 - beta1) * g32 if nesterov else m
      d, fired = project_scale_invariant(
        p32, g32, num / denom, dlt, e, channel_axis
      )
      r = jnp.where(fired, ratio, 1.0)
      u = d / bc1 + lam * r * p32
      return u.astype(g.dtype), m.astype(mu_dtype), v

    u, m, v = trees.map_multi(one, 3, updates, state.mu, state.nu, params)
    return u, ScaleByAdampState(count=count, mu=m, nu=v)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@metadata.describe(
  citations=('heo2021adamp',),
  case=metadata.Case(
    kind='param',
    kwargs={'learning_rate': 0.05, 'nesterov': True},
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'eps', 'delta', 'wd_ratio'),
    lr=0.05,
    static_args=('nesterov', 'channel_axis'),
  ),
  benchmarks=(
    metadata.Benchmark(
      'transforms',
      'adamp',
      args=(1e-3,),
      kwargs={'weight_decay': 1e-2},
      peer=('AdamP', {'lr': 1e-3, 'weight_decay': 1e-2}),
      two_pass=True,
    ),
  ),
)
@validation.named_errors
def adamp(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  delta: float = 0.1,
  wd_ratio: float = 0.1,
  nesterov: bool = False,
  channel_axis: int = -1,
  *,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AdamP optimiser: :func:`scale_by_adamp` then the learning rate.

  Args:
    learning_rate: step size or schedule, ``>= 0`` (reference 1e-3).
    b1: first-moment decay in ``[0, 1)``.
    b2: second-moment decay in ``[0, 1)``.
    eps: added to the denominator and the norms, ``>= 0``.
    weight_decay: decoupled decay :math:`\lambda`, ``>= 0``.
    delta: :math:`\delta` of the scale-invariance test, ``>= 0``.
    wd_ratio: decay multiplier of projected weights, in ``[0, 1]``.
    nesterov: Nesterov-style step.
    channel_axis: the output-channel axis (``-1`` for Flax kernels).
    mu_dtype: storage dtype of the momentum buffer (``None``: float32).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`; ``update`` needs
    ``params``.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import adaptive
    >>> tx = adaptive.adamp(1e-3, weight_decay=1e-2)
    >>> w = jnp.ones((2, 3))
    >>> u, _ = tx.update(jnp.ones((2, 3)), tx.init(w), w)
    >>> u   # g parallel to w: not scale-invariant, plain AdamW step
    Array([[-0.00101, -0.00101, -0.00101],
           [-0.00101, -0.00101, -0.00101]], dtype=float32)

  References:
    Heo et al., `AdamP: Slowing Down the Slowdown for Momentum Optimizers
    on Scale-invariant Weights <https://arxiv.org/abs/2006.08217>`_, ICLR
    2021.
  """
  validation.check_non_negative('adamp', 'learning_rate', learning_rate)
  return optax.chain(
    scale_by_adamp(
      b1,
      b2,
      eps,
      weight_decay,
      delta,
      wd_ratio,
      nesterov,
      channel_axis,
      mu_dtype=mu_dtype,
    ),
    optax.scale_by_learning_rate(learning_rate),
  )


class ScaleBySgdpState(NamedTuple):
  """State of :func:`scale_by_sgdp`.

  Attributes:
    count: int32 number of updates so far.
    trace: momentum buffer (``mu_dtype``, float32 by default).
  """

  count: jax.Array
  trace: optax.Updates


@metadata.describe(
  citations=('heo2021adamp',),
  case=metadata.Case(
    kind='param',
    kwargs={'momentum': 0.9, 'nesterov': True},
    hyperparams=('momentum', 'dampening', 'weight_decay', 'delta'),
    rosenbrock=(1e-3, 20000),
    static_args=('nesterov', 'channel_axis'),
  ),
)
def scale_by_sgdp(
  momentum: float = 0.0,
  dampening: float = 0.0,
  nesterov: bool = False,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  delta: float = 0.1,
  wd_ratio: float = 0.1,
  eps: float = 1e-8,
  channel_axis: int = -1,
  *,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""SGDP direction: SGD momentum with AdamP's projection and decay.

  :math:`b \leftarrow \mu b + (1 - \text{dampening}) g`, :math:`d = g + \mu
  b` (``nesterov``) or :math:`b`; :math:`d` goes through AdamP's projection
  (:func:`scale_by_adamp`) and

  .. math::
    u = d + \frac{\lambda\, r\, W}{1 - \mu} .

  Args:
    momentum: :math:`\mu` in ``[0, 1)`` (reference 0; README 0.9).
    dampening: in ``[0, 1]`` (reference 0).
    nesterov: Nesterov momentum.
    weight_decay: :math:`\lambda`, ``>= 0``.
    delta: :math:`\delta` of the scale-invariance test, ``>= 0``.
    wd_ratio: decay multiplier of projected weights, in ``[0, 1]``.
    eps: added to the norms, ``>= 0``.
    channel_axis: the output-channel axis (``-1`` for Flax kernels).
    mu_dtype: storage dtype of the momentum buffer (e.g. ``jnp.bfloat16``);
      ``None`` keeps float32. Computation is in float32.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`ScaleBySgdpState`; ``update`` needs ``params``.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import adaptive
    >>> tx = adaptive.scale_by_sgdp(momentum=0.9)
    >>> w = jnp.array([[3.0, 0.0], [0.0, 3.0]])
    >>> g = jnp.array([[0.0, 1.0], [2.0, 0.0]])
    >>> u, _ = tx.update(g, tx.init(w), w)
    >>> u
    Array([[0., 1.],
           [2., 0.]], dtype=float32)

  References:
    Heo et al., `AdamP: Slowing Down the Slowdown for Momentum Optimizers
    on Scale-invariant Weights <https://arxiv.org/abs/2006.08217>`_, ICLR
    2021.
  """
  where = 'scale_by_sgdp'
  validation.check_decay(where, 'momentum', momentum)
  validation.check_number(where, 'dampening', dampening, lower=0.0, upper=1.0)
  _check_projection_args(where, delta, wd_ratio, eps, weight_decay)
  validation.check_integer(where, 'channel_axis', channel_axis)
  mu_dtype = validation.state_dtype(where, 'mu_dtype', mu_dtype)

  def init_fn(params):
    return ScaleBySgdpState(
      count=jnp.zeros([], jnp.int32), trace=alias.state_zeros(params, mu_dtype)
    )

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    _require_params(where, params)
    mu = alias.scalar_at(momentum, state.count)
    damp = alias.scalar_at(dampening, state.count)
    lam = alias.scalar_at(weight_decay, state.count)
    dlt = alias.scalar_at(delta, state.count)
    ratio = alias.scalar_at(wd_ratio, state.count)
    e = alias.scalar_at(eps, state.count)

    def one(g, b, p):
      g32, p32 = g.astype(jnp.float32), p.astype(jnp.float32)
      b = mu * b.astype(jnp.float32) + (1.0 - damp) * g32
      d = g32 + mu * b if nesterov else b
      d, fired = project_scale_invariant(p32, g32, d, dlt, e, channel_axis)
      r = jnp.where(fired, ratio, 1.0)
      u = d + lam * r * p32 / (1.0 - mu)
      return u.astype(g.dtype), b.astype(mu_dtype)

    u, b = trees.map_multi(one, 2, updates, state.trace, params)
    count = optax.safe_int32_increment(state.count)
    return u, ScaleBySgdpState(count=count, trace=b)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@metadata.describe(
  citations=('heo2021adamp',),
  case=metadata.Case(
    kind='param',
    kwargs={'learning_rate': 0.1, 'momentum': 0.9},
    alias=True,
    hyperparams=('learning_rate', 'momentum', 'weight_decay', 'wd_ratio'),
    rosenbrock=(1e-3, 20000),
    static_args=('nesterov', 'channel_axis'),
  ),
  benchmarks=(
    metadata.Benchmark(
      'transforms',
      'sgdp',
      args=(0.1,),
      kwargs={'momentum': 0.9, 'weight_decay': 1e-5},
      peer=('SGDP', {'lr': 0.1, 'momentum': 0.9, 'weight_decay': 1e-5}),
      two_pass=True,
    ),
  ),
)
@validation.named_errors
def sgdp(
  learning_rate: optax.ScalarOrSchedule,
  momentum: float = 0.0,
  dampening: float = 0.0,
  nesterov: bool = False,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  delta: float = 0.1,
  wd_ratio: float = 0.1,
  eps: float = 1e-8,
  channel_axis: int = -1,
  *,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""SGDP optimiser: :func:`scale_by_sgdp` then the learning rate.

  Args:
    learning_rate: step size or schedule, ``>= 0`` (no reference default;
      README 0.1).
    momentum: :math:`\mu` in ``[0, 1)``.
    dampening: in ``[0, 1]``.
    nesterov: Nesterov momentum.
    weight_decay: :math:`\lambda`, ``>= 0`` (README 1e-5).
    delta: :math:`\delta` of the scale-invariance test, ``>= 0``.
    wd_ratio: decay multiplier of projected weights, in ``[0, 1]``.
    eps: added to the norms, ``>= 0``.
    channel_axis: the output-channel axis (``-1`` for Flax kernels).
    mu_dtype: storage dtype of the momentum buffer (``None``: float32).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`; ``update`` needs
    ``params``.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import adaptive
    >>> tx = adaptive.sgdp(0.1, momentum=0.9, nesterov=True)
    >>> w = jnp.ones(3)                   # 1-D: never projected
    >>> u, _ = tx.update(jnp.ones(3), tx.init(w), w)
    >>> u
    Array([-0.19, -0.19, -0.19], dtype=float32)

  References:
    Heo et al., `AdamP: Slowing Down the Slowdown for Momentum Optimizers
    on Scale-invariant Weights <https://arxiv.org/abs/2006.08217>`_, ICLR
    2021.
  """
  validation.check_non_negative('sgdp', 'learning_rate', learning_rate)
  return optax.chain(
    scale_by_sgdp(
      momentum,
      dampening,
      nesterov,
      weight_decay,
      delta,
      wd_ratio,
      eps,
      channel_axis,
      mu_dtype=mu_dtype,
    ),
    optax.scale_by_learning_rate(learning_rate),
  )
