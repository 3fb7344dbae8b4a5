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
"""Aligned-MTL, IMTL-G and ConFIG: spectral weightings of the Gramian."""

import jax
import jax.numpy as jnp

from optax_ext._src import base
from optax_ext._src import linalg
from optax_ext._src import metadata
from optax_ext._src import population as pop_lib
from optax_ext._src import validation
from optax_ext.alignment import _weighting

_SCALES = ('min', 'median', 'rmse')


@metadata.describe(citations=('senushkin2023independent',))
def aligned_mtl_weighting(
  gramian: jax.Array,
  preferences: jax.Array | None = None,
  scale_mode: str = 'min',
) -> jax.Array:
  r"""Aligned-MTL weights: the Gramian's spectrum equalised, then preferences.

  :math:`G = V\Lambda V^\top`; keeping eigenvalues above
  :math:`\lambda_{\max} K \epsilon_{f32}`, :math:`B = \sqrt\sigma\,
  V_r\Lambda_r^{-1/2}V_r^\top` with :math:`\sigma` the smallest kept
  eigenvalue (``'min'``), their median or mean (``'rmse'``); weights
  :math:`Bp`. Rank 0 gives :math:`B = I`.

  Args:
    gramian: float32 ``[K, K]``.
    preferences: ``[K]`` (default ``1/K``).
    scale_mode: ``'min'``, ``'median'`` or ``'rmse'``.

  Returns:
    float32 ``[K]``.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from optax_ext import alignment
    >>> g = jnp.array([[18.0, -22.0], [-22.0, 38.0]])
    >>> np.asarray(alignment.aligned_mtl_weighting(g), float).round(4)
    array([0.5591, 0.4083])
  """
  g = linalg.solve_dtype_gramian(gramian)
  k = g.shape[0]
  p = (
    jnp.full((k,), 1.0 / k, g.dtype)
    if preferences is None
    else jnp.asarray(preferences, g.dtype)
  )
  evals, evecs = jnp.linalg.eigh(g)
  tol = jnp.max(evals) * k * jnp.finfo(g.dtype).eps
  keep = evals > tol
  rank = jnp.sum(keep)
  safe = jnp.where(keep, evals, 1.0)
  if scale_mode == 'min':
    sigma = jnp.min(jnp.where(keep, evals, jnp.inf))
  elif scale_mode == 'median':
    # The lower median of the kept eigenvalues (sorted ascending by eigh).
    order = jnp.argsort(jnp.where(keep, evals, jnp.inf))
    sigma = evals[order[jnp.maximum(rank - 1, 0) // 2]]
  else:
    sigma = jnp.sum(jnp.where(keep, evals, 0.0)) / jnp.maximum(rank, 1)
  inv_sqrt = jnp.where(keep, 1.0 / jnp.sqrt(safe), 0.0)
  b = jnp.sqrt(jnp.maximum(sigma, 0.0)) * (evecs * inv_sqrt) @ evecs.T
  b = jnp.where(rank > 0, b, jnp.eye(k, dtype=g.dtype))
  return b @ p


@metadata.describe(citations=('liu2021towards',))
def imtl_g_weighting(gramian: jax.Array) -> jax.Array:
  r"""IMTL-G weights: equal projections on every unit task gradient.

  :math:`v = G^+\,\mathrm{diag}(G)^{1/2}`, weights :math:`v / \mathbb
  1^\top v` (zero when :math:`|\mathbb 1^\top v| < 10^{-12}`).

  Args:
    gramian: float32 ``[K, K]``.

  Returns:
    float32 ``[K]``.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from optax_ext import alignment
    >>> g = jnp.array([[18.0, -22.0], [-22.0, 38.0]])
    >>> np.asarray(alignment.imtl_g_weighting(g), float).round(4)
    array([0.5923, 0.4077])
  """
  g = linalg.solve_dtype_gramian(gramian)
  d = jnp.sqrt(jnp.maximum(jnp.diag(g), 0.0))
  v = linalg.symmetric_pinv(g) @ d
  total = jnp.sum(v)
  ok = jnp.abs(total) >= 1e-12
  return jnp.where(ok, v / jnp.where(ok, total, 1.0), 0.0)


@metadata.describe(citations=('liu2025config',))
def config_weighting(
  gramian: jax.Array, preferences: jax.Array | None = None
) -> jax.Array:
  r"""ConFIG weights in Gramian form.

  With unit rows :math:`U = D^{-1}J`, :math:`D = \mathrm{diag}\sqrt{G_{kk}}`:
  :math:`v = U^+p`, :math:`\hat v = v/\|v\|`, update :math:`(\sum_k\langle
  g_k, \hat v\rangle)\hat v`. Equivalently :math:`c = (D^{-1}GD^{-1})^+p`,
  :math:`b = D^{-1}c`, weights :math:`(\mathbb 1^\top Gb / b^\top Gb)\,b`;
  zero rows get zero weight. When :math:`UU^+p` (the part of :math:`p` the
  unit rows can reach) is below :math:`\sqrt{\epsilon}\,\|p\|` of the
  solve dtype, :math:`v` vanishes and the weights are 0.

  Args:
    gramian: float32 ``[K, K]``.
    preferences: ``[K]`` (default ones, as TorchJD).

  Returns:
    float32 ``[K]``.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from optax_ext import alignment
    >>> g = jnp.array([[18.0, -22.0], [-22.0, 38.0]])
    >>> np.asarray(alignment.config_weighting(g), float).round(4)
    array([1.2265, 0.8441])
  """
  g = linalg.solve_dtype_gramian(gramian)
  k = g.shape[0]
  p = (
    jnp.ones((k,), g.dtype)
    if preferences is None
    else jnp.asarray(preferences, g.dtype)
  )
  diag = jnp.diag(g)
  scale = jnp.max(jnp.abs(diag))
  nonzero = diag > 1e-12 * jnp.maximum(scale, 1e-30)
  d_inv = jnp.where(nonzero, 1.0 / jnp.sqrt(jnp.where(nonzero, diag, 1.0)), 0.0)
  unit_gram = d_inv[:, None] * g * d_inv[None, :]
  c = linalg.symmetric_pinv(unit_gram) @ p
  # U v = U U^+ p = A A^+ p is p's part in the range of the unit rows; when
  # it vanishes next to p, v = U^+ p is 0 in exact arithmetic and its
  # computed direction rounding noise (rank-1 rows of both signs with
  # balanced preferences): the update is then defined as 0. The test is
  # scale-free (A has a unit diagonal) and invariant to positive row scalings
  # and permutations, so linearity and permutation invariance keep holding.
  in_range = jnp.linalg.norm(unit_gram @ c)
  degenerate = in_range <= jnp.sqrt(jnp.finfo(g.dtype).eps) * jnp.linalg.norm(p)
  b = d_inv * c
  gb = g @ b
  denom = b @ gb
  ok = (denom > 1e-30) & ~degenerate
  return jnp.where(ok, (jnp.sum(gb) / jnp.where(ok, denom, 1.0)) * b, 0.0)


@metadata.describe(
  citations=('senushkin2023independent',),
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
    kind='aggregator', rosenbrock=(1e-3, 20000), population='aligned'
  ),
  benchmarks=(
    metadata.Benchmark('multitask', 'aligned_mtl', peer=('AlignedMTL', {})),
  ),
  row=metadata.Row(
    'multi-task',
    'Aligned-MTL',
    papers='[Senushkin et al. 2023](https://arxiv.org/abs/2305.19000)',
    also=('aligned_mtl_weighting',),
  ),
)
def aggregate_by_aligned_mtl(
  preferences: jax.Array | None = None,
  scale_mode: str = 'min',
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""Aligned-MTL: task gradients with an equalised spectrum, then preferences.

  The components of the task gradients along the Gramian's principal
  directions are rescaled to equal strength (condition number 1), see
  :func:`aligned_mtl_weighting`; near-collinear tasks give a tiny
  :math:`\lambda_{\min}` and so a tiny update with ``'min'``.

  Properties: weighted, permutation-invariant; not non-conflicting, not
  linear under scaling.

  .. note::
    TorchJD averages (``p = 1/K``, the default here); the official
    SamsungLabs code sums (``preferences=jnp.ones(K)``, ``K`` times larger).

  Args:
    preferences: ``[K]`` (default ``1/K``).
    scale_mode: ``'min'`` (default), ``'median'`` or ``'rmse'``.
    axes: where the members live.

  Returns:
    An :class:`optax_ext.Aggregator` with state
    :class:`optax_ext.alignment.AggregateByWeightingState`.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from optax_ext import alignment
    >>> tx = alignment.aggregate_by_aligned_mtl()
    >>> jac = jnp.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    >>> np.asarray(tx.update(jac, tx.init(jnp.zeros(3)))[0], float).round(4)
    array([0.2133, 0.9673, 0.9673])

  References:
    Senushkin et al., `Independent Component Alignment for Multi-Task
    Learning <https://arxiv.org/abs/2305.19000>`_, CVPR 2023.
  """
  where = 'aggregate_by_aligned_mtl'
  validation.check_one_of(where, 'scale_mode', scale_mode, _SCALES)
  validation.check_preferences(where, preferences)
  return _weighting.weighted_aggregator(
    where, lambda g: aligned_mtl_weighting(g, preferences, scale_mode), axes
  )


@metadata.describe(
  citations=('liu2021towards',),
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
    kind='aggregator', rosenbrock=(1e-3, 20000), population='aligned'
  ),
  benchmarks=(metadata.Benchmark('multitask', 'imtl_g', peer=('IMTLG', {})),),
  row=metadata.Row(
    'multi-task',
    'IMTL-G',
    papers='[Liu et al. 2021](https://openreview.net/forum?id=IMPnRXEWpvr)',
    also=('imtl_g_weighting',),
  ),
)
def aggregate_by_imtl_g(
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""IMTL-G: the update with equal projections on every unit task gradient.

  .. math::
    u = J^\top w, \quad w \propto G^+\mathrm{diag}(G)^{1/2},\
    \mathbb 1^\top w = 1 \ \Rightarrow\ \langle u, g_k/\|g_k\|\rangle
    \text{ equal for all } k.

  Properties: weighted, permutation-invariant; not non-conflicting, not
  linear under scaling.

  Args:
    axes: where the members live.

  Returns:
    An :class:`optax_ext.Aggregator` with state
    :class:`optax_ext.alignment.AggregateByWeightingState`.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from optax_ext import alignment
    >>> tx = alignment.aggregate_by_imtl_g()
    >>> jac = jnp.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    >>> np.asarray(tx.update(jac, tx.init(jnp.zeros(3)))[0], float).round(4)
    array([0.0767, 1.    , 1.    ])

  References:
    Liu et al., `Towards Impartial Multi-task Learning
    <https://openreview.net/forum?id=IMPnRXEWpvr>`_, ICLR 2021.
  """
  return _weighting.weighted_aggregator(
    'aggregate_by_imtl_g', imtl_g_weighting, axes
  )


@metadata.describe(
  citations=('liu2025config',),
  properties=metadata.Properties(
    robust=False,
    multitask=metadata.Multitask(
      non_conflicting=False,
      linear_under_scaling=True,
      permutation_invariant=True,
      homogeneity_degree=1,
    ),
  ),
  case=metadata.Case(
    kind='aggregator', lr=0.05, rosenbrock=(2e-4, 20000), population='aligned'
  ),
  benchmarks=(metadata.Benchmark('multitask', 'config', peer=('ConFIG', {})),),
  row=metadata.Row(
    'multi-task',
    'ConFIG',
    papers='[Liu et al. 2025](https://arxiv.org/abs/2408.11104)',
    also=('config_weighting',),
  ),
)
def aggregate_by_config(
  preferences: jax.Array | None = None,
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""ConFIG: the conflict-free direction, scaled by the tasks' projections.

  .. math::
    v = U^+p,\quad \hat v = v/\|v\|, \quad u = \Big(\sum_k \langle g_k,
    \hat v\rangle\Big)\hat v, \qquad U = \text{unit rows of } J,

  computed from the Gramian (:func:`config_weighting`).

  Properties: linear under scaling, weighted, permutation-invariant; not
  non-conflicting in general.

  .. note::
    The official code and TorchJD take the pseudo-inverse of the unit rows
    :math:`U` themselves; through the Gramian (which is what lets the rule
    run on sharded and lean populations) the error is
    :math:`\mathrm{cond}(U)^2` times the solve precision instead of
    :math:`\mathrm{cond}(U)`. In float32 permutation invariance and
    linearity under scaling therefore hold to ~5e-4 of the output's norm on
    rank-deficient inputs (TorchJD's suite asks 1e-4); a float64
    population is solved in float64 and holds them to ~1e-9.

  .. note::
    Where :math:`v = U^+p` vanishes (e.g. rank-1 task gradients of both
    signs whose unit rows cancel under :math:`p`: no direction is preferred)
    its normalisation is 0/0 and the official code normalises rounding
    noise, so its output depends on the CPU's rounding. Here the update is
    0 there (TorchJD's float64 result is ~0 too): detected when
    :math:`\|UU^+p\| \le \sqrt{\epsilon}\,\|p\|` in the solve dtype, a
    test unchanged by positive task scalings and permutations.

  Args:
    preferences: ``[K]`` (default ones).
    axes: where the members live.

  Returns:
    An :class:`optax_ext.Aggregator` with state
    :class:`optax_ext.alignment.AggregateByWeightingState`.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from optax_ext import alignment
    >>> tx = alignment.aggregate_by_config()
    >>> jac = jnp.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    >>> np.asarray(tx.update(jac, tx.init(jnp.zeros(3)))[0], float).round(4)
    array([0.1588, 2.0706, 2.0706])

  References:
    Liu et al., `ConFIG: Towards Conflict-free Training of Physics Informed
    Neural Networks <https://arxiv.org/abs/2408.11104>`_, ICLR 2025.
  """
  validation.check_preferences('aggregate_by_config', preferences)
  return _weighting.weighted_aggregator(
    'aggregate_by_config', lambda g: config_weighting(g, preferences), axes
  )
