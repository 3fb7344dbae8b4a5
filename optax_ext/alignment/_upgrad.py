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
"""UPGrad and DualProj: projections onto the dual cone of the task gradients."""

import jax
import jax.numpy as jnp

from optax_ext._src import base
from optax_ext._src import linalg
from optax_ext._src import metadata
from optax_ext._src import population as pop_lib
from optax_ext._src import validation
from optax_ext.alignment import _weighting


def _preferences(gramian, preferences):
  k = gramian.shape[0]
  if preferences is None:
    return jnp.full((k,), 1.0 / k, gramian.dtype)
  p = jnp.asarray(preferences, gramian.dtype)
  if p.shape != (k,):
    raise ValueError(
      f'`preferences` must have shape ({k},), one per task, got {p.shape}.'
    )
  return p


@metadata.describe(citations=('quinton2024jacobian',))
def upgrad_weighting(
  gramian: jax.Array,
  preferences: jax.Array | None = None,
  norm_eps: float = 1e-4,
  reg_eps: float = 1e-4,
) -> jax.Array:
  r"""UPGrad weights: every row projected onto the dual cone, then averaged.

  With :math:`\hat G = G / \mathrm{tr}\,G + \epsilon_r I` (``G / tr G``
  taken as 0 when ``tr G < norm_eps``), projecting the row
  :math:`p_i g_i` onto the dual cone :math:`\{y: Jy \ge 0\}` gives
  :math:`J^\top v_i` with :math:`v_i = \arg\min_{v \ge p_i e_i} v^\top \hat G
  v`; the weights are :math:`\sum_i v_i`. The ``K`` box QPs run as one
  batch of the on-device active-set solver, which keeps the inverse of
  each passive block and updates it as indices join and leave
  (:math:`O(K^2)` a step rather than a :math:`K^3` factorisation).

  Args:
    gramian: float32 ``[K, K]``.
    preferences: ``[K]`` preference weights ``p`` (default ``1/K``).
    norm_eps: below this trace the Gramian counts as zero.
    reg_eps: ridge added to the normalised Gramian.

  Returns:
    float32 ``[K]``.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from optax_ext import alignment
    >>> g = jnp.array([[18.0, -22.0], [-22.0, 38.0]])
    >>> np.asarray(alignment.upgrad_weighting(g), float).round(4)
    array([1.1109, 0.7894])
  """
  g = linalg.solve_dtype_gramian(gramian)
  p = _preferences(g, preferences)
  g_hat = linalg.normalised_gramian(g, norm_eps, reg_eps)
  lowers = jnp.diag(p)
  v = linalg.box_qp(g_hat, lowers)  # the K problems as one batch
  return jnp.sum(v, axis=0)


@metadata.describe(citations=('lopezpaz2017gradient', 'quinton2024jacobian'))
def dualproj_weighting(
  gramian: jax.Array,
  preferences: jax.Array | None = None,
  norm_eps: float = 1e-4,
  reg_eps: float = 1e-4,
) -> jax.Array:
  r"""DualProj weights: the weighted mean projected onto the dual cone.

  :math:`w = \arg\min_{v \ge p} v^\top \hat G v` (one box QP), so
  :math:`J^\top w` is the projection of :math:`J^\top p` onto
  :math:`\{y: Jy \ge 0\}` (as GEM's projection).

  Args:
    gramian: float32 ``[K, K]``.
    preferences: ``[K]`` (default ``1/K``).
    norm_eps: below this trace the Gramian counts as zero.
    reg_eps: ridge added to the normalised Gramian.

  Returns:
    float32 ``[K]``.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from optax_ext import alignment
    >>> g = jnp.array([[18.0, -22.0], [-22.0, 38.0]])
    >>> np.asarray(alignment.dualproj_weighting(g), float).round(4)
    array([0.6109, 0.5   ])
  """
  g = linalg.solve_dtype_gramian(gramian)
  p = _preferences(g, preferences)
  return linalg.box_qp(linalg.normalised_gramian(g, norm_eps, reg_eps), p)


def _check(where, norm_eps, reg_eps):
  validation.check_number(
    where, 'norm_eps', norm_eps, lower=0.0, allow_schedule=False
  )
  validation.check_positive(where, 'reg_eps', reg_eps, allow_schedule=False)


