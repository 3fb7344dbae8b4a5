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
"""Multilayer Lookahead: Lookahead nested, its slow weights in the state."""

from collections.abc import Sequence
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import alias
from optax_ext._src import metadata
from optax_ext._src import validation


class MultilayerLookaheadState(NamedTuple):
  """State of :func:`multilayer_lookahead`.

  Attributes:
    count: int32 base steps modulo the outermost period
      :math:`P_n = k_1 \\cdots k_n` (so it never overflows).
    inner_state: the inner optimiser's state.
    slow_params: ``n`` param-shaped trees; ``slow_params[i]`` holds the slow
      weights of layer ``i + 1`` (the last one is the outermost, the weights
      to evaluate).
  """

  count: jax.Array
  inner_state: optax.OptState
  slow_params: tuple[optax.Params, ...]


def check_layers(where, sync_periods, slow_step_sizes, single=False):
  """Validates the per-layer periods and slow step sizes.

  ``single``: the one-layer :func:`lookahead`, whose parameters are scalars
  named ``sync_period`` and ``slow_step_size``.
  """
  if single:
    names = [('sync_period', 'slow_step_size')]
  else:
    for name, value in (
      ('sync_periods', sync_periods),
      ('slow_step_sizes', slow_step_sizes),
    ):
      if not isinstance(value, (tuple, list)) or not value:
        raise TypeError(
          f'{where}: `{name}` must be a non-empty tuple (one entry per '
          f'layer), got {value!r}.'
        )
    validation.check_same_length(
      where,
      ('sync_periods', 'slow_step_sizes'),
      (sync_periods, slow_step_sizes),
    )
    names = [
      (f'sync_periods[{i}]', f'slow_step_sizes[{i}]')
      for i in range(len(sync_periods))
    ]
  for (k_name, a_name), k, alpha in zip(
    names, sync_periods, slow_step_sizes, strict=True
  ):
    validation.check_integer(where, k_name, k, lower=1)
    validation.check_number(
      where,
      a_name,
      alpha,
      lower=0.0,
      upper=1.0,
      lower_inclusive=False,
      allow_schedule=False,
    )


def base_periods(sync_periods) -> list[Any]:
  """Base-step periods ``P_i = k_1 ... k_i`` (Python ints or int32 arrays)."""
  periods, total = [], 1
  for k in sync_periods:
    total = total * k
    periods.append(total)
  return periods


def init_slow(params, slow_dtype, n: int) -> tuple[optax.Params, ...]:
  """``n`` copies of ``params`` (copies: donation-safe) as slow weights."""
  return tuple(
    jax.tree.map(
      lambda p: jnp.array(p, slow_dtype or jnp.asarray(p).dtype), params
    )
    for _ in range(n)
  )


def _not_outermost(where) -> None:
  raise ValueError(
    f'{where}: the params at the start of a Lookahead period are not the '
    'slow weights it restarted them from: something after Lookahead changed '
    'its updates (Lookahead not outermost in the chain, e.g. a scale or '
    'weight decay chained after it), or the params were changed outside '
    'the optimiser. Make Lookahead the outermost transform: '
    '`lookahead(optax.chain(..., inner_optimiser))`.'
  )


def check_outermost(where, at_restart, params, slow, updates) -> None:
  """Raises (from the device, through a callback) when Lookahead is not
  outermost.

  At the start of every period (and at step 0) the params must be the
  innermost slow weights, up to the rounding of ``p + (s - p)`` in the
  params', slow copy's and gradients' dtypes; a transform after Lookahead
  changes the applied update and breaks that, which otherwise drifts
  silently. The check runs inside a ``lax.cond`` taken only at the period's
  first step, and the host callback only when it fails.
  """

  def mismatch():
    bad = jnp.asarray(False)
    dtypes = {jnp.result_type(g) for g in jax.tree.leaves(updates)}
    low = max(
      (
        float(jnp.finfo(d).eps)
        for d in dtypes
        if jnp.issubdtype(d, jnp.floating)
      ),
      default=0.0,
    )
    leaves = zip(jax.tree.leaves(params), jax.tree.leaves(slow), strict=True)
    for p, s in leaves:
      if not p.size:
        continue
      eps = max(
        float(jnp.finfo(p.dtype).eps), float(jnp.finfo(s.dtype).eps), low
      )
      p32, s32 = p.astype(jnp.float32), s.astype(jnp.float32)
      size = jnp.abs(p32) + jnp.abs(s32)
      # The restart p + (s - p) goes through the fast step's intermediates
      # (p + u, with |u| up to the leaf's scale), which XLA may round
      # differently in two fusions (FMA or not): a few ulps of the leaf's
      # largest magnitude, not only of the element's.
      tol = 8 * eps * size + 32 * eps * jnp.max(size)
      bad |= jnp.any(jnp.abs(p32 - s32) > tol)
    return bad

  def report():
    jax.debug.callback(functools.partial(_not_outermost, where))

  failed = jax.lax.cond(at_restart, mismatch, lambda: jnp.asarray(False))
  jax.lax.cond(failed, report, lambda: None)


