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
"""XGrad: gradients at weights predicted by the optimiser's own rule."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import alias
from optax_ext._src import metadata
from optax_ext._src import trees
from optax_ext._src import validation
from optax_ext.momentum import _mixture


class XgradState(NamedTuple):
  """State of :func:`xgrad`.

  Attributes:
    count: int32 number of updates so far.
    true_params: the true iterate :math:`\\theta_t` in float32 (the model's
      params hold the predicted point :math:`\\hat\\theta_t`). Evaluate and
      checkpoint these: :func:`xgrad_true_params`.
    direction_state: the direction transform's state.
  """

  count: jax.Array
  true_params: optax.Params
  direction_state: optax.OptState


@metadata.describe(
  citations=('guan2023xgrad',),
  case=metadata.Case(
    kind='wrapper',
    kwargs=lambda: {'direction': optax.trace(0.9), 'learning_rate': 0.02},
    hyperparams=('learning_rate', 'steps_ahead'),
    lr=0.02,
    rosenbrock=(5e-4, 20000),
    optimizer=lambda lr: xgrad(optax.trace(0.9), lr),
  ),
  row=metadata.Row(
    'momentum',
    'XGrad weight prediction (SGD, Adam, AdamW, any direction)',
    papers='[Guan et al. 2023](https://arxiv.org/abs/2305.18240)',
    also=('xgrad_sgd', 'xgrad_adam', 'xgrad_adamw', 'xgrad_true_params'),
  ),
)
def xgrad(
  direction: optax.GradientTransformation,
  learning_rate: optax.ScalarOrSchedule,
  steps_ahead: float = 1.0,
  weight_decay: optax.ScalarOrSchedule = 0.0,
) -> optax.GradientTransformationExtraArgs:
  r"""Weight prediction around an optimiser's direction (XGrad).

  With the direction :math:`\Delta_t` of ``direction`` (e.g.
  ``optax.scale_by_adam()``; it sees the true params) and :math:`s` =
  ``steps_ahead``:

  .. math::
    \theta_{t+1} = \theta_t - \eta_t(\Delta_t + \lambda\theta_t), \qquad
    \hat\theta_{t+1} = \theta_{t+1} - s\,\eta_{t+1}\Delta_t ,

  and the next gradient is taken at the predicted :math:`\hat\theta_{t+1}`.
  :math:`\Delta_t` is the direction the optimiser would take from its new
  state (SGD's momentum buffer; Adam's :math:`\hat m/(\sqrt{\hat v} +
  \epsilon)`), as the reference's ``load_predicted_weights``; decoupled decay
  is not predicted, as there. No prediction before the first step.

  **Shifted-parameter contract** (as :func:`igt`): the params you hold and
  differentiate at are :math:`\hat\theta`; ``update(g, state, params)``
  needs them and returns :math:`\hat\theta_{t+1} - \hat\theta_t`. The true
  iterate is in the state: :func:`xgrad_true_params`. ``steps_ahead=0`` is
  the base optimiser.

  .. note::
    The reference code (guanleics/XGrad) does not fix :math:`s`; 1 is this
    library's default.

  Cost: one float32 copy of the params plus the direction's state.

  Args:
    direction: a transform returning the step direction (no learning rate).
    learning_rate: :math:`\eta`, number or schedule, ``>= 0``.
    steps_ahead: :math:`s \ge 0`.
    weight_decay: decoupled :math:`\lambda \ge 0`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`XgradState`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import momentum
    >>> tx = momentum.xgrad(optax.trace(0.9), learning_rate=0.1)
    >>> params = jnp.array([1.0])
    >>> state = tx.init(params)
    >>> u, state = tx.update(2 * params, state, params)  # grad of x^2
    >>> momentum.xgrad_true_params(state), params + u  # 0.8, 0.8 - 0.1 * 2
    (Array([0.8], dtype=float32), Array([0.6], dtype=float32))

  References:
    Guan et al., `XGrad: Boosting Gradient-Based Optimizers With Weight
    Prediction <https://arxiv.org/abs/2305.18240>`_, 2023.
  """
  where = 'xgrad'
  validation.check_non_negative(where, 'learning_rate', learning_rate)
  validation.check_number(
    where, 'steps_ahead', steps_ahead, lower=0.0, allow_schedule=False
  )
  validation.check_non_negative(where, 'weight_decay', weight_decay)
  direction = optax.with_extra_args_support(direction)

  def init_fn(params):
    true_params = jax.tree.map(lambda p: jnp.array(p, jnp.float32), params)
    return XgradState(
      count=jnp.zeros([], jnp.int32),
      true_params=true_params,
      direction_state=direction.init(true_params),
    )

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError(
        f'{where}: `params` (the predicted point) are required by update.'
      )
    grads = jax.tree.map(lambda g: g.astype(jnp.float32), updates)
    delta, dstate = direction.update(
      grads, state.direction_state, state.true_params, **extra_args
    )
    next_count = optax.safe_int32_increment(state.count)
    lr_now = alias.scalar_at(learning_rate, state.count)
    lr_next = alias.scalar_at(learning_rate, next_count)
    lam = alias.scalar_at(weight_decay, state.count)
    ahead = alias.scalar_at(steps_ahead, state.count)

    def one(t, d, p, g):
      d = d.astype(jnp.float32)
      t_new = t - lr_now * (d + lam * t)
      predicted = t_new - ahead * lr_next * d
      return t_new, (predicted - p.astype(jnp.float32)).astype(g.dtype)

    true_new, out = trees.map_multi(
      one, 2, state.true_params, delta, params, updates
    )
    return out, XgradState(
      count=next_count, true_params=true_new, direction_state=dstate
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@metadata.describe(citations=('guan2023xgrad',))
def xgrad_true_params(state: optax.OptState) -> optax.Params:
  """The true iterate of an :func:`xgrad` state (anywhere inside ``state``).

  Args:
    state: an optimiser state containing an :class:`XgradState`.

  Returns:
    The float32 true parameters, for evaluation and checkpointing.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> momentum.xgrad_true_params(momentum.xgrad_adam(0.1).init(jnp.ones(2)))
    Array([1., 1.], dtype=float32)

  References:
    Guan et al., `XGrad: Boosting Gradient-Based Optimizers With Weight
    Prediction <https://arxiv.org/abs/2305.18240>`_, 2023.
  """
  found = alias.find_state('xgrad_true_params', state, XgradState)
  return found.true_params


@metadata.describe(
  citations=('guan2023xgrad',),
  case=metadata.Case(
    kind='wrapper',
    kwargs={'learning_rate': 0.02},
    alias=True,
    hyperparams=('learning_rate', 'steps_ahead', 'weight_decay'),
    lr=0.02,
    rosenbrock=(5e-4, 20000),
  ),
  benchmarks=(metadata.Benchmark('transforms', 'xgrad_sgd', args=(1e-3,)),),
)
@validation.named_errors
def xgrad_sgd(
  learning_rate: optax.ScalarOrSchedule,
  momentum: float = 0.9,
  dampening: float = 0.0,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  steps_ahead: float = 1.0,
  *,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""XGrad with SGD momentum (the reference ``SGD.py``).

  :math:`b \leftarrow \mu b + (1 - \text{dampening})(g + \lambda\theta)`
  (L2 decay, as the reference), :math:`\Delta = b`; see :func:`xgrad`.

  Args:
    learning_rate: step size or schedule, ``>= 0`` (reference 1e-3).
    momentum: :math:`\mu` in ``(0, 1)`` (reference 0.9; without momentum
      there is nothing to predict with).
    dampening: in ``[0, 1)``.
    weight_decay: L2 :math:`\lambda \ge 0`.
    steps_ahead: :math:`s \ge 0`.
    mu_dtype: storage dtype of the momentum buffer (``None``: float32).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`XgradState`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.xgrad_sgd(0.1)
    >>> params = jnp.array([1.0])
    >>> u, state = tx.update(jnp.array([1.0]), tx.init(params), params)
    >>> u   # true step -0.1, then predicted one more step of -0.1
    Array([-0.2], dtype=float32)

  References:
    Guan et al., `XGrad: Boosting Gradient-Based Optimizers With Weight
    Prediction <https://arxiv.org/abs/2305.18240>`_, 2023.
  """
  where = 'xgrad_sgd'
  validation.check_number(
    where,
    'momentum',
    momentum,
    lower=0.0,
    upper=1.0,
    lower_inclusive=False,
    upper_inclusive=False,
  )
  validation.check_number(
    where, 'dampening', dampening, lower=0.0, upper=1.0, upper_inclusive=False
  )
  validation.check_non_negative(where, 'weight_decay', weight_decay)
  mu_dtype = validation.state_dtype(where, 'mu_dtype', mu_dtype)
  direction = optax.chain(
    optax.add_decayed_weights(weight_decay),
    optax.scale(1.0 - dampening),
    # optax.trace with a float32 accumulator and bfloat16 gradients is not
    # strict-promotion clean; the mixture core computes in float32 and
    # stores in mu_dtype (b <- mu b + g, the same recursion).
    _mixture.scale_by_momentum_mixture(
      (momentum,), (1.0,), dampening=False, mu_dtype=mu_dtype
    ),
  )
  return xgrad(direction, learning_rate, steps_ahead)


