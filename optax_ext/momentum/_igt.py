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
"""IGT: implicit gradient transport (shifted-parameter wrapper)."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import metadata
from optax_ext._src import validation


class IgtState(NamedTuple):
  """State of :func:`igt`.

  Attributes:
    count: int32 number of updates so far (:math:`n`).
    true_params: the true iterate :math:`\\theta_n` in float32 (the model's
      params hold the shifted point :math:`\\tilde\\theta_n`). Evaluate and
      checkpoint these: :func:`igt_true_params` or
      ``optax.tree.get(state, 'true_params')``.
    v: the transported gradient average :math:`v_{n-1}`, float32.
    inner_state: the inner transform's state.
  """

  count: jax.Array
  true_params: optax.Params
  v: optax.Updates
  inner_state: optax.OptState


def transport_step(true_params, step, params, updates, n, delta):
  """Applies ``step`` to the true iterate and returns the shifted update.

  ``theta_{n+1} = theta_n + step``; the shifted point is ``theta_{n+1} +
  (n + 1) / delta * step`` (``gamma_{n+1} / (1 - gamma_{n+1})`` with
  ``gamma_n = n / (n + delta)``), returned as a difference to ``params`` in
  the gradients' dtype.

  Returns:
    ``(new true params, updates for the shifted params)``.
  """
  true_new = jax.tree.map(
    lambda p, d: p + d.astype(jnp.float32), true_params, step
  )
  factor = (n + 1.0) / delta
  out = jax.tree.map(
    lambda t, d, p, g: (
      t + factor * d.astype(jnp.float32) - p.astype(jnp.float32)
    ).astype(g.dtype),
    true_new,
    step,
    params,
    updates,
  )
  return true_new, out


@metadata.describe(
  citations=('arnold2019reducing',),
  case=metadata.Case(
    kind='wrapper',
    kwargs=lambda: {'inner': optax.sgd(0.05)},
    hyperparams=('delta',),
    lr=0.05,
    rosenbrock=(1e-3, 20000),
    optimizer=lambda lr: igt(optax.sgd(lr)),
  ),
  row=metadata.Row(
    'momentum',
    'implicit gradient transport',
    papers='[Arnold et al. 2019](https://arxiv.org/abs/1906.03532)',
    also=('igt_sgd', 'igt_adam', 'igt_true_params'),
  ),
)
def igt(
  inner: optax.GradientTransformation, delta: float = 1.0
) -> optax.GradientTransformationExtraArgs:
  r"""Implicit gradient transport around an optimiser ``inner``.

  Gradients are taken at an extrapolated point so that their running average
  is an unbiased estimate at the current iterate when the Hessian is locally
  constant (no Hessian is computed). With :math:`\gamma_n = n / (n +
  \delta)`:

  .. math::
    v_n = \gamma_n v_{n-1} + (1 - \gamma_n)\nabla f(\tilde\theta_n), \qquad
    \theta_{n+1} = \theta_n + \mathrm{inner}(v_n),

  .. math::
    \tilde\theta_{n+1} = \theta_{n+1} + \frac{\gamma_{n+1}}{1-\gamma_{n+1}}
    (\theta_{n+1} - \theta_n) \quad \Big(= \theta_{n+1} + \tfrac{n+1}{\delta}
    \Delta_n\Big).

  **Shifted-parameter contract.** The params you hold (and differentiate at)
  are the shifted point :math:`\tilde\theta`; ``update(g, state, params)``
  needs them and returns :math:`\tilde\theta_{n+1} - \tilde\theta_n`, so
  :func:`optax.apply_updates` keeps them shifted. The true iterate is in the
  state: use :func:`igt_true_params` for evaluation and checkpoints. The step
  :math:`\Delta_n` is computed directly (the reference recovers it as a
  parameter difference, which its authors note cancels badly).

  The extrapolation factor grows linearly with :math:`n`: with a constant
  learning rate on a non-quadratic loss the shifted point can run away; decay
  the learning rate (the method assumes a locally constant Hessian).

  Cost: two param-sized float32 buffers (true params, :math:`v`) plus the
  inner state.

  Args:
    inner: the optimiser applied to :math:`v_n` (:func:`optax.sgd`,
      :func:`optax.adam`, ...), including its learning rate.
    delta: :math:`\delta > 0` (reference 1).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`IgtState`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import momentum
    >>> tx = momentum.igt(optax.sgd(0.1))
    >>> params = jnp.array([1.0])          # shifted point = true point at n=0
    >>> state = tx.init(params)
    >>> u, state = tx.update(2 * params, state, params)  # grad of x^2
    >>> params = optax.apply_updates(params, u)
    >>> momentum.igt_true_params(state), params  # 0.8, then 0.8 + 1 * (-0.2)
    (Array([0.8], dtype=float32), Array([0.6], dtype=float32))

  References:
    Arnold et al., `Reducing the variance in online optimization by
    transporting past gradients <https://arxiv.org/abs/1906.03532>`_, 2019.
  """
  where = 'igt'
  validation.check_positive(where, 'delta', delta, allow_schedule=False)
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    # A copy (jnp.array copies): aliasing the params' buffer would break
    # donating params and state together.
    true_params = jax.tree.map(lambda p: jnp.array(p, jnp.float32), params)
    return IgtState(
      count=jnp.zeros([], jnp.int32),
      true_params=true_params,
      v=jax.tree.map(jnp.zeros_like, true_params),
      # The inner optimiser runs on float32 v and true params: its state is
      # float32 too, whatever the params' dtype.
      inner_state=inner.init(true_params),
    )

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError(
        f'{where}: `params` (the shifted point) are required by update.'
      )
    n = state.count.astype(jnp.float32)
    gamma = n / (n + delta)
    v = jax.tree.map(
      lambda v, g: gamma * v + (1.0 - gamma) * g.astype(jnp.float32),
      state.v,
      updates,
    )
    step, inner_state = inner.update(
      v, state.inner_state, state.true_params, **extra_args
    )
    true_new, out = transport_step(
      state.true_params, step, params, updates, n, delta
    )
    return out, IgtState(
      count=optax.safe_int32_increment(state.count),
      true_params=true_new,
      v=v,
      inner_state=inner_state,
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@metadata.describe(citations=('arnold2019reducing',))
def igt_true_params(state: optax.OptState) -> optax.Params:
  """The true iterate of an :func:`igt` state (anywhere inside ``state``).

  Args:
    state: an optimiser state containing an :class:`IgtState`.

  Returns:
    The float32 true parameters, for evaluation and checkpointing.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import momentum
    >>> tx = optax.chain(optax.clip(1.0), momentum.igt_sgd(0.1))
    >>> momentum.igt_true_params(tx.init(jnp.zeros(2)))
    Array([0., 0.], dtype=float32)

  References:
    Arnold et al., `Reducing the variance in online optimization by
    transporting past gradients <https://arxiv.org/abs/1906.03532>`_, 2019.
  """
  return optax.tree.get(state, 'true_params')


@metadata.describe(
  citations=('arnold2019reducing',),
  case=metadata.Case(
    kind='wrapper',
    kwargs={'learning_rate': 0.05},
    alias=True,
    hyperparams=('learning_rate', 'momentum', 'delta'),
    lr=0.05,
    rosenbrock=(1e-3, 20000),
  ),
  benchmarks=(metadata.Benchmark('transforms', 'igt_sgd', args=(1e-3,)),),
)
@validation.named_errors
def igt_sgd(
  learning_rate: optax.ScalarOrSchedule,
  momentum: float = 0.0,
  nesterov: bool = False,
  delta: float = 1.0,
) -> optax.GradientTransformationExtraArgs:
  r"""IGT with (heavy-ball or Nesterov) SGD: ``igt(optax.sgd(...), delta)``.

  See :func:`igt` for the shifted-parameter contract.

  Args:
    learning_rate: step size or schedule, ``>= 0``.
    momentum: heavy-ball decay in ``[0, 1)`` (0: plain IGT, the reference
      default).
    nesterov: Nesterov momentum.
    delta: :math:`\delta > 0`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`IgtState`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.igt_sgd(0.1, momentum=0.9)
    >>> params = jnp.array([1.0])
    >>> u, state = tx.update(2 * params, tx.init(params), params)
    >>> u
    Array([-0.4], dtype=float32)

  References:
    Arnold et al., `Reducing the variance in online optimization by
    transporting past gradients <https://arxiv.org/abs/1906.03532>`_, 2019.
  """
  where = 'igt_sgd'
  validation.check_number(where, 'learning_rate', learning_rate, lower=0.0)
  validation.check_decay(where, 'momentum', momentum)
  return igt(
    optax.sgd(
      learning_rate,
      # A Python 0 means no momentum buffer; an array (inject_hyperparams)
      # always keeps one, so init and update agree on the state.
      momentum=None
      if isinstance(momentum, (int, float)) and momentum == 0
      else momentum,
      nesterov=nesterov,
    ),
    delta,
  )


# Battery case: With delta = 1, IGT-Adam diverges on Rosenbrock (Adam's near-
# constant step times the n + 1 extrapolation: the spec's pitfall); delta = 100
# slows the extrapolation. Adam's steps do not vanish at a constant rate and IGT
# extrapolates by n + 1: decay the rate. Rounding is amplified the same way.
@metadata.describe(
  citations=('arnold2019reducing',),
  case=metadata.Case(
    kind='wrapper',
    kwargs={'learning_rate': 0.01, 'delta': 100.0},
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'eps', 'delta'),
    lr=metadata.cosine_decay(0.05, 500),
    rosenbrock=(metadata.cosine_decay(3e-3, 20000), 20000),
    strict_promotion=False,
    inject_rtol=1e-4,
  ),
  benchmarks=(metadata.Benchmark('transforms', 'igt_adam', args=(1e-3,)),),
)
@validation.named_errors
def igt_adam(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  delta: float = 1.0,
) -> optax.GradientTransformationExtraArgs:
  r"""IGT with Adam fed the transported average: ``igt(optax.adam(...))``.

  See :func:`igt` for the shifted-parameter contract.

  Args:
    learning_rate: step size or schedule, ``>= 0``.
    b1: first-moment decay in ``[0, 1)``.
    b2: second-moment decay in ``[0, 1)``.
    eps: added to the denominator, ``>= 0``.
    delta: :math:`\delta > 0`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`IgtState`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.igt_adam(0.1)
    >>> params = jnp.array([1.0])
    >>> with jax.numpy_dtype_promotion('standard'):
    ...   u, state = tx.update(2 * params, tx.init(params), params)
    >>> u  # Adam's first step is -lr * sign(g); the shift doubles it
    Array([-0.2], dtype=float32)

  References:
    Arnold et al., `Reducing the variance in online optimization by
    transporting past gradients <https://arxiv.org/abs/1906.03532>`_, 2019.
  """
  where = 'igt_adam'
  validation.check_number(where, 'learning_rate', learning_rate, lower=0.0)
  validation.check_adam(where, b1, b2, eps, allow_schedule=False)
  return igt(optax.adam(learning_rate, b1=b1, b2=b2, eps=eps), delta)
