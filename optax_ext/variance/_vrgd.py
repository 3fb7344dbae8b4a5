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
"""VRGD aliases: optax optimisers with GSNR-scaled updates.

Each alias is an :class:`optax_ext.Aggregator`: ``update`` takes the gradient
population as its updates, feeds the mean gradient to the optax chain and the
population to :func:`scale_by_gsnr` (as ``group_grads``).
"""

from typing import Any

import optax

from optax_ext._src import base
from optax_ext._src import metadata
from optax_ext._src import population as pop_lib
from optax_ext._src import validation
from optax_ext.variance import _gsnr
from optax_ext.variance import _mean_with_population

_GSNR_DOC = """gamma_min: lower bound of the GSNR factor, ``> 0``.
    gamma_max: upper bound of the GSNR factor, ``>= gamma_min``.
    cap: cap on the GSNR before normalising, ``> 0``.
    eps_rel: relative variance floor, ``>= 0``.
    ema_decay: EMA decay of the factor, in ``[0, 1)``.
    normalize: ``'per_leaf'`` or ``'global'``.
    axes: where the members of the population live."""


def _check_common(where, learning_rate, **ranges):
  validation.check_number(where, 'learning_rate', learning_rate, lower=0.0)
  for name, (value, lo, hi, hi_inclusive) in ranges.items():
    # Handed to optax's Adam/LAMB/LARS, which take numbers only.
    validation.check_number(
      where,
      name,
      value,
      lower=lo,
      upper=hi,
      upper_inclusive=hi_inclusive,
      allow_schedule=False,
    )


def _validated_adam(where, learning_rate, b1, b2, eps, eps_root, weight_decay):
  """:func:`optax.scale_by_adam` after checking the Adam-family
  hyper-parameters."""
  _check_common(
    where,
    learning_rate,
    b1=(b1, 0.0, 1.0, False),
    b2=(b2, 0.0, 1.0, False),
    eps=(eps, 0.0, None, True),
    eps_root=(eps_root, 0.0, None, True),
    weight_decay=(weight_decay, 0.0, None, True),
  )
  return optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root)


