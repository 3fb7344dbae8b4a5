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

import functools

import jax
import jax.numpy as jnp

from optax_ext._src import base
from optax_ext._src import linalg
from optax_ext._src import metadata
from optax_ext._src import population as pop_lib
from optax_ext._src import validation
from optax_ext.alignment import _weighting


def cagrad_dual(g_hat: jax.Array, c: float, max_iters: int = 200) -> jax.Array:
  r"""The minimiser :math:`w^*` of CAGrad's dual on a normalised Gramian.

  .. math::
    w^* = \arg\min_{w \in \Delta} f(w), \qquad f(w) = w^\top \hat G
    \mathbb 1/K + c\sqrt{\mathbb 1^\top\hat G\mathbb 1}/K\,
    \sqrt{w^\top \hat G w}.

  :math:`f` is convex but not differentiable where :math:`J^\top w = 0`,
  which is exactly where the minimiser lies for (weakly) stationary
  Jacobians. Two candidates are compared on :math:`f`: spectral projected
  gradient (:func:`optax_ext._src.linalg.simplex_minimise`, ``max_iters``
  iterations from :math:`\mathbb 1/K`), accurate where :math:`f` is smooth
  at the minimiser, and the exact minimum-norm point of the hull (MGDA's
  :math:`\arg\min_{w\in\Delta} w^\top\hat Gw`, active set), which is
  the minimiser whenever :math:`\min f = 0` is reached at :math:`J^\top w =
  0` (where gradient methods converge slowly, like a square root).

  Args:
    g_hat: ``[K, K]`` Gramian normalised to trace 1 (any scale works).
    c: :math:`c \ge 0`.
    max_iters: projected-gradient iteration cap.

  Returns:
    ``[K]`` on the simplex, in ``g_hat``'s dtype.
  """
  k = g_hat.shape[0]
  dtype = g_hat.dtype
  mean = jnp.full((k,), 1.0 / k, dtype)
  sqrt_phi = c * jnp.sqrt(jnp.maximum(mean @ g_hat @ mean, 0.0))
  b = g_hat @ mean

  def objective(w, smoothing=0.0):
    q = jnp.maximum(w @ g_hat @ w, 0.0)
    return w @ b + sqrt_phi * jnp.sqrt(q + smoothing)

  # A tiny smoothing keeps the gradient finite at J^T w = 0 (float32
  # rounding can make the quadratic form 0 or slightly negative there).
  smooth = functools.partial(objective, smoothing=jnp.finfo(dtype).tiny)
  w_spg = linalg.simplex_minimise(smooth, mean, max_iters)
  w_min_norm = linalg.simplex_min_quadratic(g_hat)
  return jnp.where(objective(w_min_norm) < objective(w_spg), w_min_norm, w_spg)


