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
"""Dynamic weight average (DWA)."""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from optax_ext._src import metadata
from optax_ext._src import validation
from optax_ext.scalarization import _common


class DwaState(NamedTuple):
  """State of :func:`scalarize_by_dwa`.

  Attributes:
    loss_sum: float32 ``[K]``, the current epoch's summed task losses.
    num_batches: int32, batches seen in the current epoch.
    older: float32 ``[K]``, the mean losses of the epoch before last.
    newer: float32 ``[K]``, the mean losses of the last epoch.
    num_epochs: int32, epochs ended so far (weights are uniform below 2).
  """

  loss_sum: jax.Array
  num_batches: jax.Array
  older: jax.Array
  newer: jax.Array
  num_epochs: jax.Array


@metadata.describe(citations=('liu2019end',))
def dwa_init(num_tasks: int) -> DwaState:
  """The state of :func:`scalarize_by_dwa` for ``num_tasks`` tasks.

  Args:
    num_tasks: ``K >= 1``.

  Returns:
    A :class:`DwaState` (zeros; uniform weights until two epochs ended).
  """
  validation.check_integer('dwa_init', 'num_tasks', num_tasks, lower=1)
  zeros = jnp.zeros((num_tasks,), jnp.float32)
  none = jnp.zeros([], jnp.int32)
  return DwaState(zeros, none, zeros, zeros, none)


@metadata.describe(citations=('liu2019end',))
def scalarize_by_dwa(
  losses: jax.Array, state: DwaState, temperature: float = 2.0
) -> tuple[jax.Array, DwaState]:
  r"""Dynamic weight average of ``K`` task losses.

  .. math::
    L = \sum_k \lambda_k L_k, \qquad
    \lambda_k = \frac{K \exp(w_k / T)}{\sum_i \exp(w_i / T)}, \qquad
    w_k = \frac{\bar L_k(e - 1)}{\bar L_k(e - 2)},

  with :math:`\bar L_k(e)` task ``k``'s mean loss over epoch ``e``: a task
  whose loss fell less over the last epoch gets more weight. The weights
  are uniform until two epochs have ended, and carry no gradient. Each call
  adds the batch's losses to the epoch's sums; call :func:`dwa_end_epoch`
  once at the end of every epoch.

  .. note::
    Epoch means, as the paper (and TorchJD's ``DWA``) define them; with one
    batch per "epoch" it is the per-step variant some codebases use. The
    ratio assumes losses of a constant, nonzero sign.

  Args:
    losses: ``[K]`` task losses.
    state: from :func:`dwa_init` or the previous call.
    temperature: :math:`T > 0` (the paper's 2); larger is more uniform.

  Returns:
    ``(loss, new_state)``.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import scalarization
    >>> state = scalarization.dwa_init(2)
    >>> for epoch_losses in ([1.0, 1.0], [0.5, 1.0]):
    ...   _, state = scalarization.scalarize_by_dwa(
    ...       jnp.array(epoch_losses), state)
    ...   state = scalarization.dwa_end_epoch(state)
    >>> loss, state = scalarization.scalarize_by_dwa(jnp.array([1., 2.]), state)
    >>> round(float(loss), 4)  # task 1's loss fell less: weights 0.88, 1.12
    3.1245

  References:
    Liu, Johns and Davison, `End-to-End Multi-Task Learning with Attention
    <https://arxiv.org/abs/1803.10704>`_, CVPR 2019.
  """
  where = 'scalarize_by_dwa'
  validation.check_positive(
    where, 'temperature', temperature, allow_schedule=False
  )
  losses = _common.task_losses(where, losses)
  if state.loss_sum.shape != losses.shape:
    raise ValueError(
      f'{where}: the state is for {state.loss_sum.shape[0]} tasks, got '
      f'losses of shape {losses.shape}.'
    )
  k = losses.shape[0]
  safe_older = jnp.where(state.older != 0, state.older, 1.0)
  rates = state.newer / safe_older
  weights = jnp.where(
    state.num_epochs >= 2,
    k * jax.nn.softmax(rates / temperature),
    jnp.ones_like(rates),
  )
  weights = jax.lax.stop_gradient(weights).astype(losses.dtype)
  detached = jax.lax.stop_gradient(losses).astype(jnp.float32)
  new_state = state._replace(
    loss_sum=state.loss_sum + detached,
    num_batches=state.num_batches + 1,
  )
  return jnp.sum(weights * losses), new_state


@metadata.describe(citations=('liu2019end',))
def dwa_end_epoch(state: DwaState) -> DwaState:
  """Ends an epoch: its mean losses become the newest of the two kept.

  An epoch without batches leaves the state unchanged.

  Args:
    state: the :func:`scalarize_by_dwa` state.

  Returns:
    The state for the next epoch.
  """
  seen = state.num_batches > 0
  mean = state.loss_sum / jnp.maximum(state.num_batches, 1).astype(jnp.float32)
  zeros = jnp.zeros_like(state.loss_sum)
  zero = jnp.zeros([], jnp.int32)
  return DwaState(
    loss_sum=zeros,
    num_batches=zero,
    older=jnp.where(seen, state.newer, state.older),
    newer=jnp.where(seen, mean, state.newer),
    num_epochs=state.num_epochs + seen.astype(jnp.int32),
  )