@metadata.describe(
  citations=('jiang2023accelerating', 'liu2020understanding'),
  properties=metadata.Properties(robust=False),
  case=metadata.Case(
    kind='aggregator',
    kwargs={'learning_rate': 0.01, 'momentum': 0.9},
    alias=True,
    hyperparams=('learning_rate', 'momentum', 'gamma_min'),
    # The GSNR factor can reach 10x: keep 10 * lr * curvature < 2.
    lr=0.002,
    rosenbrock=(1e-4, 20000),
  ),
  row=metadata.Row(
    'GSNR',
    'VR-SGD, VR-Adam, VR-LAMB, VR-LARS',
    papers='[Jiang et al. 2023](https://arxiv.org/abs/2309.13681)',
    also=('vr_adam', 'vr_lamb', 'vr_lars'),
  ),
)
@validation.named_errors
def vr_sgd(
  learning_rate: optax.ScalarOrSchedule,
  momentum: float | None = None,
  nesterov: bool = False,
  *,
  gamma_min: float = 0.1,
  gamma_max: float = 10.0,
  cap: float = 100.0,
  eps_rel: float = 1e-8,
  ema_decay: float = 0.0,
  normalize: str = 'per_leaf',
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""VR-SGD: SGD on the GSNR-scaled mean gradient.

  .. math::
    d = \hat r \odot \bar g, \qquad
    \text{then } \texttt{optax.sgd(learning\_rate, momentum, nesterov)} .

  Equals ``optax.chain(scale_by_gsnr(...), optax.sgd(...))`` fed the mean
  gradient and the population; see :func:`scale_by_gsnr` for :math:`\hat r`
  and the choices made where the paper is silent.

  Args:
    learning_rate: step size or schedule, ``>= 0``.
    momentum: heavy-ball decay in ``[0, 1]`` or ``None`` (no momentum).
    nesterov: Nesterov momentum.
    {gsnr}

  Returns:
    An :class:`optax_ext.Aggregator`; ``update`` takes the population.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import variance
    >>> tx = variance.vr_sgd(0.1)
    >>> params = jnp.zeros(2)
    >>> population = jnp.array([[1., 1.], [2., -1.], [3., 1.], [2., -1.]])
    >>> updates, state = tx.update(population, tx.init(params), params)
    >>> updates
    Array([-0.4, -0. ], dtype=float32)

  References:
    Jiang et al., `Accelerating Large Batch Training via Gradient Signal to
    Noise Ratio (GSNR) <https://arxiv.org/abs/2309.13681>`_, 2023.
  """
  where = 'vr_sgd'
  _check_common(where, learning_rate)
  if momentum is not None:
    validation.check_number(
      where, 'momentum', momentum, lower=0.0, upper=1.0, allow_schedule=False
    )
  inner = optax.chain(
    _gsnr.scale_by_gsnr(
      gamma_min, gamma_max, cap, eps_rel, ema_decay, normalize, axes
    ),
    optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov),
  )
  return _mean_with_population.mean_with_population(where, inner, axes)


@metadata.describe(
  citations=('jiang2023accelerating', 'liu2020understanding'),
  properties=metadata.Properties(robust=False),
  case=metadata.Case(
    kind='aggregator',
    kwargs={'learning_rate': 0.01},
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'eps'),
    lr=0.01,
    rosenbrock=(3e-3, 10000),
    strict_promotion=False,
  ),
)
@validation.named_errors
def vr_adam(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_root: float = 0.0,
  weight_decay: float = 0.0,
  *,
  mask: Any = None,
  gamma_min: float = 0.1,
  gamma_max: float = 10.0,
  cap: float = 100.0,
  eps_rel: float = 1e-8,
  ema_decay: float = 0.0,
  normalize: str = 'per_leaf',
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""VR-Adam: Adam whose direction is scaled by the GSNR factor.

  .. math::
    d = \hat r \odot \mathrm{Adam}(\bar g), \qquad
    \theta \leftarrow \theta - \eta (d + \lambda \theta) .

  Chain: :func:`optax.scale_by_adam` on the mean gradient,
  :func:`scale_by_gsnr`, :func:`optax.add_decayed_weights`,
  :func:`optax.scale_by_learning_rate`. The factor scales Adam's *output*:
  fed into Adam's moments it would be largely cancelled by the
  second-moment normalisation. With ``weight_decay=0`` and
  ``gamma_min = gamma_max = 1`` this is :func:`optax.adam`.

  .. note::
    Where the factor is applied (after Adam, before decoupled weight decay) is
    our reading; the paper's algorithm box was unavailable.

  Args:
    learning_rate: step size or schedule, ``>= 0``.
    b1: first-moment decay in ``[0, 1)``.
    b2: second-moment decay in ``[0, 1)``.
    eps: added to the denominator, ``>= 0``.
    eps_root: added inside the square root, ``>= 0``.
    weight_decay: decoupled weight decay, ``>= 0``.
    mask: :func:`optax.add_decayed_weights` mask.
    {gsnr}

  Returns:
    An :class:`optax_ext.Aggregator`; ``update`` takes the population.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import variance
    >>> tx = variance.vr_adam(0.1)
    >>> params = jnp.zeros(2)
    >>> population = jnp.array([[1., 1.], [2., -1.], [3., 1.], [2., -1.]])
    >>> updates, state = tx.update(population, tx.init(params), params)
    >>> updates
    Array([-0.2, -0. ], dtype=float32)

  References:
    Jiang et al., `Accelerating Large Batch Training via Gradient Signal to
    Noise Ratio (GSNR) <https://arxiv.org/abs/2309.13681>`_, 2023.

    Kingma and Ba, `Adam: A Method for Stochastic Optimization
    <https://arxiv.org/abs/1412.6980>`_, 2014.
  """
  where = 'vr_adam'
  inner = optax.chain(
    _validated_adam(where, learning_rate, b1, b2, eps, eps_root, weight_decay),
    _gsnr.scale_by_gsnr(
      gamma_min, gamma_max, cap, eps_rel, ema_decay, normalize, axes
    ),
    optax.add_decayed_weights(weight_decay, mask),
    optax.scale_by_learning_rate(learning_rate),
  )
  return _mean_with_population.mean_with_population(where, inner, axes)


# Battery case: Trust-ratio steps have near-fixed length: decay the rate to
# settle.
@metadata.describe(
  citations=('jiang2023accelerating', 'liu2020understanding'),
  properties=metadata.Properties(robust=False),
  case=metadata.Case(
    kind='aggregator',
    kwargs={'learning_rate': 0.01},
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'weight_decay'),
    lr=0.01,
    rosenbrock=(metadata.cosine_decay(1e-2, 10000), 10000),
    strict_promotion=False,
  ),
)
@validation.named_errors
def vr_lamb(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-6,
  eps_root: float = 0.0,
  weight_decay: float = 0.0,
  *,
  mask: Any = None,
  gamma_min: float = 0.1,
  gamma_max: float = 10.0,
  cap: float = 100.0,
  eps_rel: float = 1e-8,
  ema_decay: float = 0.0,
  normalize: str = 'per_leaf',
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""VR-LAMB: LAMB with the GSNR factor applied before the trust ratio.

  Chain: :func:`optax.scale_by_adam`, :func:`scale_by_gsnr`,
  :func:`optax.add_decayed_weights`, :func:`optax.scale_by_trust_ratio`,
  :func:`optax.scale_by_learning_rate` (:func:`optax.lamb` with the factor
  inserted). The trust ratio still fixes each layer's step norm; with a
  per-leaf mean of about one the factor redistributes the step within the
  layer. Weight decay is not GSNR-scaled. With ``gamma_min = gamma_max = 1``
  this is :func:`optax.lamb`.

  .. note::
    The insertion point is our reading; the paper's algorithm box was
    unavailable.

  Args:
    learning_rate: step size or schedule, ``>= 0``.
    b1: first-moment decay in ``[0, 1)``.
    b2: second-moment decay in ``[0, 1)``.
    eps: added to the denominator, ``>= 0``.
    eps_root: added inside the square root, ``>= 0``.
    weight_decay: decoupled weight decay, ``>= 0``.
    mask: :func:`optax.add_decayed_weights` mask.
    {gsnr}

  Returns:
    An :class:`optax_ext.Aggregator`; ``update`` takes the population.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import variance
    >>> tx = variance.vr_lamb(0.1)
    >>> params = jnp.ones(2)
    >>> population = jnp.array([[1., 1.], [2., -1.], [3., 1.], [2., -1.]])
    >>> updates, state = tx.update(population, tx.init(params), params)
    >>> updates.shape
    (2,)

  References:
    Jiang et al., `Accelerating Large Batch Training via Gradient Signal to
    Noise Ratio (GSNR) <https://arxiv.org/abs/2309.13681>`_, 2023.

    You et al., `Large Batch Optimization for Deep Learning: Training BERT in
    76 minutes <https://arxiv.org/abs/1904.00962>`_, 2019.
  """
  where = 'vr_lamb'
  inner = optax.chain(
    _validated_adam(where, learning_rate, b1, b2, eps, eps_root, weight_decay),
    _gsnr.scale_by_gsnr(
      gamma_min, gamma_max, cap, eps_rel, ema_decay, normalize, axes
    ),
    optax.add_decayed_weights(weight_decay, mask),
    optax.scale_by_trust_ratio(),
    optax.scale_by_learning_rate(learning_rate),
  )
  return _mean_with_population.mean_with_population(where, inner, axes)


@metadata.describe(
  citations=('jiang2023accelerating', 'liu2020understanding'),
  properties=metadata.Properties(robust=False),
  case=metadata.Case(
    kind='aggregator',
    kwargs={'learning_rate': 1.0},
    alias=True,
    hyperparams=('learning_rate', 'momentum', 'trust_coefficient'),
    lr=1.0,
    rosenbrock=(metadata.cosine_decay(1.0, 10000), 10000),
  ),
)
@validation.named_errors
def vr_lars(
  learning_rate: optax.ScalarOrSchedule,
  weight_decay: float = 0.0,
  weight_decay_mask: Any = True,
  trust_coefficient: float = 0.001,
  eps: float = 0.0,
  trust_ratio_mask: Any = True,
  momentum: float = 0.9,
  nesterov: bool = False,
  *,
  gamma_min: float = 0.1,
  gamma_max: float = 10.0,
  cap: float = 100.0,
  eps_rel: float = 1e-8,
  ema_decay: float = 0.0,
  normalize: str = 'per_leaf',
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""VR-LARS: :func:`optax.lars` applied to the GSNR-scaled mean gradient.

  Chain: :func:`scale_by_gsnr`, then :func:`optax.lars` itself (weight decay,
  trust ratio, learning rate, momentum, in optax's order). The factor acts
  before weight decay and the trust ratio, so decay is not GSNR-scaled and
  each layer's step norm is still set by the trust ratio. With
  ``gamma_min = gamma_max = 1`` this is :func:`optax.lars`.

  .. note::
    The insertion point is our reading; the paper's algorithm box was
    unavailable.

  Args:
    learning_rate: step size or schedule, ``>= 0``.
    weight_decay: weight decay, ``>= 0``.
    weight_decay_mask: :func:`optax.lars` weight-decay mask.
    trust_coefficient: LARS trust coefficient, ``> 0``.
    eps: added to the trust-ratio denominator, ``>= 0``.
    trust_ratio_mask: :func:`optax.lars` trust-ratio mask.
    momentum: momentum decay in ``[0, 1]``.
    nesterov: Nesterov momentum.
    {gsnr}

  Returns:
    An :class:`optax_ext.Aggregator`; ``update`` takes the population.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import variance
    >>> tx = variance.vr_lars(0.1)
    >>> params = jnp.ones(2)
    >>> population = jnp.array([[1., 1.], [2., -1.], [3., 1.], [2., -1.]])
    >>> updates, state = tx.update(population, tx.init(params), params)
    >>> updates.shape
    (2,)

  References:
    Jiang et al., `Accelerating Large Batch Training via Gradient Signal to
    Noise Ratio (GSNR) <https://arxiv.org/abs/2309.13681>`_, 2023.

    You et al., `Large Batch Training of Convolutional Networks
    <https://arxiv.org/abs/1708.03888>`_, 2017.
  """
  where = 'vr_lars'
  _check_common(
    where,
    learning_rate,
    weight_decay=(weight_decay, 0.0, None, True),
    eps=(eps, 0.0, None, True),
    momentum=(momentum, 0.0, 1.0, True),
  )
  validation.check_positive(
    where, 'trust_coefficient', trust_coefficient, allow_schedule=False
  )
  inner = optax.chain(
    _gsnr.scale_by_gsnr(
      gamma_min, gamma_max, cap, eps_rel, ema_decay, normalize, axes
    ),
    optax.lars(
      learning_rate,
      weight_decay=weight_decay,
      weight_decay_mask=weight_decay_mask,
      trust_coefficient=trust_coefficient,
      eps=eps,
      trust_ratio_mask=trust_ratio_mask,
      momentum=momentum,
      nesterov=nesterov,
    ),
  )
  return _mean_with_population.mean_with_population(where, inner, axes)


for _fn in (vr_sgd, vr_adam, vr_lamb, vr_lars):
  _fn.__doc__ = _fn.__doc__.replace('{gsnr}', _GSNR_DOC)
del _fn
