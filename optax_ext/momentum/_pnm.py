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
"""Positive-negative momentum: PNM and AdaPNM."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import alias
from optax_ext._src import metadata
from optax_ext._src import trees
from optax_ext._src import validation


class ScaleByPnmState(NamedTuple):
  """State of :func:`scale_by_pnm`.

  Attributes:
    count: int32 number of updates so far.
    mu_odd: EMA of the gradients of odd steps (1, 3, ...), in ``mu_dtype``
      (float32 by default).
    mu_even: EMA of the gradients of even steps (``mu_dtype``).
  """

  count: jax.Array
  mu_odd: optax.Updates
  mu_even: optax.Updates


class ScaleByAdapnmState(NamedTuple):
  """State of :func:`scale_by_adapnm`.

  Attributes:
    count: int32 number of updates so far.
    mu_odd: EMA of the gradients of odd steps (``mu_dtype``).
    mu_even: EMA of the gradients of even steps (``mu_dtype``).
    nu: float32 EMA of the squared gradient.
    nu_max: float32 running maximum of ``nu`` (AMSGrad; ``None`` without).
  """

  count: jax.Array
  mu_odd: optax.Updates
  mu_even: optax.Updates
  nu: optax.Updates
  nu_max: optax.Updates | None


def pn_step(g32, odd, mu_odd, mu_even, beta1, beta0):
  """One positive-negative momentum step for one leaf (float32 maths).

  The buffer of this step's parity (``mu_odd`` on odd steps) takes the
  gradient with decay ``beta1**2`` and is the positive momentum; the other
  one is the negative momentum. The direction is ``((1 + beta0) pos - beta0
  neg) / sqrt((1 + beta0)**2 + beta0**2)``.

  Each new buffer depends only on its old value (and ``g``), and the
  direction only on the new buffers: XLA then updates both in place
  (swapping the two buffers' roles instead made it copy both).

  Returns:
    ``(direction, new mu_odd, new mu_even)``, the buffers in their dtype.
  """
  decay = beta1 * beta1
  dtypes = mu_odd.dtype, mu_even.dtype
  mu_odd, mu_even = mu_odd.astype(jnp.float32), mu_even.astype(jnp.float32)
  mu_odd = jnp.where(odd, decay * mu_odd + (1.0 - decay) * g32, mu_odd)
  mu_even = jnp.where(odd, mu_even, decay * mu_even + (1.0 - decay) * g32)
  pos = jnp.where(odd, mu_odd, mu_even)
  neg = jnp.where(odd, mu_even, mu_odd)
  norm = jnp.sqrt(jnp.square(1.0 + beta0) + jnp.square(beta0))
  direction = ((1.0 + beta0) * pos - beta0 * neg) / norm
  return direction, mu_odd.astype(dtypes[0]), mu_even.astype(dtypes[1])


def _check_betas(where, b1, b0):
  validation.check_decay(where, 'b1', b1)
  validation.check_non_negative(where, 'b0', b0)


@metadata.describe(
  citations=('xie2021positive',),
  case=metadata.Case(
    kind='param',
    kwargs={},
    hyperparams=('b1', 'b0'),
    rosenbrock=(metadata.cosine_decay(2e-3, 30000), 30000),
  ),
  row=metadata.Row(
    'momentum',
    'positive-negative momentum (PNM, AdaPNM)',
    papers='[Xie et al. 2021](https://arxiv.org/abs/2103.17182)',
    also=('pnm', 'scale_by_adapnm', 'adapnm'),
  ),
)
def scale_by_pnm(
  b1: float = 0.9, b0: float = 1.0, mu_dtype: Any = None
) -> optax.GradientTransformationExtraArgs:
  r"""Positive-negative momentum (PNM) direction.

  Two EMAs take the gradients of alternate steps. On step :math:`t` the
  buffer of :math:`t`'s parity is the positive one:

  .. math::
    m^+ \leftarrow \beta_1^2 m^+ + (1 - \beta_1^2) g, \qquad
    u = \frac{(1 + \beta_0) m^+ - \beta_0 m^-}
             {\sqrt{(1 + \beta_0)^2 + \beta_0^2}} .

  The difference of two independent-noise EMAs enlarges the gradient noise
  (the paper's aim) while the normalisation keeps the mean step of one EMA;
  a constant gradient gives :math:`u \to g / \sqrt{(1+\beta_0)^2 +
  \beta_0^2}`. :math:`\beta_0 = 0` is an EMA (decay :math:`\beta_1^2`) of
  every other gradient. Follows zeke-xie/Positive-Negative-Momentum
  ``pnm.py``.

  Args:
    b1: :math:`\beta_1` in ``[0, 1)``; each buffer decays by
      :math:`\beta_1^2` per own update.
    b0: :math:`\beta_0 \ge 0`, the negative-momentum weight (reference 1).
    mu_dtype: storage dtype of the two momentum buffers (e.g.
      ``jnp.bfloat16``); ``None`` keeps float32. Computation is in float32.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`ScaleByPnmState`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.scale_by_pnm()
    >>> g = jnp.array([1.0])
    >>> u, _ = tx.update(g, tx.init(g))  # 2 * 0.19 / sqrt(5)
    >>> u.round(6)
    Array([0.169941], dtype=float32)

  References:
    Xie et al., `Positive-Negative Momentum: Manipulating Stochastic
    Gradient Noise to Improve Generalization
    <https://arxiv.org/abs/2103.17182>`_, ICML 2021.
  """
  _check_betas('scale_by_pnm', b1, b0)
  mu_dtype = validation.state_dtype('scale_by_pnm', 'mu_dtype', mu_dtype)

  def init_fn(params):
    return ScaleByPnmState(
      count=jnp.zeros([], jnp.int32),
      mu_odd=alias.state_zeros(params, mu_dtype),
      mu_even=alias.state_zeros(params, mu_dtype),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    count = optax.safe_int32_increment(state.count)
    odd = count % 2 == 1
    beta1 = alias.scalar_at(b1, state.count)
    beta0 = alias.scalar_at(b0, state.count)

    def one(g, a, b):
      d, a, b = pn_step(g.astype(jnp.float32), odd, a, b, beta1, beta0)
      return d.astype(g.dtype), a, b

    u, a, b = trees.map_multi(one, 3, updates, state.mu_odd, state.mu_even)
    return u, ScaleByPnmState(count=count, mu_odd=a, mu_even=b)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@metadata.describe(
  citations=('xie2021positive',),
  case=metadata.Case(
    kind='param',
    kwargs={'learning_rate': 0.1},
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b0', 'weight_decay'),
    rosenbrock=(metadata.cosine_decay(2e-3, 30000), 30000),
  ),
  benchmarks=(
    metadata.Benchmark(
      'transforms', 'pnm', args=(1e-3,), peer=('PNM', {'lr': 1e-3})
    ),
  ),
)
@validation.named_errors
def pnm(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b0: float = 1.0,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  *,
  decouple_weight_decay: bool = True,
  mask: Any = None,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""PNM optimiser: :func:`scale_by_pnm`, weight decay, learning rate.

  Decoupled decay by default, :math:`\theta \leftarrow \theta - \eta(u +
  \lambda\theta)` (the reference's ``decoupled=True``); L2 otherwise.

  Args:
    learning_rate: step size or schedule, ``>= 0`` (required by the
      reference; pytorch_optimizer 1e-3).
    b1: :math:`\beta_1` in ``[0, 1)``.
    b0: :math:`\beta_0 \ge 0`.
    weight_decay: :math:`\lambda`, ``>= 0``.
    decouple_weight_decay: decoupled instead of L2 decay.
    mask: which params weight decay applies to (a tree of bools or a
      function of the params, as :func:`optax.add_decayed_weights`).
    mu_dtype: storage dtype of the momentum buffers (``None``: float32).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.pnm(0.1)
    >>> params = jnp.zeros(1)
    >>> u, _ = tx.update(jnp.ones(1), tx.init(params), params)
    >>> u
    Array([-0.01699412], dtype=float32)

  References:
    Xie et al., `Positive-Negative Momentum: Manipulating Stochastic
    Gradient Noise to Improve Generalization
    <https://arxiv.org/abs/2103.17182>`_, ICML 2021.
  """
  where = 'pnm'
  validation.check_non_negative(where, 'learning_rate', learning_rate)
  validation.check_non_negative(where, 'weight_decay', weight_decay)
  return alias.with_decay_and_lr(
    scale_by_pnm(b1, b0, mu_dtype),
    learning_rate,
    weight_decay,
    mask,
    coupled=not decouple_weight_decay,
  )


def _softplus(x: jax.Array) -> jax.Array:
  """``log(1 + e^x)`` as ``max(x, 0) + log(1 + e^{-|x|})``.

  Equal to ``jax.nn.softplus`` within float32 rounding (the ``log1p`` there
  only matters where ``e^{-|x|}`` is below the rounding of ``max(x, 0)``),
  and a third cheaper on XLA:CPU, where ``log1p`` is slow (6.2 against 9.2
  ms over 5.8M floats; it runs on every element of every AdaPNM-softplus
  and Ranger21 step).
  """
  return jnp.maximum(x, 0.0) + jnp.log(1.0 + jnp.exp(-jnp.abs(x)))


# Battery case: The PN direction of a constant gradient is g / sqrt(5): a slow
# Adam.
@metadata.describe(
  citations=('xie2021positive',),
  case=metadata.Case(
    kind='param',
    kwargs={},
    hyperparams=('b1', 'b2', 'b0', 'eps'),
    lr=metadata.cosine_decay(0.1, 500),
    rosenbrock=(metadata.cosine_decay(3e-2, 30000), 30000),
    static_args=('amsgrad', 'softplus_beta'),
  ),
)
def scale_by_adapnm(
  b1: float = 0.9,
  b2: float = 0.999,
  b0: float = 1.0,
  eps: float = 1e-8,
  amsgrad: bool = True,
  softplus_beta: float | None = None,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Adaptive positive-negative momentum (AdaPNM) direction.

  The PNM direction :math:`d` (:func:`scale_by_pnm`) over Adam's
  denominator, AMSGrad by default:

  .. math::
    v \leftarrow \beta_2 v + (1-\beta_2) g^2, \quad
    \hat v = \max(\hat v, v), \quad
    u = \frac{1}{1 - \beta_1^t}\,
        \frac{d}{\sqrt{\hat v / (1 - \beta_2^t)} + \epsilon} .

  Follows zeke-xie/Positive-Negative-Momentum ``adapnm.py``.
  ``softplus_beta`` replaces the denominator :math:`x` by
  :math:`\mathrm{softplus}_\beta(x) = \log(1 + e^{\beta x})/\beta`
  (Ranger21's smoothing, :func:`ranger21`); ``None`` keeps :math:`x`.

  Args:
    b1: :math:`\beta_1` in ``[0, 1)``.
    b2: second-moment decay in ``[0, 1)``.
    b0: :math:`\beta_0 \ge 0` (reference 1).
    eps: added to the denominator, ``>= 0``.
    amsgrad: use the running maximum of :math:`v` (reference ``True``).
    softplus_beta: ``None`` or :math:`\beta > 0` of the softplus smoothing.
    mu_dtype: storage dtype of the two momentum buffers (``nu`` stays
      float32); ``None`` keeps float32. Computation is in float32.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`ScaleByAdapnmState`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.scale_by_adapnm()
    >>> g = jnp.array([2.0])
    >>> u, _ = tx.update(g, tx.init(g))  # 2 * 0.19 / sqrt(5) / 0.1 / 1
    >>> u.round(5)
    Array([1.69941], dtype=float32)

  References:
    Xie et al., `Positive-Negative Momentum: Manipulating Stochastic
    Gradient Noise to Improve Generalization
    <https://arxiv.org/abs/2103.17182>`_, ICML 2021.
  """
  where = 'scale_by_adapnm'
  _check_betas(where, b1, b0)
  validation.check_decay(where, 'b2', b2)
  validation.check_non_negative(where, 'eps', eps)
  if softplus_beta is not None:
    validation.check_positive(where, 'softplus_beta', softplus_beta)
  mu_dtype = validation.state_dtype(where, 'mu_dtype', mu_dtype)

  def init_fn(params):
    return ScaleByAdapnmState(
      count=jnp.zeros([], jnp.int32),
      mu_odd=alias.state_zeros(params, mu_dtype),
      mu_even=alias.state_zeros(params, mu_dtype),
      nu=alias.state_zeros(params),
      nu_max=alias.state_zeros(params) if amsgrad else None,
    )

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    count = optax.safe_int32_increment(state.count)
    t = count.astype(jnp.float32)
    odd = count % 2 == 1
    beta1 = alias.scalar_at(b1, state.count)
    beta2 = alias.scalar_at(b2, state.count)
    beta0 = alias.scalar_at(b0, state.count)
    e = alias.scalar_at(eps, state.count)
    bc1 = 1.0 - jnp.power(beta1, t)
    sqrt_bc2 = jnp.sqrt(1.0 - jnp.power(beta2, t))
    nu_max = state.nu_max if amsgrad else state.nu

    def one(g, a, b, v, vmax):
      g32 = g.astype(jnp.float32)
      d, a, b = pn_step(g32, odd, a, b, beta1, beta0)
      v = beta2 * v + (1.0 - beta2) * g32 * g32
      vmax = jnp.maximum(vmax, v) if amsgrad else v
      denom = jnp.sqrt(vmax) / sqrt_bc2 + e
      if softplus_beta is not None:
        sb = alias.scalar_at(softplus_beta, state.count)
        denom = _softplus(sb * denom) / sb
      return (d / (bc1 * denom)).astype(g.dtype), a, b, v, vmax

    u, a, b, v, vmax = trees.map_multi(
      one, 5, updates, state.mu_odd, state.mu_even, state.nu, nu_max
    )
    return u, ScaleByAdapnmState(
      count=count,
      mu_odd=a,
      mu_even=b,
      nu=v,
      nu_max=vmax if amsgrad else None,
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@metadata.describe(
  citations=('xie2021positive',),
  case=metadata.Case(
    kind='param',
    kwargs={'learning_rate': 0.05, 'amsgrad': False},
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'b0', 'weight_decay'),
    lr=metadata.cosine_decay(0.1, 500),
    rosenbrock=(metadata.cosine_decay(3e-2, 30000), 30000),
    static_args=('amsgrad',),
  ),
  benchmarks=(
    metadata.Benchmark(
      'transforms', 'adapnm', args=(1e-3,), peer=('AdaPNM', {'lr': 1e-3})
    ),
  ),
)
@validation.named_errors
def adapnm(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  b0: float = 1.0,
  eps: float = 1e-8,
  amsgrad: bool = True,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  *,
  decouple_weight_decay: bool = True,
  mask: Any = None,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AdaPNM optimiser: :func:`scale_by_adapnm`, weight decay, learning rate.

  Args:
    learning_rate: step size or schedule, ``>= 0`` (reference 1e-3).
    b1: :math:`\beta_1` in ``[0, 1)``.
    b2: second-moment decay in ``[0, 1)``.
    b0: :math:`\beta_0 \ge 0`.
    eps: added to the denominator, ``>= 0``.
    amsgrad: use the running maximum of :math:`v`.
    weight_decay: :math:`\lambda`, ``>= 0``.
    decouple_weight_decay: decoupled (reference default) instead of L2.
    mask: which params weight decay applies to (a tree of bools or a
      function of the params, as :func:`optax.add_decayed_weights`).
    mu_dtype: storage dtype of the momentum buffers (``None``: float32).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.adapnm(1e-3)
    >>> params = jnp.zeros(1)
    >>> u, _ = tx.update(jnp.array([2.0]), tx.init(params), params)
    >>> u
    Array([-0.00169941], dtype=float32)

  References:
    Xie et al., `Positive-Negative Momentum: Manipulating Stochastic
    Gradient Noise to Improve Generalization
    <https://arxiv.org/abs/2103.17182>`_, ICML 2021.
  """
  where = 'adapnm'
  validation.check_non_negative(where, 'learning_rate', learning_rate)
  validation.check_non_negative(where, 'weight_decay', weight_decay)
  return alias.with_decay_and_lr(
    scale_by_adapnm(b1, b2, b0, eps, amsgrad, mu_dtype=mu_dtype),
    learning_rate,
    weight_decay,
    mask,
    coupled=not decouple_weight_decay,
  )
