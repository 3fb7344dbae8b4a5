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
"""The gradual (cubic) sparsity schedule of Zhu and Gupta."""

import jax.numpy as jnp
import optax

from optax_ext._src import metadata
from optax_ext._src import validation


@metadata.describe(
  citations=('zhu2017prune',),
  row=metadata.Row(
    'pruning',
    'gradual (cubic) sparsity schedule',
    papers='[Zhu & Gupta 2017](https://arxiv.org/abs/1710.01878)',
  ),
)
def cubic_sparsity_schedule(
  final_sparsity: float,
  transition_steps: int,
  transition_begin: int = 0,
  init_sparsity: float = 0.0,
  power: float = 3.0,
) -> optax.Schedule:
  r"""The gradual-pruning sparsity schedule of Zhu and Gupta (cubic).

  .. math::
    s(t) = s_f + (s_i - s_f)\Big(1 - \frac{t - t_0}{T}\Big)^p
    \quad \text{on } [t_0, t_0 + T],

  :math:`s_i` before, :math:`s_f` after. Equal to
  ``optax.polynomial_schedule(init_sparsity, final_sparsity, power,
  transition_steps, transition_begin)`` (tested), written in float32 so it is
  clean under strict dtype promotion.

  Args:
    final_sparsity: :math:`s_f \in [0, 1)`.
    transition_steps: :math:`T \ge 1` steps of the ramp.
    transition_begin: :math:`t_0 \ge 0`.
    init_sparsity: :math:`s_i \in [0, 1)`.
    power: :math:`p > 0` (3: cubic).

  Returns:
    A schedule ``count -> float32 sparsity``.

  Example:
    >>> from optax_ext import pruning
    >>> schedule = pruning.cubic_sparsity_schedule(0.9, 100)
    >>> [round(float(schedule(t)), 4) for t in (0, 50, 100, 200)]
    [0.0, 0.7875, 0.9, 0.9]

  References:
    Lin et al., `Dynamic Model Pruning with Feedback
    <https://arxiv.org/abs/2006.07253>`_, ICLR 2020; Zhu and Gupta, `To
    prune, or not to prune: exploring the efficacy of pruning for model
    compression <https://arxiv.org/abs/1710.01878>`_, 2017.
  """
  where = 'cubic_sparsity_schedule'
  for name, value in (
    ('final_sparsity', final_sparsity),
    ('init_sparsity', init_sparsity),
  ):
    validation.check_number(
      where,
      name,
      value,
      lower=0.0,
      upper=1.0,
      upper_inclusive=False,
      allow_schedule=False,
    )
  validation.check_integer(where, 'transition_steps', transition_steps, lower=1)
  validation.check_integer(where, 'transition_begin', transition_begin, lower=0)
  validation.check_positive(where, 'power', power, allow_schedule=False)

  def schedule(count):
    t = jnp.asarray(count, jnp.float32) - jnp.float32(transition_begin)
    frac = jnp.clip(t / jnp.float32(transition_steps), 0.0, 1.0)
    ramp = (1.0 - frac) ** jnp.float32(power)
    return (
      jnp.float32(final_sparsity)
      + jnp.float32(init_sparsity - final_sparsity) * ramp
    )

  return schedule
