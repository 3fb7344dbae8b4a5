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
"""Gravity: a velocity EMA of gradients shrunk relative to their largest."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import alias
from optax_ext._src import metadata
from optax_ext._src import trees
from optax_ext._src import validation


class ScaleByGravityState(NamedTuple):
  """State of :func:`scale_by_gravity`.

  Attributes:
    count: int32 number of updates so far.
    velocity: velocity :math:`V` (random at initialisation), in
      ``mu_dtype`` (float32 by default).
  """

  count: jax.Array
  velocity: optax.Updates


# Battery case: Gravity's step falls like 1/|g|^3 for |g| >> 1 (zeta = g / (1 +
# (g max|g|)^2)): it is made for small gradients, so the battery scales the
# losses by 1e-2 and the rate up by 100.
@metadata.describe(
  citations=('bahrami2021gravity',),
  case=metadata.Case(
    kind='param',
    kwargs={'init_std': 0.01},
    hyperparams=('init_std', 'beta'),
    lr=20.0,
    rosenbrock=(0.1, 20000),
    static_args=('seed',),
    optimizer=lambda lr: optax.chain(
      optax.scale(1e-2),
      scale_by_gravity(init_std=1e-4),
      optax.scale_by_learning_rate(lr),
    ),
  ),
  row=metadata.Row(
    'adaptive',
    'Gravity',
    papers='[Bahrami & Zadeh 2021](https://arxiv.org/abs/2101.09192)',
    also=('gravity',),
  ),
)
def scale_by_gravity(
  init_std: float, beta: float = 0.9, seed: int = 0, mu_dtype: Any = None
) -> optax.GradientTransformationExtraArgs:
  r"""Gravity direction: an EMA of "gravity-shrunk" gradients.

  Per tensor, with :math:`M = \max_j |g_j|` and :math:`t = 1, 2, \ldots`:

  .. math::
    \zeta = \frac{g}{1 + (g M)^2}, \qquad
    \hat\beta_t = \frac{\beta t + 1}{t + 2}, \qquad
    V \leftarrow \hat\beta_t V + (1 - \hat\beta_t)\zeta, \qquad u = V .

  :math:`V` starts as :math:`\mathcal N(0, \texttt{init\_std}^2)` noise
  (the reference: :math:`\alpha/\eta`, see :func:`gravity`); the first
  steps random-walk. The product form :math:`g M` gives :math:`\zeta = 0`
  for an all-zero gradient (the reference's :math:`1/M` would divide by 0).

  .. note::
    ``init`` has no key argument in optax, so the noise comes from ``seed``
    (folded with each leaf's position): the same seed gives the same start.
    The counter follows the PyTorch reference (:math:`\hat\beta_1 =
    (\beta + 1)/3`); the Keras one starts at :math:`\hat\beta_0 = 1/2`.

  Args:
    init_std: standard deviation of the initial velocity, ``>= 0``.
    beta: :math:`\beta` in ``[0, 1]`` (reference 0.9).
    seed: integer seed of the initial velocity.
    mu_dtype: storage dtype of the velocity (e.g. ``jnp.bfloat16``);
      ``None`` keeps float32. Computation is in float32.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`ScaleByGravityState`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import adaptive
    >>> tx = adaptive.scale_by_gravity(init_std=0.0)
    >>> g = jnp.array([1.0, 0.5])
    >>> u, _ = tx.update(g, tx.init(g))  # zeta = g / (1 + g^2); (1 - 1.9/3)
    >>> u
    Array([0.18333335, 0.14666668], dtype=float32)

  References:
    Bahrami and Zadeh, `Gravity Optimizer: a Kinematic Approach on
    Optimization in Deep Learning <https://arxiv.org/abs/2101.09192>`_,
    2021.
  """
  where = 'scale_by_gravity'
  validation.check_number(where, 'init_std', init_std, lower=0.0)
  validation.check_number(where, 'beta', beta, lower=0.0, upper=1.0)
  validation.check_integer(where, 'seed', seed)
  mu_dtype = validation.state_dtype(where, 'mu_dtype', mu_dtype)

  def init_fn(params):
    std = alias.scalar_at(init_std, 0)
    leaves, treedef = jax.tree.flatten(params)
    key = jax.random.key(seed)
    velocity = [
      trees.place_like(
        (
          std * jax.random.normal(jax.random.fold_in(key, i), jnp.shape(p))
        ).astype(mu_dtype),
        p,
      )
      for i, p in enumerate(leaves)
    ]
    return ScaleByGravityState(
      count=jnp.zeros([], jnp.int32),
      velocity=jax.tree.unflatten(treedef, velocity),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    count = optax.safe_int32_increment(state.count)
    t = count.astype(jnp.float32)
    b = alias.scalar_at(beta, state.count)
    b_hat = (b * t + 1.0) / (t + 2.0)

    def one(g, v):
      g32 = g.astype(jnp.float32)
      big = jnp.max(jnp.abs(g32)) if g32.size else jnp.float32(0.0)
      zeta = g32 / (1.0 + jnp.square(g32 * big))
      v = b_hat * v.astype(jnp.float32) + (1.0 - b_hat) * zeta
      return v.astype(g.dtype), v.astype(mu_dtype)

    u, v = trees.map_multi(one, 2, updates, state.velocity)
    return u, ScaleByGravityState(count=count, velocity=v)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@metadata.describe(
  citations=('bahrami2021gravity',),
  case=metadata.Case(
    kind='param',
    kwargs={'learning_rate': 0.1},
    alias=True,
    hyperparams=('learning_rate', 'alpha', 'beta'),
    lr=20.0,
    rosenbrock=(0.1, 20000),
    static_args=('seed',),
    optimizer=lambda lr: optax.chain(optax.scale(1e-2), gravity(lr)),
  ),
  benchmarks=(
    metadata.Benchmark(
      'transforms',
      'gravity',
      args=(1e-2,),
      peer=('Gravity', {'lr': 1e-2}),
      two_pass=True,
    ),
  ),
)
@validation.named_errors
def gravity(
  learning_rate: optax.ScalarOrSchedule,
  alpha: float = 0.01,
  beta: float = 0.9,
  seed: int = 0,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Gravity optimiser: :math:`\theta \leftarrow \theta - \eta V`.

  :func:`scale_by_gravity` with ``init_std = alpha / learning_rate`` (the
  learning rate at step 0 for a schedule), then the learning rate.

  Args:
    learning_rate: step size or schedule, ``> 0`` at step 0 (reference 0.1;
      pytorch_optimizer 1e-2).
    alpha: initial-velocity scale, ``>= 0`` (reference 0.01).
    beta: :math:`\beta` in ``[0, 1]`` (reference 0.9).
    seed: integer seed of the initial velocity.
    mu_dtype: storage dtype of the velocity (``None``: float32).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import adaptive
    >>> tx = adaptive.gravity(0.1, alpha=0.0)
    >>> params = jnp.zeros(2)
    >>> u, _ = tx.update(jnp.array([1.0, 0.5]), tx.init(params), params)
    >>> u
    Array([-0.01833333, -0.01466667], dtype=float32)

  References:
    Bahrami and Zadeh, `Gravity Optimizer: a Kinematic Approach on
    Optimization in Deep Learning <https://arxiv.org/abs/2101.09192>`_,
    2021.
  """
  where = 'gravity'
  validation.check_number(where, 'alpha', alpha, lower=0.0)
  if callable(learning_rate):
    # Any value >= 0 along the way (a decay to 0 is fine); > 0 at step 0,
    # where it sets the initial noise scale.
    validation.check_non_negative(where, 'learning_rate', learning_rate)
    lr0 = learning_rate(0)
    validation.check_positive(where, 'learning_rate(0)', lr0)
  else:
    validation.check_positive(where, 'learning_rate', learning_rate)
    lr0 = learning_rate
  return optax.chain(
    scale_by_gravity(alpha / lr0, beta, seed, mu_dtype),
    optax.scale_by_learning_rate(learning_rate),
  )
