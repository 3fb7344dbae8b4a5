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
"""AdEMAMix warm-up schedules and an alias wiring them into optax's AdEMAMix."""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import alias
from optax_ext._src import metadata
from optax_ext._src import validation


@metadata.describe(
  citations=('pagliardini2025ademamix',),
  row=metadata.Row(
    'momentum',
    'AdEMAMix α/β3 warm-ups (on `optax.contrib.ademamix`)',
    papers='[Pagliardini et al. 2024](https://arxiv.org/abs/2409.03137)',
    also=('ademamix_beta3_schedule', 'ademamix_with_warmup'),
  ),
)
def ademamix_alpha_schedule(
  alpha: float, warmup_steps: int, alpha_start: float = 0.0
) -> optax.Schedule:
  r"""AdEMAMix's linear warm-up of the slow-EMA weight :math:`\alpha`.

  .. math::
    f_\alpha(s) = \begin{cases} (1 - s/T)\,\alpha_{start} + (s/T)\,\alpha &
    s < T \\ \alpha & s \ge T \end{cases}

  Args:
    alpha: final :math:`\alpha` (the paper uses 4 to 10; optax_ext 5.0).
    warmup_steps: :math:`T`, ``>= 1`` (the paper: the total number of steps).
    alpha_start: :math:`\alpha` at step 0.

  Returns:
    A schedule of the step count (``optax``'s ``count`` before increment,
    starting at 0), returning float32.

  Example:
    >>> from optax_ext import momentum
    >>> f = momentum.ademamix_alpha_schedule(8.0, 100)
    >>> float(f(0)), float(f(50)), float(f(100)), float(f(1000))
    (0.0, 4.0, 8.0, 8.0)

  References:
    Pagliardini, Ablin and Grangier, `The AdEMAMix Optimizer: Better,
    Faster, Older <https://arxiv.org/abs/2409.03137>`_, 2024.
  """
  where = 'ademamix_alpha_schedule'
  validation.check_number(where, 'alpha', alpha, allow_schedule=False)
  validation.check_number(
    where, 'alpha_start', alpha_start, allow_schedule=False
  )
  validation.check_integer(where, 'warmup_steps', warmup_steps, lower=1)

  def schedule(count):
    frac = jnp.asarray(count, jnp.float32) / warmup_steps
    ramp = (1.0 - frac) * alpha_start + frac * alpha
    return jnp.where(frac < 1.0, ramp, jnp.asarray(alpha, jnp.float32))

  return schedule


@metadata.describe(citations=('pagliardini2025ademamix',))
def ademamix_beta3_schedule(
  beta3: float, warmup_steps: int, beta_start: float = 0.9
) -> optax.Schedule:
  r"""AdEMAMix's warm-up of the slow decay :math:`\beta_3`.

  The half-life of the slow EMA grows linearly from that of ``beta_start`` to
  that of ``beta3``. With :math:`h(\beta) = \ln 0.5 / \ln\beta - 1`:

  .. math::
    f_{\beta_3}(s) = \begin{cases}
      0.5^{1 / ((1 - s/T) h(\beta_{start}) + (s/T) h(\beta_3) + 1)} & s < T \\
      \beta_3 & s \ge T \end{cases}

  The paper sets ``beta_start`` to :math:`\beta_1`. ``beta_start = 0`` is
  allowed (its half-life is 0): the schedule then starts at 0.

  Args:
    beta3: final slow decay in ``(0, 1)`` (0.9999 in the paper; 0.999 for
      short runs).
    warmup_steps: :math:`T`, ``>= 1``.
    beta_start: decay at step 0, in ``[0, beta3]``.

  Returns:
    A schedule of the step count (starting at 0), returning float32.

  Example:
    >>> from optax_ext import momentum
    >>> f = momentum.ademamix_beta3_schedule(0.9999, 1000, beta_start=0.9)
    >>> [round(float(f(s)), 7) for s in (0, 1, 10, 500, 999, 1000)]
    [0.9, 0.9499637, 0.9909002, 0.9998002, 0.9998999, 0.9999]

  References:
    Pagliardini, Ablin and Grangier, `The AdEMAMix Optimizer: Better,
    Faster, Older <https://arxiv.org/abs/2409.03137>`_, 2024.
  """
  where = 'ademamix_beta3_schedule'
  validation.check_number(
    where,
    'beta3',
    beta3,
    lower=0.0,
    upper=1.0,
    lower_inclusive=False,
    upper_inclusive=False,
    allow_schedule=False,
  )
  validation.check_number(
    where,
    'beta_start',
    beta_start,
    lower=0.0,
    upper=beta3,
    allow_schedule=False,
  )
  validation.check_integer(where, 'warmup_steps', warmup_steps, lower=1)

  def half_life(beta):
    # In float64 at construction: float32 ln(0.9999) loses ~4 digits. A decay
    # of 0 has half-life 0 (h = -1). Traced values (inject_hyperparams under
    # jit) take the float32 path.
    if isinstance(beta, jax.core.Tracer):
      safe = jnp.where(beta == 0, 0.5, beta)
      return jnp.where(beta == 0, -1.0, jnp.log(0.5) / jnp.log(safe) - 1.0)
    beta = float(beta)
    return -1.0 if beta == 0 else math.log(0.5) / math.log(beta) - 1.0

  h_start, h_end = half_life(beta_start), half_life(beta3)

  def schedule(count):
    frac = jnp.asarray(count, jnp.float32) / warmup_steps
    h = (1.0 - frac) * h_start + frac * h_end
    ramp = jnp.power(0.5, 1.0 / (h + 1.0))
    return jnp.where(frac < 1.0, ramp, jnp.asarray(beta3, jnp.float32))

  return schedule


