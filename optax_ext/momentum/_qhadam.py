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
"""QHAdam: quasi-hyperbolic Adam."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import alias
from optax_ext._src import metadata
from optax_ext._src import trees
from optax_ext._src import validation


class ScaleByQhadamState(NamedTuple):
  """State of :func:`scale_by_qhadam`.

  Attributes:
    count: int32 number of updates so far.
    mu: EMA of the gradient (``mu_dtype``, float32 by default).
    nu: float32 EMA of the squared gradient.
  """

  count: jax.Array
  mu: optax.Updates
  nu: optax.Updates


@metadata.describe(
  citations=('ma2019quasi',),
  case=metadata.Case(
    kind='param',
    kwargs={},
    hyperparams=('b1', 'b2', 'nu1', 'nu2', 'eps'),
    lr=0.05,
  ),
  row=metadata.Row(
    'momentum',
    'QHAdam',
    papers='[Ma & Yarats 2019](https://arxiv.org/abs/1810.06801)',
    also=('qhadam',),
  ),
)
def scale_by_qhadam(
  b1: float = 0.995,
  b2: float = 0.999,
  nu1: optax.ScalarOrSchedule = 0.7,
  nu2: optax.ScalarOrSchedule = 1.0,
  eps: float = 1e-8,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Quasi-hyperbolic Adam.

  With bias-corrected EMAs :math:`\hat m = m / (1 - \beta_1^t)`,
  :math:`\hat v = v / (1 - \beta_2^t)` of :math:`g` and :math:`g^2`:

  .. math::
    u = \frac{(1 - \nu_1) g + \nu_1 \hat m}
             {\sqrt{(1 - \nu_2) g^2 + \nu_2 \hat v} + \epsilon} .

  :math:`\epsilon` is outside the square root, after mixing (qhoptim).
  ``nu1 = nu2 = 1`` is :func:`optax.scale_by_adam`. Defaults are the QHAdam
  README's recommendation (``nu = (0.7, 1.0)``, ``beta = (0.995, 0.999)``);
  the qhoptim class defaults (``nu = (1, 1)``, ``beta = (0.9, 0.999)``) give
  plain Adam. Moments are computed in float32; ``mu`` is stored in
  ``mu_dtype`` (float32 by default), ``nu`` always in float32.

  Args:
    b1: first-moment decay in ``[0, 1)``.
    b2: second-moment decay in ``[0, 1)``.
    nu1: :math:`\nu_1` in ``[0, 1]``.
    nu2: :math:`\nu_2` in ``[0, 1]``.
    eps: added to the denominator, ``>= 0``.
    mu_dtype: storage dtype of the first moment (e.g. ``jnp.bfloat16``);
      ``None`` keeps float32.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`ScaleByQhadamState`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.scale_by_qhadam()
    >>> g = jnp.array([0.5, -2.0])
    >>> u, _ = tx.update(g, tx.init(g))  # first step: m = g, v = g^2
    >>> u
    Array([ 1., -1.], dtype=float32)

  References:
    Ma and Yarats, `Quasi-hyperbolic momentum and Adam for deep learning
    <https://arxiv.org/abs/1810.06801>`_, 2019.
  """
  where = 'scale_by_qhadam'
  validation.check_adam(where, b1, b2)
  validation.check_number(where, 'nu1', nu1, lower=0.0, upper=1.0)
  validation.check_number(where, 'nu2', nu2, lower=0.0, upper=1.0)
  validation.check_non_negative(where, 'eps', eps)
  mu_dtype = validation.state_dtype(where, 'mu_dtype', mu_dtype)

  def init_fn(params):
    return ScaleByQhadamState(
      count=jnp.zeros([], jnp.int32),
      mu=alias.state_zeros(params, mu_dtype),
      nu=alias.state_zeros(params),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    count = optax.safe_int32_increment(state.count)
    t = count.astype(jnp.float32)
    beta1, beta2 = (
      alias.scalar_at(b1, state.count),
      alias.scalar_at(b2, state.count),
    )
    w1, w2 = (
      alias.scalar_at(nu1, state.count),
      alias.scalar_at(nu2, state.count),
    )
    c1, c2 = 1.0 - jnp.power(beta1, t), 1.0 - jnp.power(beta2, t)
    e = alias.scalar_at(eps, state.count)

    def one(g, m, v):
      g32 = g.astype(jnp.float32)
      m = beta1 * m.astype(jnp.float32) + (1.0 - beta1) * g32
      v = beta2 * v + (1.0 - beta2) * g32 * g32
      num = (1.0 - w1) * g32 + w1 * (m / c1)
      den = jnp.sqrt((1.0 - w2) * g32 * g32 + w2 * (v / c2)) + e
      return (num / den).astype(g.dtype), m.astype(mu_dtype), v

    u, m, v = trees.map_multi(one, 3, updates, state.mu, state.nu)
    return u, ScaleByQhadamState(count=count, mu=m, nu=v)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@metadata.describe(
  citations=('ma2019quasi',),
  case=metadata.Case(
    kind='param',
    kwargs={'learning_rate': 0.05},
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'nu1', 'nu2'),
    lr=0.05,
  ),
  benchmarks=(
    metadata.Benchmark(
      'transforms', 'qhadam', args=(1e-3,), peer=('QHAdam', {'lr': 1e-3})
    ),
  ),
)
@validation.named_errors
def qhadam(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.995,
  b2: float = 0.999,
  nu1: optax.ScalarOrSchedule = 0.7,
  nu2: optax.ScalarOrSchedule = 1.0,
  eps: float = 1e-8,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  *,
  decouple_weight_decay: bool = False,
  mask: Any = None,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""QHAdam optimiser (QHAdamW with ``decouple_weight_decay=True``).

  :func:`scale_by_qhadam` with L2 weight decay added to the gradient
  (qhoptim's default) or decoupled, :math:`\theta \leftarrow \theta -
  \eta(u + \lambda\theta)` (QHAdamW).

  Args:
    learning_rate: step size or schedule, ``>= 0`` (qhoptim default 1e-3).
    b1: first-moment decay in ``[0, 1)``.
    b2: second-moment decay in ``[0, 1)``.
    nu1: :math:`\nu_1` in ``[0, 1]``.
    nu2: :math:`\nu_2` in ``[0, 1]``.
    eps: added to the denominator, ``>= 0``.
    weight_decay: :math:`\lambda`, ``>= 0``.
    decouple_weight_decay: decoupled (AdamW-style) instead of L2 decay.
    mask: which params weight decay applies to (a tree of bools or a
      function of the params, as :func:`optax.add_decayed_weights`).
    mu_dtype: storage dtype of the first moment (``None``: float32).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.qhadam(1e-3)
    >>> params = jnp.array([1.0, 1.0])
    >>> u, _ = tx.update(jnp.array([0.5, -2.0]), tx.init(params), params)
    >>> u
    Array([-0.001,  0.001], dtype=float32)

  References:
    Ma and Yarats, `Quasi-hyperbolic momentum and Adam for deep learning
    <https://arxiv.org/abs/1810.06801>`_, 2019.
  """
  where = 'qhadam'
  validation.check_non_negative(where, 'learning_rate', learning_rate)
  validation.check_non_negative(where, 'weight_decay', weight_decay)
  return alias.with_decay_and_lr(
    scale_by_qhadam(b1, b2, nu1, nu2, eps, mu_dtype),
    learning_rate,
    weight_decay,
    mask,
    coupled=not decouple_weight_decay,
  )
