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
"""Lookahead with its slow weights in the optimiser state."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import alias
from optax_ext._src import metadata
from optax_ext.lookahead import _multilayer


class LookaheadState(NamedTuple):
  """State of :func:`lookahead`.

  Attributes:
    count: int32 base steps modulo ``sync_period``.
    inner_state: the fast optimiser's state.
    slow_weights: the slow weights (evaluate these).
  """

  count: jax.Array
  inner_state: optax.OptState
  slow_weights: optax.Params


@metadata.describe(
  citations=('zhang2019lookahead',),
  case=metadata.Case(
    kind='wrapper',
    kwargs=lambda: {'inner': optax.sgd(0.05, momentum=0.9), 'sync_period': 3},
    hyperparams=('sync_period', 'slow_step_size'),
    lr=0.05,
    rosenbrock=(1e-3, 20000),
    optimizer=lambda lr: lookahead(optax.sgd(lr, momentum=0.9), 3),
  ),
  benchmarks=(
    metadata.Benchmark(
      'transforms',
      'lookahead(sgd momentum)',
      args=(optax.sgd(1e-3, momentum=0.9),),
    ),
  ),
  row=metadata.Row(
    'lookahead',
    'Lookahead (slow weights in state)',
    papers='[Zhang et al. 2019](https://arxiv.org/abs/1907.08610)',
    also=('lookahead_slow_params',),
  ),
)
def lookahead(
  inner: optax.GradientTransformation,
  sync_period: int = 5,
  slow_step_size: float = 0.5,
  reset_state: bool = False,
  slow_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Lookahead around ``inner``, usable with ordinary (fast) params.

  The inner optimiser takes :math:`k` fast steps; then the slow weights move
  towards the fast ones and the fast ones restart there:

  .. math::
    \phi \leftarrow \phi + \alpha(\theta - \phi), \qquad \theta \leftarrow
    \phi \quad \text{every } k \text{ steps.}

  Unlike :func:`optax.lookahead` (same numbers step for step, tested), the slow
  weights live in the state, so the params are the fast weights alone and
  the transform drops into :func:`optax.chain` and ``flax.nnx.Optimizer``. It
  must be the outermost transform (see :func:`multilayer_lookahead`, of which
  this is the one-layer case). Evaluate :func:`lookahead_slow_params`.

  Cost: one param-sized slow copy plus the inner state; every step reads
  and writes the slow copy (an elementwise select, which XLA fuses with
  the update; measurements in the benchmarks page).

  Args:
    inner: the fast optimiser, with its learning rate.
    sync_period: :math:`k \ge 1` fast steps between synchronisations.
    slow_step_size: :math:`\alpha \in (0, 1]`.
    reset_state: re-initialise the inner state at each synchronisation.
    slow_dtype: dtype of the slow copy; ``None``: the params' dtype.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`LookaheadState`; ``update`` needs ``params``.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import lookahead
    >>> tx = lookahead.lookahead(optax.sgd(0.1), sync_period=2)
    >>> params = jnp.array([1.0])
    >>> state = tx.init(params)
    >>> for _ in range(2):  # constant gradient 1: fast 0.9, 0.8; sync
    ...   u, state = tx.update(jnp.ones(1), state, params)
    ...   params = optax.apply_updates(params, u)
    >>> params, lookahead.lookahead_slow_params(state)
    (Array([0.9], dtype=float32), Array([0.9], dtype=float32))

  References:
    Zhang et al., `Lookahead Optimizer: k steps forward, 1 step back
    <https://arxiv.org/abs/1907.08610>`_, 2019.
  """
  where = 'lookahead'
  _multilayer.check_layers(
    where, (sync_period,), (slow_step_size,), single=True
  )
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    (slow,) = _multilayer.init_slow(params, slow_dtype, 1)
    return LookaheadState(jnp.zeros([], jnp.int32), inner.init(params), slow)

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError(f'{where}: `params` (the fast weights) are required.')
    u, count, inner_state, (slow,) = _multilayer.lookahead_step(
      where,
      inner,
      [sync_period],
      [slow_step_size],
      reset_state,
      state.count,
      state.inner_state,
      (state.slow_weights,),
      updates,
      params,
      extra_args,
    )
    return u, LookaheadState(count, inner_state, slow)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@metadata.describe(citations=('zhang2019lookahead',))
def lookahead_slow_params(opt_state: optax.OptState) -> optax.Params:
  """The slow weights of the :func:`lookahead` state inside ``opt_state``.

  Args:
    opt_state: an optimiser state holding exactly one :class:`LookaheadState`.

  Returns:
    The slow weights, for evaluation and export.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import lookahead
    >>> tx = lookahead.lookahead(optax.adam(1e-3))
    >>> lookahead.lookahead_slow_params(tx.init(jnp.zeros(2)))
    Array([0., 0.], dtype=float32)

  References:
    Zhang et al., `Lookahead Optimizer: k steps forward, 1 step back
    <https://arxiv.org/abs/1907.08610>`_, 2019.
  """
  node = alias.find_state('lookahead_slow_params', opt_state, LookaheadState)
  return node.slow_weights
