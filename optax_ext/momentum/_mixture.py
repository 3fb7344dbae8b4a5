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
"""The N-EMA mixture core: a weighted sum of exponential moving averages."""

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import alias
from optax_ext._src import metadata
from optax_ext._src import validation


class ScaleByMomentumMixtureState(NamedTuple):
  """State of :func:`scale_by_momentum_mixture`.

  Attributes:
    count: int32 number of updates so far.
    mus: one param-shaped buffer per decay (``None`` for a decay that is a
      static zero: that buffer is the gradient itself and is not stored). Read
      the mixture components with ``optax.tree.get(state, 'mus')``.
  """

  count: jax.Array
  mus: tuple[Any, ...]


def _is_static_zero(decay) -> bool:
  return (
    not callable(decay)
    and not isinstance(decay, jax.core.Tracer)
    and float(decay) == 0.0
  )


def _buffer_dtype(mu_dtype):
  # One rule for every factory: ``None`` stores float32 (bfloat16 cannot
  # represent a slow EMA's per-step change, and the saving is one buffer).
  return jnp.dtype(jnp.float32 if mu_dtype is None else mu_dtype)


@metadata.describe(
  citations=('ma2019quasi', 'lucas2019aggregated'),
  case=metadata.Case(
    kind='param',
    kwargs=lambda: {
      'decays': (0.5, 0.9),
      'coefficients': (0.5, 0.4),
      'grad_coefficient': 0.1,
    },
    hyperparams=('grad_coefficient',),
    rosenbrock=(3e-3, 20000),
  ),
  row=metadata.Row(
    'momentum',
    'N-EMA mixture core',
    papers='our design (special cases: [QHM](https://arxiv.org/abs/1810.06801), [AggMo](https://arxiv.org/abs/1804.00325))',
    also=('momentum_mixture',),
  ),
)
def scale_by_momentum_mixture(
  decays: Sequence[optax.ScalarOrSchedule],
  coefficients: Sequence[optax.ScalarOrSchedule],
  grad_coefficient: optax.ScalarOrSchedule = 0.0,
  dampening: bool | Sequence[bool] = True,
  debias: bool | Sequence[bool] = False,
  nesterov: bool = False,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""A weighted mixture of N exponential moving averages of the gradient.

  With :math:`s` the step count before the update and :math:`t = s + 1`:

  .. math::
    m_i \leftarrow \beta_i(s) m_i + c_i g, \quad
    c_i = \begin{cases} 1 - \beta_i & \text{dampened} \\ 1 &
    \text{undampened}\end{cases}, \quad
    \hat m_i = \begin{cases} m_i / (1 - \beta_i^t) & \text{debiased} \\ m_i
    \end{cases}

  .. math::
    u = w_g(s)\, g + \sum_i w_i(s)\, \tilde m_i, \qquad
    \tilde m_i = \begin{cases} \beta_i \hat m_i + c_i g & \text{Nesterov} \\
    \hat m_i \end{cases}

  This is the core that QHM, AggMo and the other mixtures reuse; the
  :math:`w_i` are mixing coefficients (not per-member weights, which the
  library's ``weights`` always mean). Special cases (tested): one
  undampened buffer with coefficient 1 is :func:`optax.trace`
  (with ``nesterov=True``, ``optax.trace(nesterov=True)``); ``(beta,)``,
  coefficients ``(nu,)``, ``grad_coefficient = 1 - nu``, dampened is QHM;
  ``K`` undampened buffers with coefficients ``1/K`` is AggMo; ``(b1, b3)``,
  coefficients ``(1, alpha)``, ``debias=(True, False)``, dampened is
  AdEMAMix's numerator.

  .. note::
    The paper-less general form is our design. For Nesterov we apply the
    look-ahead :math:`\beta_i \hat m_i + c_i g` after debiasing, which is
    exact for undampened, non-debiased buffers (:func:`optax.trace`).

  Cost: one param-sized buffer per non-zero decay; a decay that is a static
  ``0.0`` is not stored. One read and write of each buffer per step.

  Args:
    decays: the :math:`\beta_i`, each in ``[0, 1)`` or a schedule of the
      step count.
    coefficients: the :math:`w_i`, same length as ``decays``; numbers or
      schedules.
    grad_coefficient: :math:`w_g`, the coefficient of the raw gradient.
    dampening: whether each buffer is dampened (``c_i = 1 - beta_i``); a bool
      or one bool per buffer.
    debias: whether each buffer is bias-corrected; a bool or one per buffer.
      Not allowed with a scheduled decay.
    nesterov: use the Nesterov look-ahead of each buffer.
    mu_dtype: dtype of the buffers. ``None``: float32, as every factory of
      the library (bfloat16 cannot represent a slow buffer's per-step
      change).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`ScaleByMomentumMixtureState`; updates keep the gradient's dtype.

  Raises:
    ValueError: for decays outside ``[0, 1)``, mismatched lengths, or
      ``debias`` with a scheduled decay.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.scale_by_momentum_mixture(
    ...     decays=(0.5, 0.9), coefficients=(0.5, 0.5), dampening=False)
    >>> g = jnp.array([1.0, -2.0])
    >>> state = tx.init(g)
    >>> u, state = tx.update(g, state)
    >>> u, state = tx.update(g, state)
    >>> u  # 0.5 * (1.5 g) + 0.5 * (1.9 g)
    Array([ 1.7, -3.4], dtype=float32)

  References:
    Lucas et al., `Aggregated Momentum: Stability Through Passive Damping
    <https://arxiv.org/abs/1804.00325>`_, 2019.

    Ma and Yarats, `Quasi-hyperbolic momentum and Adam for deep learning
    <https://arxiv.org/abs/1810.06801>`_, 2019.
  """
  where = 'scale_by_momentum_mixture'
  decays, coefficients = tuple(decays), tuple(coefficients)
  if not decays:
    raise ValueError(f'{where}: `decays` must be a non-empty sequence, got ().')
  validation.check_same_length(
    where, ('decays', 'coefficients'), (decays, coefficients)
  )
  n = len(decays)
  damp = validation.per_item_bools(where, 'dampening', dampening, n)
  unbias = validation.per_item_bools(where, 'debias', debias, n)
  for i, (d, w) in enumerate(zip(decays, coefficients, strict=True)):
    validation.check_decay(where, f'decays[{i}]', d)
    validation.check_number(where, f'coefficients[{i}]', w)
    if unbias[i] and callable(d):
      raise ValueError(
        f'{where}: `debias[{i}]` cannot be used with a scheduled '
        f'`decays[{i}]` (the bias correction assumes a constant decay).'
      )
  validation.check_number(where, 'grad_coefficient', grad_coefficient)
  if mu_dtype is not None:
    mu_dtype = validation.state_dtype(where, 'mu_dtype', mu_dtype)
  validation.check_bool(where, 'nesterov', nesterov)
  stored = tuple(not _is_static_zero(d) for d in decays)

  def init_fn(params):
    mus = tuple(
      jax.tree.map(lambda p: jnp.zeros_like(p, _buffer_dtype(mu_dtype)), params)
      if keep
      else None
      for keep in stored
    )
    return ScaleByMomentumMixtureState(count=jnp.zeros([], jnp.int32), mus=mus)

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    s = state.count
    t = optax.safe_int32_increment(s).astype(jnp.float32)
    g32 = jax.tree.map(lambda g: g.astype(jnp.float32), updates)
    w_g = alias.scalar_at(grad_coefficient, s)
    total = jax.tree.map(lambda g: w_g * g, g32)
    new_mus = []
    for i in range(n):
      beta = alias.scalar_at(decays[i], s)
      c = 1.0 - beta if damp[i] else jnp.ones([], jnp.float32)
      if stored[i]:
        m = jax.tree.map(
          lambda m, g, beta=beta, c=c: beta * m.astype(jnp.float32) + c * g,
          state.mus[i],
          g32,
        )
        new_mus.append(
          jax.tree.map(lambda m, old: m.astype(old.dtype), m, state.mus[i])
        )
      else:
        m = jax.tree.map(lambda g, c=c: c * g, g32)
        new_mus.append(None)
      if unbias[i]:
        corr = 1.0 - jnp.power(beta, t)
        m = jax.tree.map(lambda m, corr=corr: m / corr, m)
      if nesterov:
        m = jax.tree.map(lambda m, g, beta=beta, c=c: beta * m + c * g, m, g32)
      w = alias.scalar_at(coefficients[i], s)
      total = jax.tree.map(lambda a, m, w=w: a + w * m, total, m)
    out = jax.tree.map(lambda u, g: u.astype(g.dtype), total, updates)
    return out, ScaleByMomentumMixtureState(
      count=optax.safe_int32_increment(s), mus=tuple(new_mus)
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@metadata.describe(
  citations=('ma2019quasi', 'lucas2019aggregated'),
  case=metadata.Case(
    kind='param',
    kwargs=lambda: {
      'learning_rate': 0.1,
      'decays': (0.0, 0.9),
      'coefficients': (0.5, 0.5),
    },
    alias=True,
    hyperparams=('learning_rate', 'grad_coefficient', 'weight_decay'),
    rosenbrock=(3e-3, 20000),
  ),
  benchmarks=(
    metadata.Benchmark(
      'transforms',
      'momentum_mixture(2 EMAs)',
      args=(
        1e-3,
        (0.9, 0.99),
        (0.5, 0.5),
      ),
    ),
  ),
)
@validation.named_errors
def momentum_mixture(
  learning_rate: optax.ScalarOrSchedule,
  decays: Sequence[optax.ScalarOrSchedule],
  coefficients: Sequence[optax.ScalarOrSchedule],
  grad_coefficient: optax.ScalarOrSchedule = 0.0,
  dampening: bool | Sequence[bool] = True,
  debias: bool | Sequence[bool] = False,
  nesterov: bool = False,
  *,
  mu_dtype: Any = None,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  mask: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""SGD along a mixture of N EMAs: :math:`\theta \leftarrow \theta -
  \eta (u + \lambda \theta)`.

  ``optax.chain(scale_by_momentum_mixture(...), optax.add_decayed_weights(
  weight_decay, mask), optax.scale_by_learning_rate(learning_rate))``; see
  :func:`scale_by_momentum_mixture` for :math:`u`.

  Args:
    learning_rate: step size or schedule, ``>= 0``.
    decays: EMA decays in ``[0, 1)`` (or schedules).
    coefficients: one mixing coefficient per decay.
    grad_coefficient: coefficient of the raw gradient.
    dampening: bool or one per buffer.
    debias: bool or one per buffer.
    nesterov: Nesterov look-ahead.
    mu_dtype: buffer dtype (see :func:`scale_by_momentum_mixture`).
    weight_decay: decoupled weight decay, ``>= 0``.
    mask: :func:`optax.add_decayed_weights` mask.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import momentum
    >>> tx = momentum.momentum_mixture(0.1, decays=(0.9,), coefficients=(1.0,),
    ...                                dampening=False)
    >>> params = jnp.array([1.0])
    >>> u, _ = tx.update(jnp.array([2.0]), tx.init(params), params)
    >>> u
    Array([-0.2], dtype=float32)

  References:
    Lucas et al., `Aggregated Momentum: Stability Through Passive Damping
    <https://arxiv.org/abs/1804.00325>`_, 2019.
  """
  where = 'momentum_mixture'
  validation.check_non_negative(where, 'learning_rate', learning_rate)
  validation.check_non_negative(where, 'weight_decay', weight_decay)
  return alias.with_decay_and_lr(
    scale_by_momentum_mixture(
      decays,
      coefficients,
      grad_coefficient,
      dampening,
      debias,
      nesterov,
      mu_dtype,
    ),
    learning_rate,
    weight_decay,
    mask,
  )
