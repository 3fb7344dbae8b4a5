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
"""Grams: gradient descent with adaptive momentum scaling."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import alias
from optax_ext._src import metadata
from optax_ext._src import trees
from optax_ext._src import validation


class ScaleByGramsState(NamedTuple):
  """State of :func:`scale_by_grams`.

  Attributes:
    count: int32 number of updates so far.
    mu: float32 EMA of the gradient.
    nu: float32 EMA of the squared gradient.
  """

  count: jax.Array
  mu: optax.Updates
  nu: optax.Updates


@metadata.describe(
  citations=('cao2024grams',),
  case=metadata.Case(
    kind='param', kwargs={}, hyperparams=('b1', 'b2', 'eps'), lr=0.05
  ),
  row=metadata.Row(
    'momentum',
    'Grams',
    papers='[Cao et al. 2024](https://arxiv.org/abs/2412.17107)',
    also=('grams',),
  ),
)
def scale_by_grams(
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-6,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Grams: the sign of the gradient with the magnitude of Adam's step.

  .. math::
    m \leftarrow \beta_1 m + (1 - \beta_1) g, \quad
    v \leftarrow \beta_2 v + (1 - \beta_2) g^2, \quad
    u = \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}\,
        \mathrm{sign}(g) \odot \frac{|m|}{\sqrt v + \epsilon} .

  :math:`\epsilon` is not bias-corrected ("epsilon hat", as the reference).
  The EMA is the standard one and the denominator :math:`\sqrt v`, as in the
  paper and Gunale0926/Grams; pytorch_optimizer's port (which weights the
  new gradient by :math:`\beta_1` and divides by
  :math:`\sqrt{v/\sqrt{1-\beta_2^t}}`) is not followed. Where ``g = 0`` the
  update is 0: coordinates with no gradient (unseen embeddings) do not move.
  Moments are computed in float32; ``mu`` is stored in ``mu_dtype``.

  Args:
    b1: first-moment decay in ``[0, 1)``.
    b2: second-moment decay in ``[0, 1)``.
    eps: added to the denominator, ``>= 0`` (reference default 1e-6).
    mu_dtype: storage dtype of the first moment (e.g. ``jnp.bfloat16``);
      ``None`` keeps float32.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`ScaleByGramsState`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.scale_by_grams()
    >>> g = jnp.array([0.5, -2.0, 0.0])
    >>> u, _ = tx.update(g, tx.init(g))
    >>> u  # first step: sign(g) |g| / (|g| + eps / sqrt(1 - b2))
    Array([ 0.99993676, -0.9999842 ,  0.        ], dtype=float32)

  References:
    Cao, Li and Song, `Grams: Gradient Descent with Adaptive Momentum
    Scaling <https://arxiv.org/abs/2412.17107>`_, 2024.
  """
  where = 'scale_by_grams'
  validation.check_adam(where, b1, b2, eps)
  mu_dtype = validation.state_dtype(where, 'mu_dtype', mu_dtype)

  def init_fn(params):
    return ScaleByGramsState(
      count=jnp.zeros([], jnp.int32),
      mu=alias.state_zeros(params, mu_dtype),
      nu=alias.state_zeros(params),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    count = optax.safe_int32_increment(state.count)
    t = count.astype(jnp.float32)
    beta1 = alias.scalar_at(b1, state.count)
    beta2 = alias.scalar_at(b2, state.count)
    step = jnp.sqrt(1.0 - jnp.power(beta2, t)) / (1.0 - jnp.power(beta1, t))
    e = alias.scalar_at(eps, state.count)

    def one(g, m, v):
      g32 = g.astype(jnp.float32)
      m = beta1 * m.astype(jnp.float32) + (1.0 - beta1) * g32
      v = beta2 * v + (1.0 - beta2) * g32 * g32
      u = step * jnp.sign(g32) * jnp.abs(m) / (jnp.sqrt(v) + e)
      return u.astype(g.dtype), m.astype(mu_dtype), v

    u, m, v = trees.map_multi(one, 3, updates, state.mu, state.nu)
    return u, ScaleByGramsState(count=count, mu=m, nu=v)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@metadata.describe(
  citations=('cao2024grams',),
  case=metadata.Case(
    kind='param',
    kwargs={'learning_rate': 0.05},
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'weight_decay'),
    lr=0.05,
  ),
  benchmarks=(
    metadata.Benchmark(
      'transforms', 'grams', args=(1e-3,), peer=('Grams', {'lr': 1e-3})
    ),
  ),
)
@validation.named_errors
def grams(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-6,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  *,
  mask: Any = None,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Grams optimiser: :math:`\theta \leftarrow \theta - \eta(u +
  \lambda\theta)`.

  The reference decays the parameters first, :math:`\theta \leftarrow
  \theta(1 - \eta\lambda)`, then steps; with the decay computed from the same
  :math:`\theta` this equals :func:`optax.add_decayed_weights` after
  :func:`scale_by_grams`.

  Args:
    learning_rate: step size or schedule, ``>= 0`` (reference 1e-3).
    b1: first-moment decay in ``[0, 1)``.
    b2: second-moment decay in ``[0, 1)``.
    eps: added to the denominator, ``>= 0``.
    weight_decay: decoupled weight decay, ``>= 0``.
    mask: :func:`optax.add_decayed_weights` mask.
    mu_dtype: storage dtype of the first moment (``None``: float32).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.grams(0.1)
    >>> params = jnp.array([1.0])
    >>> u, _ = tx.update(jnp.array([-3.0]), tx.init(params), params)
    >>> u
    Array([0.1], dtype=float32)

  References:
    Cao, Li and Song, `Grams: Gradient Descent with Adaptive Momentum
    Scaling <https://arxiv.org/abs/2412.17107>`_, 2024.
  """
  where = 'grams'
  validation.check_non_negative(where, 'learning_rate', learning_rate)
  validation.check_non_negative(where, 'weight_decay', weight_decay)
  return alias.with_decay_and_lr(
    scale_by_grams(b1, b2, eps, mu_dtype), learning_rate, weight_decay, mask
  )
