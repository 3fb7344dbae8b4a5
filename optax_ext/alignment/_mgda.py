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
"""MGDA: the minimum-norm point of the convex hull of the task gradients."""

import jax

from optax_ext._src import base
from optax_ext._src import linalg
from optax_ext._src import metadata
from optax_ext._src import population as pop_lib
from optax_ext._src import validation
from optax_ext.alignment import _weighting

_SOLVERS = ('frank_wolfe', 'active_set')


@metadata.describe(citations=('desideri2012mgda', 'sener2018multitask'))
def mgda_weighting(
  gramian: jax.Array,
  max_iters: int = 100,
  epsilon: float = 1e-3,
  solver: str = 'frank_wolfe',
) -> jax.Array:
  r"""MGDA weights :math:`w^* = \arg\min_{w \in \Delta} w^\top G w`.

  ``'frank_wolfe'`` (TorchJD's, the default): from :math:`\mathbb 1/K`,
  exact line search towards the best vertex, stopping when the step is
  below ``epsilon`` or after ``max_iters`` steps; exact for ``K = 2``.
  ``'active_set'``: :math:`w^* = v/\mathbb 1^\top v` with :math:`v =
  \arg\min_{v \ge 0} \tfrac12 v^\top \hat G v - \mathbb 1^\top v` (same KKT
  system), solved to rounding by the on-device active-set solver.

  Args:
    gramian: float32 ``[K, K]``.
    max_iters: Frank-Wolfe step cap.
    epsilon: Frank-Wolfe stopping step size.
    solver: ``'frank_wolfe'`` or ``'active_set'``.

  Returns:
    float32 ``[K]`` on the simplex.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from optax_ext import alignment
    >>> alignment.mgda_weighting(jnp.array([[18.0, -22.0], [-22.0, 38.0]]))
    Array([0.6, 0.4], dtype=float32)
  """
  g = linalg.solve_dtype_gramian(gramian)
  if solver == 'frank_wolfe':
    return linalg.simplex_min_quadratic_fw(g, max_iters, epsilon)
  return linalg.simplex_min_quadratic(g)


@metadata.describe(
  citations=('desideri2012mgda', 'sener2018multitask'),
  properties=metadata.Properties(
    robust=False,
    multitask=metadata.Multitask(
      non_conflicting=True,
      linear_under_scaling=False,
      permutation_invariant=True,
      homogeneity_degree=1,
    ),
  ),
  case=metadata.Case(
    kind='aggregator',
    hyperparams=('max_iters', 'epsilon'),
    rosenbrock=(1e-3, 20000),
    population='aligned',
  ),
  benchmarks=(metadata.Benchmark('multitask', 'mgda', peer=('MGDA', {})),),
  row=metadata.Row(
    'multi-task',
    'MGDA',
    papers=(
      '[Désidéri '
      '2012](https://doi.org/10.1016/j.crma.2012.03.014), [Sener &'
      ' Koltun 2018](https://arxiv.org/abs/1810.04650)'
    ),
    also=('mgda_weighting',),
  ),
)
def aggregate_by_mgda(
  max_iters: int = 100,
  epsilon: float = 1e-3,
  solver: str = 'frank_wolfe',
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""MGDA: the minimum-norm convex combination of the task gradients.

  .. math::
    u = J^\top w^*, \qquad w^* = \arg\min_{w \in \Delta} \|J^\top w\|^2,

  a common descent direction for every task (zero at Pareto
  stationarity). Properties (TorchJD's): non-conflicting, weighted,
  permutation-invariant at the exact optimum; not linear under scaling
  (sensitive to the tasks' gradient scales); it can shrink updates to ~0.

  Args:
    max_iters: Frank-Wolfe step cap (TorchJD: 100).
    epsilon: Frank-Wolfe stopping step size (TorchJD: 1e-3).
    solver: ``'frank_wolfe'`` (TorchJD's) or ``'active_set'`` (exact).
    axes: where the members live.

  Returns:
    An :class:`optax_ext.Aggregator` with state
    :class:`optax_ext.alignment.AggregateByWeightingState`.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from optax_ext import alignment
    >>> tx = alignment.aggregate_by_mgda()
    >>> jac = jnp.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    >>> u, _ = tx.update(jac, tx.init(jnp.zeros(3)))
    >>> np.asarray(u, float).round(4) + 0.0
    array([0., 1., 1.])

  References:
    Desideri, `Multiple-gradient descent algorithm (MGDA) for
    multiobjective optimization <https://doi.org/10.1016/j.crma.2012.03.014>`_,
    2012; Sener and Koltun, `Multi-Task Learning as Multi-Objective
    Optimization <https://arxiv.org/abs/1810.04650>`_, NeurIPS 2018.
  """
  where = 'aggregate_by_mgda'
  validation.check_integer(where, 'max_iters', max_iters, lower=1)
  validation.check_number(
    where, 'epsilon', epsilon, lower=0.0, allow_schedule=False
  )
  validation.check_one_of(where, 'solver', solver, _SOLVERS)
  return _weighting.weighted_aggregator(
    where, lambda g: mgda_weighting(g, max_iters, epsilon, solver), axes
  )
