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
"""GradNorm: task weights that balance the tasks' gradient norms."""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from optax_ext._src import metadata
from optax_ext._src import population as pop_lib
from optax_ext._src import validation
from optax_ext.scalarization import _common


class GradnormState(NamedTuple):
  """State of :func:`gradnorm_update`.

  Attributes:
    count: int32 number of updates so far.
    weights: float32 ``[K]`` task weights :math:`w_i` (sum ``K``).
    initial_losses: float32 ``[K]`` task losses at the first update,
      :math:`L_i(0)`.
  """

  count: jax.Array
  weights: jax.Array
  initial_losses: jax.Array


@metadata.describe(citations=('chen2018gradnorm',))
def gradnorm_init(num_tasks: int) -> GradnormState:
  """The state of :func:`gradnorm_update`: ``K`` weights of one.

  Args:
    num_tasks: ``K >= 1``.

  Returns:
    A :class:`GradnormState`.
  """
  validation.check_integer('gradnorm_init', 'num_tasks', num_tasks, lower=1)
  return GradnormState(
    count=jnp.zeros([], jnp.int32),
    weights=jnp.ones((num_tasks,), jnp.float32),
    initial_losses=jnp.zeros((num_tasks,), jnp.float32),
  )


@metadata.describe(citations=('chen2018gradnorm',))
def gradnorm_loss(
  weights: jax.Array,
  losses: jax.Array,
  initial_losses: jax.Array,
  shared_grad_norms: jax.Array,
  alpha: float,
) -> jax.Array:
  r"""GradNorm's auxiliary loss :math:`L_{grad}(w)` (the target held fixed).

  .. math::
    L_{grad} = \sum_i \big| w_i n_i - \bar G\, r_i^\alpha \big|, \quad
    \bar G = \frac1K \sum_j w_j n_j, \quad
    r_i = \frac{L_i / L_i(0)}{\frac1K \sum_j L_j / L_j(0)},

  with :math:`n_i = \|\nabla_W L_i\|` the norm of task ``i``'s gradient on
  the chosen shared weights ``W`` (so :math:`w_i n_i = \|\nabla_W w_i
  L_i\|`); :math:`\bar G r_i^\alpha` carries no gradient.

  Args:
    weights: ``[K]`` task weights :math:`w`.
    losses: ``[K]`` current task losses.
    initial_losses: ``[K]`` first-step losses :math:`L_i(0)`.
    shared_grad_norms: ``[K]`` :math:`n_i`.
    alpha: the asymmetry :math:`\alpha \ge 0`.

  Returns:
    The scalar :math:`L_{grad}`.
  """
  g = weights * shared_grad_norms
  ratios = losses / initial_losses
  r = ratios / jnp.mean(ratios)
  target = jax.lax.stop_gradient(jnp.mean(g) * r**alpha)
  return jnp.sum(jnp.abs(g - target))


@metadata.describe(citations=('chen2018gradnorm',))
def gradnorm_update(
  state: GradnormState,
  losses: jax.Array,
  shared_grads,
  learning_rate: float,
  *,
  alpha: float = 1.5,
) -> GradnormState:
  r"""One GradNorm step on the task weights.

  GradNorm trains the weights :math:`w_i` of the total loss :math:`\sum_i
  w_i L_i` so that each task's gradient norm on a chosen shared layer ``W``
  (usually the last shared one) tracks the mean norm scaled by the task's
  relative inverse training rate: a task whose loss fell less than the
  others' gets a larger gradient. Per step, with the weights of this step
  (:func:`gradnorm_weights`), the network follows :math:`\sum_i w_i
  \nabla L_i` and the weights take a gradient step on
  :func:`gradnorm_loss` and are renormalised to sum to ``K``:

  .. math::
    w \leftarrow \frac{K\, \tilde w}{\sum_i \tilde w_i}, \qquad
    \tilde w = w - \eta\, \nabla_w L_{grad}(w).

  The first call records :math:`L_i(0)` (so every :math:`r_i = 1` then).

  .. note::
    The paper's reading: plain gradient steps on ``w`` with their own rate,
    then renormalisation (LibMTL instead parametrises ``w = K
    softmax(theta)``). Weights driven to or below zero by a large rate are
    clipped at zero before renormalising; all zero keeps them uniform.

  Args:
    state: from :func:`gradnorm_init` or the previous call.
    losses: ``[K]`` task losses of this step.
    shared_grads: a population, leaves ``[K, *W.shape]``: the gradient of
      each task loss on ``W`` alone (e.g. ``jax.jacrev`` of the loss vector
      with respect to ``W``).
    learning_rate: the weights' step size :math:`\eta > 0`.
    alpha: the asymmetry :math:`\alpha \ge 0` (the paper's 1.5 for NYUv2;
      0 equalises the norms).

  Returns:
    The new state.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import scalarization
    >>> state = scalarization.gradnorm_init(2)
    >>> jac = {'w': jnp.array([[1.0, 0.0], [0.0, 4.0]])}  # norms 1 and 4
    >>> state = scalarization.gradnorm_update(
    ...     state, jnp.array([1.0, 1.0]), jac, learning_rate=0.1)
    >>> state.weights  # [1 + 0.1 * 1, 1 - 0.1 * 4], rescaled to sum to 2
    Array([1.2941176, 0.7058823], dtype=float32)

  References:
    Chen et al., `GradNorm: Gradient Normalization for Adaptive Loss
    Balancing in Deep Multitask Networks
    <https://arxiv.org/abs/1711.02257>`_, ICML 2018.
  """
  where = 'gradnorm_update'
  validation.check_positive(
    where, 'learning_rate', learning_rate, allow_schedule=False
  )
  validation.check_non_negative(where, 'alpha', alpha, allow_schedule=False)
  losses = _common.task_losses(where, losses).astype(jnp.float32)
  k = losses.shape[0]
  if state.weights.shape != (k,):
    raise ValueError(
      f'{where}: the state is for {state.weights.shape[0]} tasks, got '
      f'losses of shape {losses.shape}.'
    )
  members = pop_lib.size(shared_grads)
  if members != k:
    raise ValueError(
      f'{where}: `shared_grads` must hold one gradient per task (K={k}), '
      f'got {members}.'
    )
  losses = jax.lax.stop_gradient(losses)
  norms = jax.lax.stop_gradient(pop_lib.norms(shared_grads))
  initial = jnp.where(state.count == 0, losses, state.initial_losses)
  grad = jax.grad(gradnorm_loss)(state.weights, losses, initial, norms, alpha)
  stepped = jnp.maximum(state.weights - learning_rate * grad, 0.0)
  total = jnp.sum(stepped)
  weights = jnp.where(
    total > 0, k * stepped / jnp.where(total > 0, total, 1.0), 1.0
  )
  return GradnormState(
    count=state.count + 1, weights=weights, initial_losses=initial
  )


@metadata.describe(citations=('chen2018gradnorm',))
def gradnorm_weights(state: GradnormState) -> jax.Array:
  """This step's task weights (no gradient): ``loss = weights @ losses``.

  Args:
    state: a :class:`GradnormState`.

  Returns:
    float32 ``[K]``.
  """
  return jax.lax.stop_gradient(state.weights)