def lookahead_step(
  where,
  inner,
  periods,
  slow_step_sizes,
  reset_state,
  count,
  inner_state,
  slows,
  updates,
  params,
  extra_args,
):
  """One base step of an ``n``-layer Lookahead.

  Returns ``(updates, count, inner_state, slows)``. The synchronisation is
  computed every step and selected elementwise (no ``lax.cond``): XLA then
  updates the slow weights and the params in place. After a layer-1
  synchronisation the fast weights restart exactly at the stored innermost
  slow weights, so the returned update is expressed through them; the order
  this imposes (slow weights first, then the params) is what lets XLA avoid
  copying both buffers (a conditional, or two outputs that each read the
  other's old value, made XLA copy them every step).
  """
  check_outermost(where, count % periods[0] == 0, params, slows[0], updates)
  u, inner_state = inner.update(updates, inner_state, params, **extra_args)
  c = count + 1
  syncs = [c % p == 0 for p in periods]
  cur = jax.tree.map(
    lambda p, d: p.astype(jnp.float32) + d.astype(jnp.float32), params, u
  )
  new = []
  for sync, alpha, slow in zip(syncs, slow_step_sizes, slows, strict=True):
    moved = jax.tree.map(
      lambda s, x, a=alpha: (
        s.astype(jnp.float32) + a * (x - s.astype(jnp.float32))
      ),
      slow,
      cur,
    )
    new.append(
      jax.tree.map(
        lambda m, s, sync=sync: jnp.where(sync, m.astype(s.dtype), s),
        moved,
        slow,
      )
    )
    # A layer that synchronises restarts the faster ones from its slow
    # weights; one that does not leaves ``cur`` alone.
    cur = jax.tree.map(
      lambda m, x, sync=sync: jnp.where(sync, m, x), moved, cur
    )
  for j in range(len(new) - 2, -1, -1):
    new[j] = jax.tree.map(
      lambda outer, s, sync=syncs[j + 1]: jnp.where(
        sync, outer.astype(s.dtype), s
      ),
      new[j + 1],
      new[j],
    )
  out = jax.tree.map(
    lambda n, p, d: jnp.where(
      syncs[0],
      n.astype(jnp.float32) - p.astype(jnp.float32),
      d.astype(jnp.float32),
    ).astype(d.dtype),
    new[0],
    params,
    u,
  )
  if reset_state:
    restart = jax.tree.map(lambda n, p: n.astype(p.dtype), new[0], params)
    fresh = inner.init(restart)
    inner_state = jax.tree.map(
      lambda f, s: jnp.where(syncs[0], jnp.asarray(f, jnp.asarray(s).dtype), s),
      fresh,
      inner_state,
    )
  return out, c % periods[-1], inner_state, tuple(new)