@metadata.describe(citations=('liu2021conflict',))
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
    \text{weights} = \mathbb 1/K + \frac{\sqrt\phi}{\|J^\top w^*\|}w^*.

  The dual is solved on the trace-normalised Gramian :math:`\hat G` (the
  minimiser is scale-free; ``cagrad_dual`` below). The correction is zero,
  leaving the mean, when :math:`\sqrt{w^{*\top}\hat G w^*} <`
  ``norm_eps`` (near Pareto stationarity; a threshold relative to the
  Jacobian's scale), or zero weights when :math:`c \ge 1` (see
  :func:`aggregate_by_cagrad`). ``rescale`` 1 divides by :math:`1 +
  c^2`, 2 by :math:`1 + c` (the official code's options; TorchJD: none).

  Args:
    gramian: ``[K, K]`` (float32, or float64 solved in float64).
    c: :math:`c \ge 0` (0: the mean).
    rescale: 0, 1 or 2.
    norm_eps: threshold on :math:`\|J^\top w^*\|/\sqrt{\mathrm{tr}\,G}`.
    max_iters: projected-gradient iteration cap.

  Returns:
    ``[K]`` in the solve dtype (float32, float64 for a float64 Gramian).

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from optax_ext import alignment
    >>> g = jnp.array([[18.0, -22.0], [-22.0, 38.0]])
    >>> np.asarray(alignment.cagrad_weighting(g, c=0.5), float).round(4)
    array([0.7041, 0.5   ])
  """
  g = linalg.solve_dtype_gramian(gramian)
  k = g.shape[0]
  mean = jnp.full((k,), 1.0 / k, g.dtype)
  trace = jnp.trace(g)
  g_hat = g / jnp.maximum(trace, jnp.finfo(g.dtype).tiny)
  w_star = cagrad_dual(g_hat, c, max_iters)
  gw_norm = jnp.sqrt(jnp.maximum(w_star @ g_hat @ w_star, 0.0))
  sqrt_phi = c * jnp.sqrt(jnp.maximum(mean @ g_hat @ mean, 0.0))
  ok = (gw_norm >= norm_eps) & (gw_norm > 0)
  scale = jnp.where(ok, sqrt_phi / jnp.where(ok, gw_norm, 1.0), 0.0)
  # Degenerate (0 is in the hull of the task gradients, to norm_eps): every
  # update has some task with <g_k, u> <= 0, so the primal optimum is 0.
  # With c >= 1 the ball |u - g_0| <= c |g_0| holds u = 0, which attains it;
  # with c < 1 it does not, and the official code's mean is kept.
  base_weights = jnp.where(ok | (c < 1.0), mean, jnp.zeros_like(mean))
  weights = base_weights + scale * w_star
  divisor = jnp.where(rescale == 1, 1.0 + c**2, 1.0)
  divisor = jnp.where(rescale == 2, 1.0 + c, divisor)
  return (weights / divisor).astype(g.dtype)


@metadata.describe(
  citations=('liu2021conflict',),
  properties=metadata.Properties(
    robust=False,
    multitask=metadata.Multitask(
      non_conflicting=False,
      linear_under_scaling=False,
      permutation_invariant=True,
      homogeneity_degree=1,
    ),
  ),
  case=metadata.Case(
    kind='aggregator',
    hyperparams=('c', 'norm_eps'),
    rosenbrock=(1e-3, 20000),
    static_args=('rescale',),
    population='aligned',
  ),
  benchmarks=(
    metadata.Benchmark('multitask', 'cagrad', peer=('CAGrad', {'c': 0.5})),
  ),
  row=metadata.Row(
    'multi-task',
    'CAGrad',
    papers='[Liu et al. 2021](https://arxiv.org/abs/2110.14048)',
    also=('cagrad_weighting',),
  ),
)
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

  Properties (TorchJD's): weighted, permutation-invariant; not linear
  under scaling; non-conflicting for :math:`c \ge 1` (at the dual optimum
  :math:`\min_k\langle g_k, u\rangle = f(w^*) \ge (c - 1)\|g_0\|
  \|g_w\| \ge 0`, and 0 where the correction degenerates), not for
  :math:`c < 1`.

  .. note::
    The official code solves the dual with SciPy's SLSQP and TorchJD with
    cvxpy (Clarabel); here it is solved on device (``cagrad_dual``:
    spectral projected gradient with a non-monotone line search, and the
    exact minimum-norm point for the non-smooth case; within 2e-6 of
    SLSQP's objective in float64, 2e-5 in float32, on TorchJD-style
    stationary and non-stationary families). Defaults follow the official
    function default :math:`c = 0.5` (Meta-World; the NYUv2 script uses
    0.4).

  .. note::
    When the correction degenerates (:math:`\|J^\top w^*\|` below
    ``norm_eps`` relative to :math:`\sqrt{\mathrm{tr}\,G}`, i.e. near a
    Pareto-stationary point) the dual's :math:`\hat g_w` has no direction.
    For :math:`c \ge 1` the update is 0, as TorchJD's: a non-negative
    combination of the tasks then (nearly) cancels, so no update improves
    every task, and 0 lies in the ball :math:`\|u - g_0\| \le c\|g_0\|`
    and attains the primal optimum (the mean would conflict). For
    :math:`c < 1` the ball excludes 0 and the update is the mean
    :math:`g_0`, as the official code's (it divides by :math:`\|g_w\| +
    10^{-4}`).

  .. note::
    TorchJD also returns 0 when :math:`\mathrm{tr}\,G` is below its
    ``norm_eps`` (an absolute threshold: every Jacobian of norm below
    :math:`10^{-2}`); here every threshold is relative, so
    :math:`A(tJ) = tA(J)` at every scale :math:`t` (tested from
    :math:`10^{-10}` to :math:`10^{10}`).

  Args:
    c: :math:`c \ge 0`.
    rescale: 0 (none, TorchJD), 1 (:math:`/(1 + c^2)`), 2 (:math:`/(1 + c)`).
    norm_eps: zero correction below this
      :math:`\|g_w\| / \sqrt{\mathrm{tr}\,G}` (scale-free).
    max_iters: projected-gradient iteration cap.
    axes: where the members live.

  Returns:
    An :class:`optax_ext.Aggregator` with state
    :class:`optax_ext.alignment.AggregateByWeightingState`.

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
