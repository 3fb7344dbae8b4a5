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
"""Uncertainty weighting: learned homoscedastic log-variances per task."""

import jax
import jax.numpy as jnp

from optax_ext._src import metadata
from optax_ext.scalarization import _common


@metadata.describe(citations=('kendall2018multi',))
def scalarize_by_uncertainty(
  losses: jax.Array, log_variances: jax.Array
) -> jax.Array:
  r"""Uncertainty weighting of ``K`` task losses with learned log-variances.

  .. math::
    L = \sum_{k=1}^K \Big(\tfrac12 e^{-s_k} L_k + \tfrac12 s_k\Big),
    \qquad s_k = \log \sigma_k^2 .

  The :math:`s_k` are parameters trained with the model: keep them in the
  params tree (e.g. ``params['log_variances'] = jnp.zeros(K)``, uniform
  weights at the start) and differentiate the returned loss with respect to
  both. For fixed :math:`L_k` the optimum is :math:`s_k = \log L_k`, so
  each task ends weighted by the inverse of its own loss.

  .. note::
    The ``1/2`` factors are the paper's Gaussian-likelihood form (and
    TorchJD's ``UW``); LibMTL drops them and starts from :math:`s = -0.5`.
    The starting value is the caller's: zeros give uniform weights.

  Args:
    losses: ``[K]`` task losses.
    log_variances: ``[K]`` learned :math:`s_k`.

  Returns:
    The scalar loss.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import scalarization
    >>> scalarization.scalarize_by_uncertainty(
    ...     jnp.array([1.0, 3.0]), jnp.zeros(2))
    Array(2., dtype=float32)

  References:
    Kendall, Gal and Cipolla, `Multi-Task Learning Using Uncertainty to Weigh
    Losses for Scene Geometry and Semantics
    <https://arxiv.org/abs/1705.07115>`_, CVPR 2018.
  """
  where = 'scalarize_by_uncertainty'
  losses = _common.task_losses(where, losses)
  s = _common.same_shape(where, 'log_variances', log_variances, losses)
  return jnp.sum(0.5 * jnp.exp(-s) * losses + 0.5 * s)