@metadata.describe(
  citations=('guan2023xgrad',),
  case=metadata.Case(
    kind='wrapper',
    kwargs={'learning_rate': 0.05},
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'eps', 'steps_ahead'),
    lr=metadata.cosine_decay(0.05, 500),
    rosenbrock=(metadata.cosine_decay(3e-3, 20000), 20000),
    strict_promotion=False,
    inject_rtol=1e-4,
  ),
  benchmarks=(metadata.Benchmark('transforms', 'xgrad_adam', args=(1e-3,)),),
)
@validation.named_errors
def xgrad_adam(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  steps_ahead: float = 1.0,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""XGrad with Adam (the reference ``Adam.py``): ``Δ`` is Adam's step.

  Args:
    learning_rate: step size or schedule, ``>= 0`` (reference 1e-3).
    b1: first-moment decay in ``[0, 1)``.
    b2: second-moment decay in ``[0, 1)``.
    eps: added to the denominator, ``>= 0``.
    steps_ahead: :math:`s \ge 0`.
    mu_dtype: storage dtype of Adam's first moment (``None``: float32).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`XgradState`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.xgrad_adam(0.1)
    >>> params = jnp.array([1.0])
    >>> with jax.numpy_dtype_promotion('standard'):
    ...   u, state = tx.update(jnp.array([3.0]), tx.init(params), params)
    >>> u   # Adam's first step is -lr * sign(g), predicted once more
    Array([-0.2], dtype=float32)

  References:
    Guan et al., `XGrad: Boosting Gradient-Based Optimizers With Weight
    Prediction <https://arxiv.org/abs/2305.18240>`_, 2023.
  """
  where = 'xgrad_adam'
  validation.check_adam(where, b1, b2, eps, allow_schedule=False)
  mu_dtype = validation.state_dtype(where, 'mu_dtype', mu_dtype)
  return xgrad(
    optax.scale_by_adam(b1=b1, b2=b2, eps=eps, mu_dtype=mu_dtype),
    learning_rate,
    steps_ahead,
  )


@metadata.describe(
  citations=('guan2023xgrad',),
  case=metadata.Case(
    kind='wrapper',
    kwargs={'learning_rate': 0.05, 'weight_decay': 0.0},
    alias=True,
    hyperparams=('learning_rate', 'b1', 'weight_decay', 'steps_ahead'),
    lr=metadata.cosine_decay(0.05, 500),
    rosenbrock=(metadata.cosine_decay(3e-3, 20000), 20000),
    strict_promotion=False,
    inject_rtol=1e-4,
  ),
  benchmarks=(metadata.Benchmark('transforms', 'xgrad_adamw', args=(1e-3,)),),
)
@validation.named_errors
def xgrad_adamw(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  weight_decay: optax.ScalarOrSchedule = 1e-4,
  steps_ahead: float = 1.0,
  *,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""XGrad with AdamW (the reference ``AdamW.py``); decay not predicted.

  Args:
    learning_rate: step size or schedule, ``>= 0``.
    b1: first-moment decay in ``[0, 1)``.
    b2: second-moment decay in ``[0, 1)``.
    eps: added to the denominator, ``>= 0``.
    weight_decay: decoupled :math:`\lambda \ge 0` (:func:`optax.adamw`'s
      default).
    steps_ahead: :math:`s \ge 0`.
    mu_dtype: storage dtype of Adam's first moment (``None``: float32).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`XgradState`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.xgrad_adamw(0.1, weight_decay=0.5)
    >>> params = jnp.array([1.0])
    >>> with jax.numpy_dtype_promotion('standard'):
    ...   u, state = tx.update(jnp.array([3.0]), tx.init(params), params)
    >>> u   # true: 1 - 0.1 * (1 + 0.5); predicted: - 0.1 * 1
    Array([-0.25], dtype=float32)

  References:
    Guan et al., `XGrad: Boosting Gradient-Based Optimizers With Weight
    Prediction <https://arxiv.org/abs/2305.18240>`_, 2023.
  """
  where = 'xgrad_adamw'
  validation.check_adam(where, b1, b2, eps, allow_schedule=False)
  mu_dtype = validation.state_dtype(where, 'mu_dtype', mu_dtype)
  return xgrad(
    optax.scale_by_adam(b1=b1, b2=b2, eps=eps, mu_dtype=mu_dtype),
    learning_rate,
    steps_ahead,
    weight_decay,
  )
