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
"""Nash-MTL: the Nash bargaining solution of the tasks."""

import jax
from jax import lax
import jax.numpy as jnp

from optax_ext._src import base
from optax_ext._src import linalg
from optax_ext._src import metadata
from optax_ext._src import population as pop_lib
from optax_ext._src import validation
from optax_ext.alignment import _weighting


@metadata.describe(citations=('navon2022multitask',))
def nash_mtl_weighting(
  gramian: jax.Array,
  max_norm: float = 1.0,
  num_iters: int = 20,
  norm_eps: float = 0.0,
) -> jax.Array:
  r"""Nash-MTL weights: :math:`\alpha > 0`, :math:`(G\alpha)_k = 1/\alpha_k`.

  The stationarity condition of the strictly convex :math:`\tfrac12
  \alpha^\top G\alpha - \sum_k \log\alpha_k`, solved by damped Newton
  (``num_iters`` steps from :math:`\alpha_k = 1/\sqrt{G_{kk}}`, staying
  positive, backtracking on the objective) on the trace-normalised Gramian
  with a ``1e-6`` ridge, then rescaled (:math:`J^\top\alpha` does not
  depend on the scale of :math:`J`). If ``max_norm > 0`` and
  :math:`\|J^\top\alpha\|` exceeds ``max_norm`` the weights are scaled down
  to it. Zero weights when the Gramian's trace is at most ``norm_eps``
  (default 0: only an all-zero population; the weights are otherwise
  computed at every scale, as TorchJD's, which normalises without a
  threshold).

  Args:
    gramian: ``[K, K]`` (float64 is solved in float64, others in float32).
    max_norm: clip of the update norm (``0``: none).
    num_iters: Newton steps.
    norm_eps: at or below this Gramian trace the weights are zero
      (absolute; default 0).

  Returns:
    float32 ``[K]``.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from optax_ext import alignment
    >>> g = jnp.array([[18.0, -22.0], [-22.0, 38.0]])
    >>> w = alignment.nash_mtl_weighting(g, max_norm=0.0)
    >>> np.asarray(w, float).round(4)
    array([0.5915, 0.4071])
  """
  g = linalg.solve_dtype_gramian(gramian)
  k = g.shape[0]
  trace = jnp.trace(g)
  ok = trace > norm_eps
  s = jnp.where(ok, trace, 1.0)
  g_hat = g / s + 1e-6 * jnp.eye(k, dtype=g.dtype)

  def objective(a):
    return 0.5 * a @ g_hat @ a - jnp.sum(jnp.log(a))

  def newton(_, a):
    grad = g_hat @ a - 1.0 / a
    hess = g_hat + jnp.diag(1.0 / a**2)
    d = -jnp.linalg.solve(hess, grad)
    # Largest step keeping alpha positive (fraction to the boundary 0.99).
    ratios = jnp.where(d < 0, -a / jnp.where(d < 0, d, -1.0), jnp.inf)
    t = jnp.minimum(1.0, 0.99 * jnp.min(ratios))
    f0 = objective(a)

    def bt_cond(c):
      t, n = c
      return (objective(a + t * d) > f0 + 1e-4 * t * grad @ d) & (n < 30)

    t, _ = lax.while_loop(bt_cond, lambda c: (c[0] / 2, c[1] + 1), (t, 0))
    return a + t * d

  a0 = 1.0 / jnp.sqrt(jnp.maximum(jnp.diag(g_hat), 1e-12))
  alpha = lax.fori_loop(0, num_iters, newton, a0) / jnp.sqrt(s)
  norm = jnp.sqrt(jnp.maximum(alpha @ g @ alpha, 0.0))
  clip = (max_norm > 0) & (norm > max_norm)
  alpha = jnp.where(clip, alpha * max_norm / jnp.where(clip, norm, 1.0), alpha)
  return jnp.where(ok, alpha, 0.0)


# Battery case: Nash-MTL's update has norm sqrt(K) (clipped to max_norm)
# whatever the gradient's size: a normalised method, so the rate must decay.
@metadata.describe(
  citations=('navon2022multitask',),
  properties=metadata.Properties(
    robust=False,
    multitask=metadata.Multitask(
      non_conflicting=True,
      linear_under_scaling=False,
      permutation_invariant=True,
      homogeneity_degree=0,
    ),
  ),
  case=metadata.Case(
    kind='aggregator',
    hyperparams=('max_norm', 'norm_eps'),
    lr=metadata.cosine_decay(0.05, 500),
    rosenbrock=(metadata.cosine_decay(3e-3, 20000), 20000),
    population='aligned',
  ),
  benchmarks=(
    metadata.Benchmark(
      'multitask', 'nash_mtl', peer=('NashMTL', {'n_tasks': 8})
    ),
  ),
  row=metadata.Row(
    'multi-task',
    'Nash-MTL',
    papers='[Navon et al. 2022](https://arxiv.org/abs/2202.01017)',
    also=('nash_mtl_weighting',),
  ),
)
def aggregate_by_nash_mtl(
  max_norm: float = 1.0,
  num_iters: int = 20,
  norm_eps: float = 0.0,
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""Nash-MTL: tasks bargain over the update (Nash bargaining solution).

  .. math::
    u = J^\top\alpha, \qquad (G\alpha)_k = 1/\alpha_k \ \forall k,

  i.e. every task's share :math:`\alpha_k\langle g_k, u\rangle = 1`; the
  update norm is clipped to ``max_norm`` (TorchJD's default 1, which binds
  at the exact solution, where :math:`\|u\|^2 = K`).

  Properties (TorchJD's): non-conflicting, weighted,
  permutation-invariant; not linear under scaling.

  .. note::
    The official code and TorchJD solve a sequence of convex programs with
    cvxpy (``optim_niter`` 20) and update the weights every few steps; here
    the stationarity condition is solved directly by damped Newton on
    device every step. The exact solution is the same; iterates of the
    reference's approximation are not reproduced bit for bit.

  Args:
    max_norm: clip of the update norm (``0``: none).
    num_iters: Newton steps.
    norm_eps: at or below this Gramian trace the update is zero
      (absolute; default 0).
    axes: where the members live.

  Returns:
    An :class:`optax_ext.Aggregator` with state
    :class:`optax_ext.alignment.AggregateByWeightingState`.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from optax_ext import alignment
    >>> tx = alignment.aggregate_by_nash_mtl(max_norm=0.0)
    >>> jac = jnp.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    >>> np.asarray(tx.update(jac, tx.init(jnp.zeros(3)))[0], float).round(3)
    array([0.077, 0.999, 0.999])

  References:
    Navon et al., `Multi-Task Learning as a Bargaining Game
    <https://arxiv.org/abs/2202.01017>`_, ICML 2022.
  """
  where = 'aggregate_by_nash_mtl'
  validation.check_non_negative(
    where, 'max_norm', max_norm, allow_schedule=False
  )
  validation.check_integer(where, 'num_iters', num_iters, lower=1)
  validation.check_number(
    where, 'norm_eps', norm_eps, lower=0.0, allow_schedule=False
  )
  return _weighting.weighted_aggregator(
    where, lambda g: nash_mtl_weighting(g, max_norm, num_iters, norm_eps), axes
  )
