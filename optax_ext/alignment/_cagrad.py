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
"""CAGrad: conflict-averse gradient descent."""

import jax
import jax.numpy as jnp

from optax_ext._src import base
from optax_ext._src import linalg
from optax_ext._src import population as pop_lib
from optax_ext._src import validation
from optax_ext.alignment import _weighting


def cagrad_weighting(
  gramian: jax.Array,
  c: float = 0.5,
  rescale: int = 0,
  norm_eps: float = 1e-4,
  max_iters: int = 200,
) -> jax.Array:
  r"""CAGrad weights from the Gramian.

  With :math:`g_0 = J^\top\mathbb 1/K` and :math:`\sqrt\phi = c\|g_0\|`,

  .. math::
    w^* = \arg\min_{w \in \Delta} w^\top G\mathbb 1/K + \sqrt\phi
    \sqrt{w^\top G w}, \qquad
    \text{weights} = \mathbb 1/K + \frac{\sqrt\phi}{\|J^\top w^*\|}w^*,

  zero correction when :math:`\|J^\top w^*\| <` ``norm_eps`` (near Pareto
  stationarity). The dual is solved on the trace-normalised Gramian (the
  minimiser is scale-free) by spectral projected gradient (``max_iters``
  steps; ~1e-7 relative accuracy against SLSQP in float64). ``rescale`` 1
  divides by :math:`1 + c^2`, 2 by :math:`1 + c` (the official code's
  options; TorchJD: none).

  Args:
    gramian: float32 ``[K, K]``.
    c: :math:`c \ge 0` (0: the mean).
    rescale: 0, 1 or 2.
    norm_eps: threshold on :math:`\|J^\top w^*\|`.
    max_iters: projected-gradient step cap.

  Returns:
    float32 ``[K]``.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from optax_ext import alignment
    >>> g = jnp.array([[18.0, -22.0], [-22.0, 38.0]])
    >>> np.asarray(alignment.cagrad_weighting(g, c=0.5), float).round(4)
    array([0.7041, 0.5   ])
  """
  g = jnp.asarray(gramian, jnp.float32)
  k = g.shape[0]
  mean = jnp.full((k,), 1.0 / k, jnp.float32)
  trace = jnp.trace(g)
  g_hat = g / jnp.maximum(trace, 1e-30)
  sqrt_phi_hat = c * jnp.sqrt(jnp.maximum(mean @ g_hat @ mean, 0.0))
  b = g_hat @ mean

  def objective(w):
    return w @ b + sqrt_phi_hat * jnp.sqrt(w @ g_hat @ w + 1e-20)

  w_star = linalg.simplex_minimise(objective, mean, max_iters)
  gw_norm = jnp.sqrt(jnp.maximum(w_star @ g @ w_star, 0.0))
  sqrt_phi = c * jnp.sqrt(jnp.maximum(mean @ g @ mean, 0.0))
  ok = gw_norm >= norm_eps
  scale = jnp.where(ok, sqrt_phi / jnp.where(ok, gw_norm, 1.0), 0.0)
  weights = mean + scale * w_star
  divisor = jnp.where(rescale == 1, 1.0 + c**2, 1.0)
  divisor = jnp.where(rescale == 2, 1.0 + c, divisor)
  return weights / divisor


def aggregate_by_cagrad(
  c: float = 0.5,
  rescale: int = 0,
  norm_eps: float = 1e-4,
  max_iters: int = 200,
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""CAGrad: the mean gradient corrected towards the worst-off task.

  .. math::
    u = g_0 + \frac{\sqrt\phi}{\|g_w\|} g_w, \quad g_w = J^\top w^*,
    \quad \sqrt\phi = c\|g_0\|, \quad g_0 = \frac1K\sum_k g_k,

  the update within radius :math:`c\|g_0\|` of the mean that maximises
  the smallest task improvement (see :func:`cagrad_weighting`). ``K = 1``
  gives :math:`(1 + c)g`.

  Properties (TorchJD's): weighted, permutation-invariant; not
  non-conflicting, not linear under scaling.

  .. note::
    The official code solves the dual with SciPy's SLSQP and TorchJD with
    cvxpy; here a projected-gradient solver runs on device (golden values
    agree to 1e-4). Defaults follow the official function default
    :math:`c = 0.5` (Meta-World; the NYUv2 script uses 0.4).

  Args:
    c: :math:`c \ge 0`.
    rescale: 0 (none, TorchJD), 1 (:math:`/(1 + c^2)`), 2 (:math:`/(1 + c)`).
    norm_eps: zero correction below this :math:`\|g_w\|`.
    max_iters: solver step cap.
    axes: where the members live.

  Returns:
    An :class:`optax_ext.Aggregator` with state
    :class:`optax_ext.alignment.WeightingState`.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from optax_ext import alignment
    >>> tx = alignment.aggregate_by_cagrad(c=0.5)
    >>> jac = jnp.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    >>> np.asarray(tx.update(jac, tx.init(jnp.zeros(3)))[0], float).round(4)
    array([0.1835, 1.2041, 1.2041])

  References:
    Liu et al., `Conflict-Averse Gradient Descent for Multi-task Learning
    <https://arxiv.org/abs/2110.14048>`_, NeurIPS 2021.
  """
  where = 'aggregate_by_cagrad'
  validation.check_number(where, 'c', c, lower=0.0, allow_schedule=False)
  validation.check_one_of(where, 'rescale', rescale, (0, 1, 2))
  validation.check_number(
    where, 'norm_eps', norm_eps, lower=0.0, allow_schedule=False
  )
  validation.check_integer(where, 'max_iters', max_iters, lower=1)
  return _weighting.weighted_aggregator(
    where,
    lambda g: cagrad_weighting(g, c, rescale, norm_eps, max_iters),
    axes,
  )
