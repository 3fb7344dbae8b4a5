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
"""The geometric mean of the task losses (GLS)."""

import jax
import jax.numpy as jnp
import numpy as np

from optax_ext._src import metadata
from optax_ext.scalarization import _common


@metadata.describe(
  citations=('chennupati2019multinet',),
  row=metadata.Row(
    'scalarization',
    (
      'GradNorm, geometric mean, uncertainty weighting, IMTL-L, smooth '
      'Tchebycheff, DWA, FAMO (loss space)'
    ),
    papers=(
      '[Chen et al. 2018](https://arxiv.org/abs/1711.02257), '
      '[Kendall et al. 2018](https://arxiv.org/abs/1705.07115), '
      '[Liu et al. 2019](https://arxiv.org/abs/1803.10704), [Lin '
      'et al. 2024](https://arxiv.org/abs/2402.19078), [Liu et al.'
      ' 2023](https://arxiv.org/abs/2306.03792)'
    ),
    also=(
      'scalarize_by_uncertainty',
      'scalarize_by_imtl_l',
      'scalarize_by_stch',
      'scalarize_by_dwa',
      'gradnorm_update',
      'scalarize_by_famo',
    ),
  ),
)
def scalarize_by_geometric_mean(losses: jax.Array) -> jax.Array:
  r"""The geometric mean of ``K`` non-negative task losses.

  .. math::
    L = \Big(\prod_{k=1}^K L_k\Big)^{1/K} = \exp\Big(\frac1K \sum_k
    \log L_k\Big)

  Its gradient weights task ``k`` by :math:`L / (K L_k)`: tasks with small
  losses are not drowned by large ones, and the scale of each loss does not
  matter (multiplying one loss by ``c`` multiplies ``L`` by
  :math:`c^{1/K}`).

  Args:
    losses: ``[K]`` task losses, ``>= 0``.

  Returns:
    The scalar loss, in ``losses``' floating dtype.

  Raises:
    ValueError: when ``losses`` is not a vector, or holds a negative value
      (checked when concrete; under ``jit`` a negative loss gives NaN).

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import scalarization
    >>> scalarization.scalarize_by_geometric_mean(jnp.array([1.0, 4.0]))
    Array(2., dtype=float32)

  References:
    Chennupati et al., `MultiNet++: Multi-Stream Feature Aggregation and
    Geometric Loss Strategy for Multi-Task Learning
    <https://arxiv.org/abs/1904.08492>`_, 2019.
  """
  where = 'scalarize_by_geometric_mean'
  losses = _common.task_losses(where, losses)
  if _common.is_concrete(losses) and bool(np.any(np.asarray(losses) < 0)):
    raise ValueError(
      f'{where}: the geometric mean needs losses >= 0, got {losses}.'
    )
  return jnp.exp(jnp.mean(jnp.log(losses)))