class AdemamixWithWarmupState(NamedTuple):
  """The schedules' current values, for logging (:func:`ademamix_with_warmup`).

  Attributes:
    count: int32 number of updates so far.
    alpha: the :math:`\\alpha` used at the last update.
    b3: the :math:`\\beta_3` used at the last update.
  """

  count: jax.Array
  alpha: jax.Array
  b3: jax.Array


def _record_schedules(alpha, b3) -> optax.GradientTransformationExtraArgs:
  """Stores the schedules' values at optax's AdEMAMix count, for logging."""

  def init_fn(params):
    del params
    zero = jnp.zeros([], jnp.float32)
    return AdemamixWithWarmupState(jnp.zeros([], jnp.int32), zero, zero)

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    s = state.count
    return updates, AdemamixWithWarmupState(
      count=optax.safe_int32_increment(s),
      alpha=alias.scalar_at(alpha, s),
      b3=alias.scalar_at(b3, s),
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@metadata.describe(
  citations=('pagliardini2025ademamix',),
  case=metadata.Case(
    kind='param',
    kwargs={
      'learning_rate': 0.05,
      'alpha_warmup_steps': 100,
      'beta3_warmup_steps': 100,
      'b3': 0.99,  # a 500-step parabola: shorter slow memory, no ringing
    },
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'eps', 'alpha'),
    lr=0.05,
    rosenbrock=(1e-3, 20000),
    strict_promotion=False,
  ),
  benchmarks=(
    metadata.Benchmark(
      'transforms',
      'ademamix_with_warmup',
      args=(1e-3,),
      kwargs={'alpha_warmup_steps': 1000, 'beta3_warmup_steps': 1000},
      peer=('AdEMAMix', {'lr': 1e-3}),
    ),
  ),
)
@validation.named_errors
def ademamix_with_warmup(
  learning_rate: optax.ScalarOrSchedule,
  *,
  alpha_warmup_steps: int,
  beta3_warmup_steps: int,
  b1: float = 0.9,
  b2: float = 0.999,
  b3: float = 0.9999,
  alpha: float = 5.0,
  eps: float = 1e-8,
  eps_root: float = 0.0,
  mu_dtype: Any = None,
  weight_decay: float = 0.0,
  mask: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AdEMAMix with the paper's :math:`\alpha` and :math:`\beta_3` warm-ups.

  :func:`optax.contrib.ademamix` (reused, not re-implemented) with ``alpha =
  ademamix_alpha_schedule(alpha, alpha_warmup_steps)`` and ``b3 =
  ademamix_beta3_schedule(b3, beta3_warmup_steps, beta_start=b1)``:

  .. math::
    m_1 \leftarrow \beta_1 m_1 + (1-\beta_1) g, \quad
    m_2 \leftarrow \beta_3(s) m_2 + (1-\beta_3(s)) g, \quad
    \nu \leftarrow \beta_2 \nu + (1-\beta_2) g^2

  .. math::
    u = \frac{\hat m_1 + \alpha(s)\, m_2}{\sqrt{\hat\nu + \epsilon_{root}} +
    \epsilon}, \qquad \theta \leftarrow \theta - \eta(u + \lambda\theta) .

  The slow EMA :math:`m_2` is *not* bias-corrected (the paper and
  apple/ml-ademamix; pytorch_optimizer's port corrects it and is not
  followed). With ``alpha_start = 0`` the first update is Adam's. The
  schedules are evaluated at optax's count before increment (first value at
  step 0; apple's PyTorch class starts at 1). The current
  :math:`\alpha` and :math:`\beta_3` are in the state:
  ``optax.tree.get(state, 'alpha')``, ``optax.tree.get(state, 'b3')``.

  Args:
    learning_rate: step size or schedule, ``>= 0`` (paper run: 1e-3).
    alpha_warmup_steps: :math:`T_\alpha`, ``>= 1`` (paper: total steps).
    beta3_warmup_steps: :math:`T_{\beta_3}`, ``>= 1`` (paper: total steps).
    b1: fast EMA decay in ``[0, 1)``; also ``beta_start`` of the warm-up.
    b2: second-moment decay in ``[0, 1)``.
    b3: final slow EMA decay in ``(b1, 1)``.
    alpha: final slow-EMA weight (optax_ext passes 5.0 explicitly; optax's
      ``ademamix`` and ``scale_by_ademamix`` defaults disagree, 5 vs 6).
    eps: added to the denominator, ``>= 0``.
    eps_root: added inside the square root, ``>= 0``.
    mu_dtype: dtype of the three moments; ``None`` means float32 (the slow
      EMA moves ~1e-4 per step, below bfloat16's resolution). Updates are
      cast back to each gradient's dtype. With ``optax.inject_hyperparams``
      and bfloat16 params pass ``hyperparam_dtype=jnp.float32`` (0.9999 is
      1.0 in bfloat16).
    weight_decay: decoupled weight decay, ``>= 0`` (paper run: 0.1).
    mask: :func:`optax.add_decayed_weights` mask.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import momentum
    >>> tx = momentum.ademamix_with_warmup(
    ...     1e-3, alpha_warmup_steps=100, beta3_warmup_steps=100)
    >>> params = jnp.array([1.0, -1.0])
    >>> state = tx.init(params)
    >>> u, state = tx.update(jnp.array([0.1, 0.2]), state, params)
    >>> u  # step 0: alpha = 0, so this is Adam's first step
    Array([-0.001, -0.001], dtype=float32)
    >>> float(optax.tree.get(state, 'b3'))
    0.8999...

  References:
    Pagliardini, Ablin and Grangier, `The AdEMAMix Optimizer: Better,
    Faster, Older <https://arxiv.org/abs/2409.03137>`_, 2024.
  """
  where = 'ademamix_with_warmup'
  validation.check_non_negative(where, 'learning_rate', learning_rate)
  validation.check_decay(where, 'b1', b1)
  # optax.contrib's AdEMAMix takes numbers for these.
  validation.check_decay(where, 'b2', b2, allow_schedule=False)
  validation.check_number(
    where,
    'b3',
    b3,
    lower=b1,
    upper=1.0,
    upper_inclusive=False,
    allow_schedule=False,
  )
  validation.check_non_negative(where, 'eps', eps, allow_schedule=False)
  validation.check_non_negative(
    where, 'eps_root', eps_root, allow_schedule=False
  )
  validation.check_non_negative(where, 'weight_decay', weight_decay)
  for name, steps in (
    ('alpha_warmup_steps', alpha_warmup_steps),
    ('beta3_warmup_steps', beta3_warmup_steps),
  ):
    validation.check_integer(where, name, steps, lower=1)
  alpha_fn = ademamix_alpha_schedule(alpha, alpha_warmup_steps)
  b3_fn = ademamix_beta3_schedule(b3, beta3_warmup_steps, beta_start=b1)
  mu_dtype = validation.state_dtype(where, 'mu_dtype', mu_dtype)
  return alias.keep_dtypes(
    optax.chain(
      optax.contrib.ademamix(
        learning_rate,
        b1=b1,
        b2=b2,
        b3=b3_fn,
        alpha=alpha_fn,
        eps=eps,
        eps_root=eps_root,
        mu_dtype=mu_dtype,
        weight_decay=weight_decay,
        mask=mask,
      ),
      _record_schedules(alpha_fn, b3_fn),
    )
  )