@metadata.describe(
  citations=('pushkin2021multilayer', 'zhang2019lookahead'),
  case=metadata.Case(
    kind='wrapper',
    kwargs=lambda: {
      'inner': optax.sgd(0.05, momentum=0.9),
      'sync_periods': (2, 3),
    },
    lr=0.05,
    rosenbrock=(1e-3, 20000),
    optimizer=lambda lr: multilayer_lookahead(
      optax.sgd(lr, momentum=0.9), (2, 3)
    ),
  ),
  benchmarks=(
    metadata.Benchmark(
      'transforms',
      'multilayer_lookahead(2 layers)',
      args=(optax.sgd(1e-3, momentum=0.9),),
    ),
  ),
  row=metadata.Row(
    'lookahead',
    'Multilayer Lookahead',
    papers='[Pushkin & Barba 2021](https://arxiv.org/abs/2110.14254)',
    also=('multilayer_lookahead_slow_params',),
  ),
)
def multilayer_lookahead(
  inner: optax.GradientTransformation,
  sync_periods: Sequence[int] = (5, 5),
  slow_step_sizes: Sequence[float] = (0.5, 0.5),
  reset_state: bool = False,
  slow_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Lookahead wrapped around itself ``n`` times, slow weights in state.

  Layer 1 is Lookahead around ``inner``: every :math:`k_1` base steps its
  slow weights :math:`\phi_1` move a fraction :math:`\alpha_1` towards the
  fast weights, and the fast weights restart from them. Layer :math:`i`
  treats the synchronisations of layer :math:`i-1` as its steps: every
  :math:`k_i` of them (every :math:`P_i = k_1\cdots k_i` base steps)

  .. math::
    \phi_i \leftarrow \phi_i + \alpha_i(\phi_{i-1} - \phi_i), \qquad
    \theta, \phi_1, \dots, \phi_{i-1} \leftarrow \phi_i,

  with :math:`\phi_0 = \theta` the fast weights after the inner step. The
  params you hold are the fast weights; ``update`` returns the inner update,
  or on synchronising steps the jump to the new fast weights, so the wrapper
  works in :func:`optax.chain` and ``flax.nnx.Optimizer`` with ordinary params
  (:func:`optax.lookahead` needs ``LookaheadParams`` instead). With a constant
  gradient and SGD the long-run drift is :math:`\alpha_1\cdots\alpha_n
  \eta g` per base step.

  Evaluate the outermost slow weights
  (:func:`multilayer_lookahead_slow_params`). It must be the outermost
  transform: anything chained after it distorts the jump (put clipping
  before it or inside ``inner``). Schedules in ``inner`` tick per base step.
  Batch-norm statistics are not interpolated: recompute them before
  evaluating slow weights.

  Cost: ``n`` param-sized slow copies (in ``slow_dtype``) plus the inner
  state; every step reads and writes them (elementwise selects, fused with
  the update).

  .. note::
    The paper's algorithm box and hyper-parameters were unavailable; the
    recursion is derived from its description ("Lookahead recursively
    wrapped around itself") and equals nested :func:`optax.lookahead` with outer
    period :math:`k_1 k_2` (tested). Defaults :math:`k = (5, 5)`,
    :math:`\alpha = (0.5, 0.5)` are the usual single-Lookahead values per
    layer; ``reset_state=False`` as in the original Lookahead.

  Args:
    inner: the fast optimiser (:func:`optax.sgd`, :func:`optax.adam`, ...)
      with its learning rate.
    sync_periods: ``(k_1, ..., k_n)``, integers ``>= 1``; ``k_1`` in base
      steps, ``k_i`` in synchronisations of layer ``i - 1``.
    slow_step_sizes: ``(alpha_1, ..., alpha_n)``, each in ``(0, 1]``.
    reset_state: re-initialise the inner state at every layer-1
      synchronisation (at the new fast weights).
    slow_dtype: dtype of the slow copies; ``None``: the params' dtype.
      ``jnp.float32`` keeps interpolations exact for bfloat16 params at
      twice the memory.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`MultilayerLookaheadState`; ``update`` needs ``params``.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import lookahead
    >>> tx = lookahead.multilayer_lookahead(optax.sgd(0.1), (2, 2), (0.5, 0.5))
    >>> params = jnp.array([1.0])
    >>> state = tx.init(params)
    >>> for _ in range(4):  # constant gradient 1
    ...   u, state = tx.update(jnp.ones(1), state, params)
    ...   params = optax.apply_updates(params, u)
    >>> params, lookahead.multilayer_lookahead_slow_params(state)
    (Array([0.9], dtype=float32), Array([0.9], dtype=float32))

  References:
    Pushkin and Barba, `Multilayer Lookahead: a Nested Version of
    Lookahead <https://arxiv.org/abs/2110.14254>`_, 2021; Zhang et al.,
    `Lookahead Optimizer: k steps forward, 1 step back
    <https://arxiv.org/abs/1907.08610>`_, 2019.
  """
  where = 'multilayer_lookahead'
  check_layers(where, sync_periods, slow_step_sizes)
  inner = optax.with_extra_args_support(inner)
  periods = base_periods(sync_periods)
  n = len(sync_periods)

  def init_fn(params):
    return MultilayerLookaheadState(
      count=jnp.zeros([], jnp.int32),
      inner_state=inner.init(params),
      slow_params=init_slow(params, slow_dtype, n),
    )

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError(f'{where}: `params` (the fast weights) are required.')
    u, count, inner_state, slows = lookahead_step(
      where,
      inner,
      periods,
      slow_step_sizes,
      reset_state,
      state.count,
      state.inner_state,
      state.slow_params,
      updates,
      params,
      extra_args,
    )
    return u, MultilayerLookaheadState(count, inner_state, slows)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@metadata.describe(citations=('pushkin2021multilayer', 'zhang2019lookahead'))
def multilayer_lookahead_slow_params(
  opt_state: optax.OptState, layer: int = -1
) -> optax.Params:
  """The slow weights of one layer of a :func:`multilayer_lookahead` state.

  Args:
    opt_state: an optimiser state holding exactly one
      :class:`MultilayerLookaheadState` (anywhere inside a chain).
    layer: which layer, 0-based (``-1``: the outermost, for evaluation).

  Returns:
    The slow weights (a params tree in the slow dtype).

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import lookahead
    >>> tx = optax.chain(
    ...   optax.clip(1.0), lookahead.multilayer_lookahead(optax.sgd(0.1))
    ... )
    >>> lookahead.multilayer_lookahead_slow_params(tx.init(jnp.ones(2)))
    Array([1., 1.], dtype=float32)

  References:
    Pushkin and Barba, `Multilayer Lookahead: a Nested Version of
    Lookahead <https://arxiv.org/abs/2110.14254>`_, 2021; Zhang et al.,
    `Lookahead Optimizer: k steps forward, 1 step back
    <https://arxiv.org/abs/1907.08610>`_, 2019.
  """
  node = alias.find_state(
    'multilayer_lookahead_slow_params', opt_state, MultilayerLookaheadState
  )
  return node.slow_params[layer]
