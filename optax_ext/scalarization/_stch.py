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
"""Smooth Tchebycheff scalarization."""

import jax
import jax.numpy as jnp

from optax_ext._src import metadata
from optax_ext._src import validation
from optax_ext.scalarization import _common


@metadata.describe(citations=('lin2024smooth',))
def scalarize_by_stch(
  losses: jax.Array,
  mu: float,
  *,
  weights: jax.Array | None = None,
  reference: jax.Array | None = None,
) -> jax.Array:
  r"""Smooth Tchebycheff scalarization of ``K`` task losses.

  .. math::
    L = \mu \log \sum_{k=1}^K \exp\Big(\frac{\lambda_k (L_k - z_k)}{\mu}
    \Big),

  a smooth upper bound of the weighted worst task :math:`\max_k
  \lambda_k (L_k - z_k)`, within :math:`\mu \log K` of it. Computed with the
  largest term factored out (the paper's appendix), so a small ``mu`` does
  not overflow.

  Args:
    losses: ``[K]`` task losses :math:`L_k`.
    mu: smoothing :math:`\mu > 0`; smaller is closer to the maximum (the
      paper tries 0.01 to 1).
    weights: ``[K]`` preferences :math:`\lambda` (default ``1/K`` each).
    reference: ``[K]`` ideal point :math:`z` (default 0).

  Returns:
    The scalar loss.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import scalarization
    >>> loss = scalarization.scalarize_by_stch(jnp.array([1.0, 3.0]), mu=0.01)
    >>> round(float(loss), 4)  # close to max(1, 3) / 2
    1.5

  References:
    Lin et al., `Smooth Tchebycheff Scalarization for Multi-Objective
    Optimization <https://arxiv.org/abs/2402.19078>`_, ICML 2024.
  """
  where = 'scalarize_by_stch'
  validation.check_positive(where, 'mu', mu, allow_schedule=False)
  losses = _common.task_losses(where, losses)
  k = losses.shape[0]
  if weights is None:
    weights = jnp.full_like(losses, 1.0 / k)
  weights = _common.same_shape(where, 'weights', weights, losses)
  shifted = losses
  if reference is not None:
    shifted = losses - _common.same_shape(where, 'reference', reference, losses)
  y = weights * shifted
  top = jax.lax.stop_gradient(jnp.max(y))
  return mu * jax.nn.logsumexp((y - top) / mu) + top
