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
"""IMTL-L: impartial multi-task learning's loss balance."""

import jax
import jax.numpy as jnp

from optax_ext._src import metadata
from optax_ext.scalarization import _common


@metadata.describe(citations=('liu2021towards',))
def scalarize_by_imtl_l(losses: jax.Array, log_scales: jax.Array) -> jax.Array:
  r"""IMTL's loss balance of ``K`` task losses with learned scales.

  .. math::
    L = \sum_{k=1}^K \big(e^{s_k} L_k - s_k\big)

  The :math:`s_k` are trained with the model (keep them in the params tree,
  starting at zero: the plain sum); the :math:`-s_k` term keeps them from
  going to :math:`-\infty`. For fixed :math:`L_k` the optimum is
  :math:`e^{s_k} L_k = 1`: every scaled loss is brought to one. It equals
  twice :func:`scalarize_by_uncertainty` at :math:`-s` (same weights, same
  optima). The gradient balance of the same paper is
  :func:`optax_ext.alignment.aggregate_by_imtl_g`.

  .. note::
    The paper designs it for positive losses; a negative :math:`L_k` makes
    :math:`s_k` run to :math:`-\infty`.

  Args:
    losses: ``[K]`` task losses.
    log_scales: ``[K]`` learned :math:`s_k`.

  Returns:
    The scalar loss.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import scalarization
    >>> scalarization.scalarize_by_imtl_l(jnp.array([1.0, 3.0]), jnp.zeros(2))
    Array(4., dtype=float32)

  References:
    Liu et al., `Towards Impartial Multi-task Learning
    <https://openreview.net/forum?id=IMPnRXEWpvr>`_, ICLR 2021.
  """
  where = 'scalarize_by_imtl_l'
  losses = _common.task_losses(where, losses)
  s = _common.same_shape(where, 'log_scales', log_scales, losses)
  return jnp.sum(jnp.exp(s) * losses - s)
