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
"""diffGrad: Adam with a friction coefficient from the gradient change."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import alias
from optax_ext._src import metadata
from optax_ext._src import trees
from optax_ext._src import validation


class ScaleByDiffgradState(NamedTuple):
  """State of :func:`scale_by_diffgrad`.

  Attributes:
    count: int32 number of updates so far.
    mu: EMA of the gradient (``mu_dtype``, float32 by default).
    nu: float32 EMA of the squared gradient.
    prev_grad: gradient of the previous step (zeros before the first), in
      ``mu_dtype``.
  """

  count: jax.Array
  mu: optax.Updates
  nu: optax.Updates
  prev_grad: optax.Updates


@metadata.describe(
  citations=('dubey2020diffgrad',),
  case=metadata.Case(
    kind='param', kwargs={}, hyperparams=('b1', 'b2', 'eps'), lr=0.05
  ),
  row=metadata.Row(
    'adaptive',
    'diffGrad',
    papers='[Dubey et al. 2020](https://arxiv.org/abs/1909.11015)',
    also=('diffgrad',),
  ),
)
def scale_by_diffgrad(
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""diffGrad: Adam's step damped by a friction coefficient.

  With Adam's moments :math:`m, v` of :math:`g` and the previous gradient
  :math:`g'` (zero at the first step):

  .. math::
    \xi = \mathrm{sigmoid}(|g' - g|) \in [\tfrac12, 1), \qquad
    u = \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}\,
        \frac{\xi \odot m}{\sqrt v + \epsilon} .

  The friction is applied to the step, as in the authors' ``diffGrad_v2.py``
  (shivram1987/diffGrad). :math:`\epsilon` is not bias-corrected, as there.

  .. note::
    The authors' first ``diffGrad.py`` (used for the paper's runs, per the
    repository) kept the previous gradient by reference, so
    :math:`\xi \equiv 0.5`: Adam at half the learning rate. This follows the
    fixed ``v2``. pytorch_optimizer's ``DiffGrad`` applies :math:`\xi` only
    with ``rectify=True``; it is not followed.

  A constant gradient gives :math:`\xi = 0.5` from the second step on.
  Cost: three buffers (:math:`m, v, g'`), float32 unless ``mu_dtype``.

  Args:
    b1: first-moment decay in ``[0, 1)``.
    b2: second-moment decay in ``[0, 1)``.
    eps: added to the denominator, ``>= 0``.
    mu_dtype: storage dtype of :math:`m` and :math:`g'` (e.g.
      ``jnp.bfloat16``); ``None`` keeps float32. Computation is in float32.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`ScaleByDiffgradState`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import adaptive
    >>> tx = adaptive.scale_by_diffgrad()
    >>> g = jnp.array([0.0, 3.0])
    >>> u, state = tx.update(g, tx.init(g))  # xi = sigmoid(|g|)
    >>> u
    Array([0.       , 0.9525741], dtype=float32)

  References:
    Dubey et al., `diffGrad: An Optimization Method for Convolutional
    Neural Networks <https://arxiv.org/abs/1909.11015>`_, IEEE TNNLS 2020.
  """
  where = 'scale_by_diffgrad'
  validation.check_adam(where, b1, b2, eps)
  mu_dtype = validation.state_dtype(where, 'mu_dtype', mu_dtype)

  def init_fn(params):
    return ScaleByDiffgradState(
      count=jnp.zeros([], jnp.int32),
      mu=alias.state_zeros(params, mu_dtype),
      nu=alias.state_zeros(params),
      prev_grad=alias.state_zeros(params, mu_dtype),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    count = optax.safe_int32_increment(state.count)
    t = count.astype(jnp.float32)
    beta1 = alias.scalar_at(b1, state.count)
    beta2 = alias.scalar_at(b2, state.count)
    e = alias.scalar_at(eps, state.count)
    scale = jnp.sqrt(1.0 - jnp.power(beta2, t)) / (1.0 - jnp.power(beta1, t))

    def one(g, m, v, prev):
      g32 = g.astype(jnp.float32)
      m = beta1 * m.astype(jnp.float32) + (1.0 - beta1) * g32
      v = beta2 * v + (1.0 - beta2) * g32 * g32
      xi = jax.nn.sigmoid(jnp.abs(prev.astype(jnp.float32) - g32))
      u = scale * xi * m / (jnp.sqrt(v) + e)
      return u.astype(g.dtype), m.astype(mu_dtype), v, g32.astype(mu_dtype)

    u, m, v, prev = trees.map_multi(
      one, 4, updates, state.mu, state.nu, state.prev_grad
    )
    return u, ScaleByDiffgradState(count=count, mu=m, nu=v, prev_grad=prev)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@metadata.describe(
  citations=('dubey2020diffgrad',),
  case=metadata.Case(
    kind='param',
    kwargs={'learning_rate': 0.05},
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'eps', 'weight_decay'),
    lr=0.05,
  ),
  benchmarks=(
    metadata.Benchmark(
      'transforms', 'diffgrad', args=(1e-3,), peer=('DiffGrad', {'lr': 1e-3})
    ),
  ),
)
@validation.named_errors
def diffgrad(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  *,
  decouple_weight_decay: bool = False,
  mask: Any = None,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""diffGrad optimiser: :func:`scale_by_diffgrad` with weight decay.

  The reference adds L2 decay to the gradient before the moments (and the
  friction then sees :math:`g + \lambda\theta`); ``decouple_weight_decay``
  gives the AdamW-style :math:`\theta \leftarrow \theta - \eta(u +
  \lambda\theta)` instead.

  Args:
    learning_rate: step size or schedule, ``>= 0`` (reference 1e-3).
    b1: first-moment decay in ``[0, 1)``.
    b2: second-moment decay in ``[0, 1)``.
    eps: added to the denominator, ``>= 0``.
    weight_decay: :math:`\lambda`, ``>= 0`` (reference 0).
    decouple_weight_decay: decoupled instead of L2 decay.
    mask: which params weight decay applies to (a tree of bools or a
      function of the params, as :func:`optax.add_decayed_weights`).
    mu_dtype: storage dtype of :math:`m` and :math:`g'` (``None``: float32).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import adaptive
    >>> tx = adaptive.diffgrad(1e-3)
    >>> params = jnp.zeros(2)
    >>> u, _ = tx.update(jnp.array([0.0, 3.0]), tx.init(params), params)
    >>> u
    Array([-0.        , -0.00095257], dtype=float32)

  References:
    Dubey et al., `diffGrad: An Optimization Method for Convolutional
    Neural Networks <https://arxiv.org/abs/1909.11015>`_, IEEE TNNLS 2020.
  """
  where = 'diffgrad'
  validation.check_non_negative(where, 'learning_rate', learning_rate)
  validation.check_non_negative(where, 'weight_decay', weight_decay)
  return alias.with_decay_and_lr(
    scale_by_diffgrad(b1, b2, eps, mu_dtype),
    learning_rate,
    weight_decay,
    mask,
    coupled=not decouple_weight_decay,
  )
