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
"""Quasi-hyperbolic momentum (QHM)."""

from typing import Any

import optax

from optax_ext._src import alias
from optax_ext._src import metadata
from optax_ext._src import validation
from optax_ext.momentum import _mixture


@metadata.describe(
  citations=('ma2019quasi',),
  case=metadata.Case(
    kind='param',
    kwargs={'decay': 0.9, 'nu': 0.7},
    hyperparams=('decay', 'nu'),
    rosenbrock=(3e-3, 20000),
  ),
  row=metadata.Row(
    'momentum',
    'quasi-hyperbolic momentum',
    papers='[Ma & Yarats 2019](https://arxiv.org/abs/1810.06801)',
    also=('qhm',),
  ),
)
def scale_by_qhm(
  decay: optax.ScalarOrSchedule = 0.999,
  nu: optax.ScalarOrSchedule = 0.7,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Quasi-hyperbolic momentum: a convex mix of gradient and momentum.

  .. math::
    b \leftarrow \beta b + (1 - \beta) g, \qquad u = (1 - \nu) g + \nu b .

  ``nu = 0`` is SGD, ``nu = 1`` dampened momentum (``optax.ema(decay,
  debias=False)``), ``nu = decay`` dampened Nesterov momentum. The buffer is
  *dampened*: a PyTorch-momentum learning rate :math:`\alpha` corresponds to
  :math:`\alpha / (1 - \beta)` here (the QHM paper's convention). Built on
  :func:`scale_by_momentum_mixture` (one buffer, weight ``nu``, gradient
  weight ``1 - nu``).

  Args:
    decay: :math:`\beta` in ``[0, 1)``; the README's starting point 0.999.
    nu: :math:`\nu` in ``[0, 1]``; the README's starting point 0.7.
    mu_dtype: storage dtype of the buffer(s) (see
      :func:`scale_by_momentum_mixture`: ``None`` is float32).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`ScaleByMomentumMixtureState`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.scale_by_qhm(decay=0.5, nu=0.5)
    >>> g = jnp.array([2.0])
    >>> u, _ = tx.update(g, tx.init(g))
    >>> u  # 0.5 * 2 + 0.5 * (0.5 * 2)
    Array([1.5], dtype=float32)

  References:
    Ma and Yarats, `Quasi-hyperbolic momentum and Adam for deep learning
    <https://arxiv.org/abs/1810.06801>`_, 2019.
  """
  where = 'scale_by_qhm'
  validation.check_decay(where, 'decay', decay)
  validation.check_number(where, 'nu', nu, lower=0.0, upper=1.0)
  grad_coefficient = (
    (lambda s: 1.0 - alias.scalar_at(nu, s)) if callable(nu) else (1.0 - nu)
  )
  return _mixture.scale_by_momentum_mixture(
    decays=(decay,),
    coefficients=(nu,),
    grad_coefficient=grad_coefficient,
    dampening=True,
    mu_dtype=mu_dtype,
  )


@metadata.describe(
  citations=('ma2019quasi',),
  case=metadata.Case(
    kind='param',
    kwargs={'learning_rate': 0.1, 'decay': 0.9},
    alias=True,
    hyperparams=('learning_rate', 'decay', 'nu', 'weight_decay'),
    rosenbrock=(3e-3, 20000),
  ),
  benchmarks=(
    metadata.Benchmark(
      'transforms',
      'qhm',
      args=(1e-3,),
      peer=('QHM', {'lr': 1e-3, 'nu': 0.7, 'momentum': 0.999}),
    ),
  ),
)
@validation.named_errors
def qhm(
  learning_rate: optax.ScalarOrSchedule,
  decay: optax.ScalarOrSchedule = 0.999,
  nu: optax.ScalarOrSchedule = 0.7,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  *,
  decouple_weight_decay: bool = False,
  mask: Any = None,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""QHM optimiser: :func:`scale_by_qhm`, weight decay, learning rate.

  By default (qhoptim's ``weight_decay_type='grad'``) weight decay adds
  :math:`\lambda\theta` to the gradient before the momentum (L2);
  ``decouple_weight_decay=True`` (qhoptim's ``'direct'``) decays the
  parameters directly, :math:`\theta \leftarrow \theta - \eta\lambda\theta`.

  Args:
    learning_rate: step size or schedule, ``>= 0`` (no default; qhoptim's
      README starts from 1.0 with ``decay=0.999``, ``nu=0.7``).
    decay: :math:`\beta` in ``[0, 1)``.
    nu: :math:`\nu` in ``[0, 1]``.
    weight_decay: :math:`\lambda`, ``>= 0``.
    decouple_weight_decay: decoupled instead of L2 decay.
    mask: which params weight decay applies to (a tree of bools or a
      function of the params, as :func:`optax.add_decayed_weights`).
    mu_dtype: storage dtype of the buffer(s) (see
      :func:`scale_by_momentum_mixture`: ``None`` is float32).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.qhm(1.0, decay=0.5, nu=0.5)
    >>> params = jnp.array([1.0])
    >>> u, _ = tx.update(jnp.array([2.0]), tx.init(params), params)
    >>> u
    Array([-1.5], dtype=float32)

  References:
    Ma and Yarats, `Quasi-hyperbolic momentum and Adam for deep learning
    <https://arxiv.org/abs/1810.06801>`_, 2019.
  """
  where = 'qhm'
  validation.check_non_negative(where, 'learning_rate', learning_rate)
  validation.check_non_negative(where, 'weight_decay', weight_decay)
  return alias.with_decay_and_lr(
    scale_by_qhm(decay, nu, mu_dtype),
    learning_rate,
    weight_decay,
    mask,
    coupled=not decouple_weight_decay,
  )