@metadata.describe(
  citations=('quinton2024jacobian',),
  properties=metadata.Properties(
    robust=False,
    multitask=metadata.Multitask(
      non_conflicting=True,
      linear_under_scaling=True,
      permutation_invariant=True,
      homogeneity_degree=1,
    ),
  ),
  case=metadata.Case(
    kind='aggregator',
    hyperparams=('norm_eps', 'reg_eps'),
    rosenbrock=(1e-3, 20000),
    population='aligned',
  ),
  benchmarks=(metadata.Benchmark('multitask', 'upgrad', peer=('UPGrad', {})),),
  row=metadata.Row(
    'multi-task',
    'UPGrad',
    papers='[Quinton & Rey 2024](https://arxiv.org/abs/2406.16232)',
    also=('upgrad_weighting',),
  ),
)
def aggregate_by_upgrad(
  preferences: jax.Array | None = None,
  norm_eps: float = 1e-4,
  reg_eps: float = 1e-4,
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""UPGrad: the mean of the task gradients projected onto the dual cone.

  .. math::
    u = \frac1K\sum_i \pi_{J}(g_i), \qquad \pi_J(x) = \arg\min_{y: Jy \ge 0}
    \|y - x\|,

  computed from the Gramian (see :func:`upgrad_weighting`). The update
  conflicts with no task (:math:`Ju \ge 0`, up to the ridge ``reg_eps``).

  Properties (TorchJD's): non-conflicting, linear under scaling, weighted,
  permutation-invariant: the only rule with all four.

  .. note::
    TorchJD solves the ``K`` QPs in float64 with ``quadprog`` on the host;
    here an active-set solver runs on device in float32 (golden values
    agree to 1e-4).

  Args:
    preferences: ``[K]`` preferences ``p`` (default ``1/K``: the mean;
      ``ones`` gives the sum convention, ``K`` times larger).
    norm_eps: below this Gramian trace the update is the plain weighted
      sum.
    reg_eps: ridge on the normalised Gramian (``> 0``).
    axes: where the members live.

  Returns:
    An :class:`optax_ext.Aggregator` with state
    :class:`optax_ext.alignment.AggregateByWeightingState`.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from optax_ext import alignment
    >>> tx = alignment.aggregate_by_upgrad()
    >>> jac = jnp.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    >>> np.asarray(tx.update(jac, tx.init(jnp.zeros(3)))[0], float).round(4)
    array([0.2929, 1.9004, 1.9004])

  References:
    Quinton and Rey, `Jacobian Descent for Multi-Objective
    Optimization <https://arxiv.org/abs/2406.16232>`_, 2024; reference code
    `TorchJD <https://github.com/TorchJD/torchjd>`_.
  """
  where = 'aggregate_by_upgrad'
  _check(where, norm_eps, reg_eps)
  validation.check_preferences(where, preferences)
  return _weighting.weighted_aggregator(
    where,
    lambda g: upgrad_weighting(g, preferences, norm_eps, reg_eps),
    axes,
  )


@metadata.describe(
  citations=('lopezpaz2017gradient', 'quinton2024jacobian'),
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
    hyperparams=('norm_eps', 'reg_eps'),
    rosenbrock=(1e-3, 20000),
    population='aligned',
  ),
  benchmarks=(
    metadata.Benchmark('multitask', 'dualproj', peer=('DualProj', {})),
  ),
  row=metadata.Row(
    'multi-task',
    'DualProj',
    papers='[Lopez-Paz & Ranzato 2017](https://arxiv.org/abs/1706.08840)',
    also=('dualproj_weighting',),
  ),
)
def aggregate_by_dualproj(
  preferences: jax.Array | None = None,
  norm_eps: float = 1e-4,
  reg_eps: float = 1e-4,
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""DualProj: the weighted mean projected onto the dual cone.

  .. math::
    u = \pi_J\Big(\sum_k p_k g_k\Big), \qquad \pi_J(x) = \arg\min_{y: Jy
    \ge 0} \|y - x\|.

  Properties (TorchJD's): non-conflicting, weighted, permutation-invariant;
  not linear under scaling.

  Args:
    preferences: ``[K]`` (default ``1/K``).
    norm_eps: below this Gramian trace the update is the plain weighted
      sum.
    reg_eps: ridge on the normalised Gramian (``> 0``).
    axes: where the members live.

  Returns:
    An :class:`optax_ext.Aggregator` with state
    :class:`optax_ext.alignment.AggregateByWeightingState`.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from optax_ext import alignment
    >>> tx = alignment.aggregate_by_dualproj()
    >>> jac = jnp.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    >>> np.asarray(tx.update(jac, tx.init(jnp.zeros(3)))[0], float).round(4)
    array([0.5563, 1.1109, 1.1109])

  References:
    Lopez-Paz and Ranzato, `Gradient Episodic Memory for
    Continual Learning <https://arxiv.org/abs/1706.08840>`_, NeurIPS 2017;
    Quinton and Rey, `Jacobian Descent for Multi-Objective Optimization
    <https://arxiv.org/abs/2406.16232>`_, 2024.
  """
  where = 'aggregate_by_dualproj'
  _check(where, norm_eps, reg_eps)
  validation.check_preferences(where, preferences)
  return _weighting.weighted_aggregator(
    where,
    lambda g: dualproj_weighting(g, preferences, norm_eps, reg_eps),
    axes,
  )
