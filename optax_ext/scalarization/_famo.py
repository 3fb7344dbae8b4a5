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
"""FAMO: fast adaptive multitask optimisation from the losses alone."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_ext._src import metadata
from optax_ext._src import validation
from optax_ext.scalarization import _common

_EPS = 1e-8  # added to every shifted loss before its logarithm


class FamoState(NamedTuple):
  """State of :func:`scalarize_by_famo` and :func:`famo_update`.

  Attributes:
    logits: float32 ``[K]`` task-weighting logits :math:`w` (weights
      :math:`z = \\mathrm{softmax}(w)`).
    logits_opt_state: the state of the logits' Adam.
    min_losses: float32 ``[K]`` lower bounds :math:`b` of the losses.
    last_losses: float32 ``[K]`` the losses of the last
      :func:`scalarize_by_famo` call (before the model's step).
  """

  logits: jax.Array
  logits_opt_state: optax.OptState
  min_losses: jax.Array
  last_losses: jax.Array


def _logits_optimizer(learning_rate, weight_decay):
  # The paper's Algorithm 2 (and the reference code): Adam on the logits
  # with L2 regularisation added to the gradient, as torch.optim.Adam does.
  return optax.chain(
    optax.add_decayed_weights(weight_decay), optax.adam(learning_rate)
  )


@metadata.describe(citations=('liu2023famo',))
def famo_init(num_tasks: int, min_losses=None) -> FamoState:
  """The state of FAMO for ``num_tasks`` tasks: uniform weights.

  Args:
    num_tasks: ``K >= 1``.
    min_losses: ``[K]`` lower bounds :math:`b` of the losses (zeros by
      default; every loss must stay above its bound).

  Returns:
    A :class:`FamoState`.
  """
  where = 'famo_init'
  validation.check_integer(where, 'num_tasks', num_tasks, lower=1)
  zeros = jnp.zeros((num_tasks,), jnp.float32)
  if min_losses is None:
    min_losses = zeros
  else:
    min_losses = _common.same_shape(where, 'min_losses', min_losses, zeros)
    min_losses = min_losses.astype(jnp.float32)
  opt_state = _logits_optimizer(0.0, 0.0).init(zeros)
  return FamoState(zeros, opt_state, min_losses, zeros)


def _shifted(where, losses, state):
  losses = _common.task_losses(where, losses)
  if state.logits.shape != losses.shape:
    raise ValueError(
      f'{where}: the state is for {state.logits.shape[0]} tasks, got '
      f'losses of shape {losses.shape}.'
    )
  min_losses = state.min_losses.astype(losses.dtype)
  if (
    _common.is_concrete(losses)
    and _common.is_concrete(min_losses)
    and bool(np.any(np.asarray(losses) <= np.asarray(min_losses)))
  ):
    raise ValueError(
      f'{where}: FAMO takes the logarithm of `losses - min_losses`; every '
      f'loss must exceed its bound, got losses {losses} and bounds '
      f'{min_losses}.'
    )
  return losses, losses - min_losses + _EPS


@metadata.describe(citations=('liu2023famo',))
def scalarize_by_famo(
  losses: jax.Array, state: FamoState
) -> tuple[jax.Array, FamoState]:
  r"""FAMO's loss: task losses balanced so all fall at the same rate.

  .. math::
    L = c \sum_k z_k \log(L_k - b_k + \epsilon), \qquad
    z = \mathrm{softmax}(w), \qquad
    c = \Big(\sum_k \frac{z_k}{L_k - b_k + \epsilon}\Big)^{-1},

  with :math:`z` and :math:`c` held constant (no gradient), so the model's
  gradient :math:`\sum_k \frac{c z_k}{L_k - b_k + \epsilon} \nabla L_k` is a
  convex combination of the task gradients. The logits :math:`w` are
  learned by :func:`famo_update` from how much each (log) loss fell over the
  model's step; call it after the step, with the losses of the *same* batch
  recomputed at the new parameters. The call records ``losses`` in the
  state for that update. FAMO never forms the task gradients: one backward
  pass per step, as for a sum of losses.

  .. note::
    The logits' optimiser is Adam with coupled L2 regularisation (the
    paper's Algorithm 2 and the reference code's ``torch.optim.Adam``),
    default rate 0.025 and regularisation 1e-3 (the paper's; the authors'
    code uses 1e-5 in some experiments). :math:`\epsilon = 10^{-8}` as in
    the reference.

  Args:
    losses: ``[K]`` task losses, each above its bound :math:`b_k`.
    state: from :func:`famo_init` or the previous call.

  Returns:
    ``(loss, new_state)``.

  Raises:
    ValueError: when ``losses`` is not ``[K]``, or (when concrete) a loss is
      not above its bound; under ``jit`` such a loss gives NaN.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from optax_ext import scalarization
    >>> state = scalarization.famo_init(2)
    >>> before = jnp.array([1.0, 4.0])
    >>> # Uniform weights: c = 1 / (0.5 / 1 + 0.5 / 4) = 1.6, so the losses'
    >>> # gradient weights are c z / L = (0.8, 0.2): equal log-loss rates.
    >>> jax.grad(lambda l: scalarization.scalarize_by_famo(l, state)[0])(
    ...     before)
    Array([0.8, 0.2], dtype=float32)
    >>> _, state = scalarization.scalarize_by_famo(before, state)
    >>> # Task 1's loss halved, task 2's barely moved: task 2 gains weight.
    >>> state = scalarization.famo_update(state, jnp.array([0.5, 3.9]))
    >>> [round(float(z), 4) for z in jax.nn.softmax(state.logits)]
    [0.4875, 0.5125]

  References:
    Liu et al., `FAMO: Fast Adaptive Multitask Optimization
    <https://arxiv.org/abs/2306.03792>`_, NeurIPS 2023; reference code
    `Cranial-XIX/FAMO <https://github.com/Cranial-XIX/FAMO>`_.
  """
  where = 'scalarize_by_famo'
  losses, shifted = _shifted(where, losses, state)
  z = jax.lax.stop_gradient(jax.nn.softmax(state.logits)).astype(losses.dtype)
  c = jax.lax.stop_gradient(jnp.sum(z / shifted))
  loss = jnp.sum(z * jnp.log(shifted)) / c
  recorded = jax.lax.stop_gradient(losses).astype(jnp.float32)
  return loss, state._replace(last_losses=recorded)


@metadata.describe(citations=('liu2023famo',))
def famo_update(
  state: FamoState,
  losses: jax.Array,
  *,
  learning_rate: float = 0.025,
  weight_decay: float = 1e-3,
) -> FamoState:
  r"""FAMO's step on the task-weighting logits, after the model's step.

  With :math:`L_k` the losses recorded by the last
  :func:`scalarize_by_famo` and :math:`L'_k` the same batch's losses after
  the model's step,

  .. math::
    \delta_k = \log(L_k - b_k + \epsilon) - \log(L'_k - b_k + \epsilon),
    \qquad
    w \leftarrow \mathrm{Adam}\big(w,\; J_{\mathrm{softmax}}(w)^\top
    \delta + \gamma w\big):

  a task whose log-loss fell more than the weighted average loses weight.

  Args:
    state: the state returned by :func:`scalarize_by_famo` this step.
    losses: ``[K]`` the same batch's losses at the updated parameters.
    learning_rate: the logits' Adam rate (``> 0``; the paper's 0.025).
    weight_decay: :math:`\gamma \ge 0`, L2 on the logits (the paper's 1e-3).

  Returns:
    The new state.
  """
  where = 'famo_update'
  validation.check_positive(
    where, 'learning_rate', learning_rate, allow_schedule=False
  )
  validation.check_non_negative(
    where, 'weight_decay', weight_decay, allow_schedule=False
  )
  losses, after = _shifted(where, losses, state)
  before = state.last_losses - state.min_losses + _EPS
  delta = jnp.log(before) - jnp.log(after.astype(jnp.float32))
  _, vjp = jax.vjp(jax.nn.softmax, state.logits)
  (grad,) = vjp(jax.lax.stop_gradient(delta))
  opt = _logits_optimizer(learning_rate, weight_decay)
  # optax's Adam is not strict-promotion clean (its bias correction mixes
  # a Python float with the int32 count); every input here is float32.
  with jax.numpy_dtype_promotion('standard'):
    step, opt_state = opt.update(grad, state.logits_opt_state, state.logits)
  return state._replace(
    logits=optax.apply_updates(state.logits, step), logits_opt_state=opt_state
  )
