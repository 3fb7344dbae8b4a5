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
"""DPF: dynamic pruning with feedback (dense weights, periodic mask)."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import optax

from optax_ext._src import alias
from optax_ext._src import kernels
from optax_ext._src import metadata
from optax_ext._src import validation

_SCOPES = ('global', 'layerwise')
_METHODS = ('sort', 'bisect')


class DpfState(NamedTuple):
  """State of :func:`dpf`.

  Attributes:
    count: int32 number of updates so far.
    mask: a bool tree like the params: the keep-mask on prunable leaves, a
      scalar ``True`` on the others.
    inner_state: the inner optimiser's state.
  """

  count: jax.Array
  mask: optax.Params
  inner_state: optax.OptState


def _prunable_flags(where, params, prunable) -> list[bool]:
  """Static per-leaf flags: which leaves the mask applies to."""
  leaves = jax.tree_util.tree_leaves_with_path(params)
  if callable(prunable):
    chosen = [prunable(path, leaf) for path, leaf in leaves]
  else:
    treedef = jax.tree.structure(params)
    if jax.tree.structure(prunable) != treedef:
      raise ValueError(
        f'{where}: `prunable` must be a callable or a tree of bools with the '
        f'structure of the params {treedef}, got {prunable!r}.'
      )
    chosen = jax.tree.leaves(prunable)
  flags = []
  for (path, leaf), flag in zip(leaves, chosen, strict=True):
    if not isinstance(flag, (bool, np.bool_)):
      raise TypeError(
        f'{where}: `prunable` must give a Python bool per leaf, got '
        f'{flag!r} for leaf {jax.tree_util.keystr(path)}.'
      )
    flag = bool(flag)
    if flag and jnp.ndim(leaf) == 0:
      raise ValueError(
        f'{where}: `prunable` selected the scalar leaf '
        f'{jax.tree_util.keystr(path)}; only leaves with ndim >= 1 can be '
        'pruned.'
      )
    flags.append(flag)
  if not any(flags):
    raise ValueError(
      f'{where}: `prunable` selected no leaf of the params (the default '
      'prunes leaves with ndim >= 2), so there is nothing to prune.'
    )
  return flags


def _default_prunable(path, leaf) -> bool:
  del path
  return jnp.ndim(leaf) >= 2


def _keep_by_rank(magnitudes: jax.Array, n_keep: jax.Array) -> jax.Array:
  """Exactly ``n_keep`` largest entries of a flat array (ties: lower index).

  NaN magnitudes sort last, so they are pruned first.
  """
  order = jnp.argsort(-magnitudes, stable=True)
  ranks = (
    jnp.zeros(magnitudes.shape, jnp.int32)
    .at[order]
    .set(jnp.arange(magnitudes.size, dtype=jnp.int32))
  )
  return ranks < n_keep


def _kth_largest_by_bisection(leaves, n_keep: jax.Array) -> jax.Array:
  """The ``n_keep``-th largest magnitude over leaves, without concatenating.

  Bisects on the int32 bit pattern of non-negative float32 values (ordered
  like the values), so 31 steps find the exact value.
  """

  def count_at_least(bits):
    tau = lax.bitcast_convert_type(bits, jnp.float32)
    return sum(jnp.sum(leaf >= tau, dtype=jnp.int32) for leaf in leaves)

  def body(_, bounds):
    lo, hi = bounds  # count(>= lo) >= n_keep > count(>= hi)
    mid = lo + (hi - lo) // 2
    ok = count_at_least(mid) >= n_keep
    return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

  inf_bits = jnp.int32(0x7F800000)
  lo, _ = lax.fori_loop(0, 31, body, (jnp.int32(0), inf_bits))
  return lax.bitcast_convert_type(lo, jnp.float32)


def _keep_by_count(mags, n_keep: jax.Array) -> list[jax.Array]:
  """:func:`_keep_by_rank` over leaves without sorting (the same masks).

  The ``n_keep``-th largest magnitude by bisection (NaN ranked last, as a
  key below every magnitude), every larger magnitude kept, and the ties at
  it kept in flat order (a running count over the leaves) up to
  ``n_keep``: 34 counting passes and one running count, where XLA:CPU's
  sort of every magnitude is far slower (``docs/benchmarks.md``).
  """
  keys = [jnp.where(jnp.isnan(m), -1.0, m) for m in mags]

  def count(tau):
    return sum(jnp.sum(k >= tau, dtype=jnp.int32) for k in keys)

  tau = _kth_largest_by_bisection(keys, n_keep)
  tau = jnp.where(count(jnp.float32(jnp.inf)) >= n_keep, jnp.inf, tau)
  tau = jnp.where(count(jnp.float32(0.0)) < n_keep, -1.0, tau)
  greater = sum(jnp.sum(k > tau, dtype=jnp.int32) for k in keys)
  needed = n_keep - greater
  out, before = [], jnp.int32(0)
  for k in keys:
    ties = (k == tau).reshape(-1)
    rank = before + jnp.cumsum(ties, dtype=jnp.int32)
    keep = (k.reshape(-1) > tau) | (ties & (rank <= needed))
    out.append(keep.reshape(k.shape) & (n_keep > 0))
    before = rank[-1] if rank.size else before
  return out


def _masks(leaves, sparsity, scope, method) -> list[jax.Array]:
  """Keep-masks (bool, leaf-shaped) for the prunable ``leaves``."""
  mags = [jnp.abs(x.astype(jnp.float32)) for x in leaves]

  def n_keep(size):
    pruned = jnp.round(sparsity * jnp.float32(size)).astype(jnp.int32)
    return jnp.int32(size) - pruned

  groups = [[m] for m in mags] if scope == 'layerwise' else [mags]
  out = []
  for group in groups:
    size = sum(m.size for m in group)
    k = n_keep(size)
    if method == 'sort' and kernels.cpu_tuned():
      out.extend(_keep_by_count(group, k))
    elif method == 'sort':
      flat = jnp.concatenate([m.reshape(-1) for m in group])
      keep = _keep_by_rank(flat, k)
      start = 0
      for m in group:
        out.append(keep[start : start + m.size].reshape(m.shape))
        start += m.size
    else:
      tau = _kth_largest_by_bisection(group, k)
      out.extend((m >= tau) & (k > 0) for m in group)
  return out


# Battery case: The battery differentiates at the dense params, so DPF acts as
# its inner optimiser there; its own behaviour is in tests/pruning/test_dpf.py.
@metadata.describe(
  citations=('lin2020dynamic',),
  case=metadata.Case(
    kind='wrapper',
    kwargs=lambda: {
      'inner': optax.sgd(0.05, momentum=0.9),
      'sparsity': 0.5,
      'update_every': 2,
      'prunable': {'w': True, 'b': True},  # the battery's params
    },
    hyperparams=('sparsity', 'update_every'),
    lr=0.05,
    rosenbrock=(1e-3, 20000),
    optimizer=lambda lr: dpf(
      optax.sgd(lr, momentum=0.9),
      0.5,
      prunable=lambda path, leaf: leaf.ndim >= 1,
    ),
  ),
  benchmarks=(
    metadata.Benchmark(
      'transforms',
      'dpf(sgd momentum, 90%)',
      args=(
        optax.sgd(1e-3, momentum=0.9),
        0.9,
      ),
      two_pass=True,
    ),
  ),
  row=metadata.Row(
    'pruning',
    'DPF, dynamic pruning with feedback',
    papers='[Lin et al. 2020](https://arxiv.org/abs/2006.07253)',
    also=('dpf_pruned_params', 'dpf_sparsity', 'dpf_refresh'),
  ),
)
def dpf(
  inner: optax.GradientTransformation,
  sparsity: optax.ScalarOrSchedule,
  *,
  update_every: int = 16,
  scope: str = 'global',
  prunable: Callable[[Any, jax.Array], bool] | Any | None = None,
  threshold_method: str = 'sort',
  refresh_in_update: bool = True,
) -> optax.GradientTransformationExtraArgs:
  r"""Dynamic pruning with feedback around an optimiser ``inner``.

  The params stay dense. Gradients are taken at the pruned point
  :math:`m \odot w` and applied to all of :math:`w`, so pruned weights keep
  moving and can come back when their gradient grows them (the pruning
  error is fed back, as in error-feedback compression):

  .. math::
    w_{t+1} = w_t + \mathrm{inner}\big(\nabla f(m_t \odot w_t)\big),

  and every ``update_every`` steps the mask keeps the largest magnitudes of
  :math:`w_{t+1}`, a fraction :math:`1 - s(t)` of the prunable weights
  (global: one threshold over all prunable leaves; layer-wise: per leaf).

  The training step (the gradient **must** be taken at the pruned params)::

    w_pruned = dpf_pruned_params(params, opt_state)
    grads = jax.grad(loss_fn)(w_pruned, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)

  ``jax.grad(lambda w: loss(mask * w))`` would instead give :math:`m \odot
  g`, static masking with no feedback. Export and evaluate
  :func:`dpf_pruned_params`; :func:`dpf_sparsity` reports the realised
  sparsity. Weight decay and momentum act on the dense weights.

  Masks have exact counts: ``"sort"`` ranks all magnitudes (ties broken by
  position, lower index kept first; memory for one flat copy of the
  prunable weights); ``"bisect"`` finds the exact threshold by 31 counting
  passes over the leaves without concatenating them, keeping every weight
  tied at the threshold (so it may keep a few more than ``"sort"`` when
  magnitudes tie). The mask is computed only on refresh steps
  (``lax.cond``; under ``vmap`` both branches run).

  .. note::
    No official code was available. The refresh period 16, a single global
    threshold and the cubic schedule follow two unofficial implementations;
    the mask here refreshes from the post-step weights at multiples of
    ``update_every``, with the sparsity target of that step. Sparsity is
    relative to the prunable leaves (default: ``ndim >= 2``, i.e. kernels,
    not biases or norms; consider excluding the classifier).

  Cost: one bool mask per prunable weight plus the inner state; a sort (or
  31 passes) every ``update_every`` steps. Inside a jitted train step with
  donated params, the refresh's ``lax.cond`` costs a weight-sized buffer
  on every step, taken or not (``docs/benchmarks.md``). With
  ``refresh_in_update=False`` the update never refreshes the mask and the
  training loop calls :func:`dpf_refresh` (its own jitted function) after
  every ``update_every``-th step instead: the same masks, no branch in the
  step.

  Args:
    inner: the optimiser of the dense weights, with its learning rate.
    sparsity: target fraction of pruned prunable weights, in ``[0, 1)``, or
      a schedule of the step (e.g. :func:`cubic_sparsity_schedule`).
    update_every: refresh period of the mask, ``>= 1``.
    scope: ``'global'`` or ``'layerwise'``.
    prunable: which leaves to prune: a callable ``(path, leaf) -> bool``
      or a tree of bools shaped like the params' structure (the latter
      also works inside ``optax.inject_hyperparams``, which takes callables
      for schedules); default ``leaf.ndim >= 2``.
    threshold_method: ``'sort'`` or ``'bisect'``.
    refresh_in_update: refresh the mask inside ``update`` (default); with
      ``False`` the loop calls :func:`dpf_refresh` after every
      ``update_every``-th update.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`DpfState`; ``update`` needs ``params``.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from optax_ext import pruning
    >>> tx = pruning.dpf(optax.sgd(0.1), sparsity=0.5, update_every=1)
    >>> params = {'w': jnp.array([[1.0, -0.1], [0.2, -2.0]]), 'b': jnp.ones(2)}
    >>> state = tx.init(params)
    >>> loss = lambda p: jnp.sum(p['w'] ** 2) + jnp.sum(p['b'])
    >>> grads = jax.grad(loss)(pruning.dpf_pruned_params(params, state))
    >>> updates, state = tx.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)
    >>> pruning.dpf_pruned_params(params, state)['w']
    Array([[ 0.8,  0. ],
           [ 0. , -1.6]], dtype=float32)
    >>> float(pruning.dpf_sparsity(state))
    0.5

  References:
    Lin et al., `Dynamic Model Pruning with Feedback
    <https://arxiv.org/abs/2006.07253>`_, ICLR 2020; Zhu and Gupta, `To
    prune, or not to prune: exploring the efficacy of pruning for model
    compression <https://arxiv.org/abs/1710.01878>`_, 2017.
  """
  where = 'dpf'
  validation.check_number(
    where, 'sparsity', sparsity, lower=0.0, upper=1.0, upper_inclusive=False
  )
  validation.check_integer(where, 'update_every', update_every, lower=1)
  validation.check_one_of(where, 'scope', scope, _SCOPES)
  validation.check_one_of(where, 'threshold_method', threshold_method, _METHODS)
  validation.check_bool(where, 'refresh_in_update', refresh_in_update)
  prunable = _default_prunable if prunable is None else prunable
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    flags = _prunable_flags(where, params, prunable)
    leaves, treedef = jax.tree.flatten(params)
    mask = [
      jnp.ones_like(x, jnp.bool_) if f else jnp.ones([], jnp.bool_)
      for x, f in zip(leaves, flags, strict=True)
    ]
    return DpfState(
      count=jnp.zeros([], jnp.int32),
      mask=jax.tree.unflatten(treedef, mask),
      inner_state=inner.init(params),
    )

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError(f'{where}: `params` (the dense weights) are required.')
    u, inner_state = inner.update(
      updates, state.inner_state, params, **extra_args
    )
    count = optax.safe_int32_increment(state.count)
    if not refresh_in_update:
      return u, state._replace(count=count, inner_state=inner_state)
    flags = _prunable_flags(where, params, prunable)
    # The post-step weights are the branch's operand, computed outside it:
    # one fresh buffer per step, where a branch reading the donated weights
    # themselves made XLA copy each of them before it (measured in
    # docs/benchmarks.md, DPF).
    post_step = jax.tree.map(
      lambda p, d: p.astype(jnp.float32) + d.astype(jnp.float32), params, u
    )
    mask = lax.cond(
      count % update_every == 0,
      lambda old: refreshed(post_step, old, count, flags),
      lambda old: old,
      state.mask,
    )
    return u, DpfState(count=count, mask=mask, inner_state=inner_state)

  def refreshed(weights, old_mask, count, flags):
    """The masks of ``weights`` (post-step) at step ``count``."""
    leaves, treedef = jax.tree.flatten(weights)
    chosen = [x for x, f in zip(leaves, flags, strict=True) if f]
    level = alias.scalar_at(sparsity, count)
    fresh = iter(_masks(chosen, level, scope, threshold_method))
    old = treedef.flatten_up_to(old_mask)
    out = [next(fresh) if f else o for o, f in zip(old, flags, strict=True)]
    return jax.tree.unflatten(treedef, out)

  def refresh_fn(opt_state, params):
    node = alias.find_state('dpf_refresh', opt_state, DpfState)
    flags = _prunable_flags('dpf_refresh', params, prunable)
    mask = refreshed(params, node.mask, node.count, flags)
    return _replace_state(opt_state, node._replace(mask=mask))

  update_fn.dpf_refresh = refresh_fn
  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _replace_state(opt_state, node):
  return jax.tree.map(
    lambda s: node if isinstance(s, DpfState) else s,
    opt_state,
    is_leaf=lambda s: isinstance(s, DpfState),
  )


@metadata.describe(citations=('lin2020dynamic',))
def dpf_refresh(
  tx: optax.GradientTransformation,
  opt_state: optax.OptState,
  params: optax.Params,
) -> optax.OptState:
  """Refreshes the mask of a :func:`dpf` state from the current weights.

  For ``dpf(..., refresh_in_update=False)``: call it after every
  ``update_every``-th update (``count % update_every == 0``), with the
  params after ``apply_updates``; the mask is then the one the update would
  have computed inside its step (the same weights, sparsity target and
  step count). Jit it on its own, outside the train step.

  Args:
    tx: the transformation :func:`dpf` returned (not a wrapper of it).
    opt_state: an optimiser state holding exactly one :class:`DpfState`
      (``tx``'s own or a chain's).
    params: the dense weights after the step.

  Returns:
    ``opt_state`` with that :class:`DpfState`'s mask refreshed.

  Raises:
    ValueError: if ``tx`` is not a :func:`dpf` transformation.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from optax_ext import pruning
    >>> tx = pruning.dpf(optax.sgd(0.1), 0.5, update_every=1,
    ...                  refresh_in_update=False)
    >>> refresh = jax.jit(lambda s, p: pruning.dpf_refresh(tx, s, p))
    >>> params = {'w': jnp.array([[1.0, -0.1], [0.2, -2.0]])}
    >>> state = tx.init(params)
    >>> grads = {'w': jnp.zeros((2, 2))}
    >>> updates, state = tx.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)
    >>> state = refresh(state, params)  # count 1 % update_every 1 == 0
    >>> pruning.dpf_pruned_params(params, state)['w']
    Array([[ 1.,  0.],
           [ 0., -2.]], dtype=float32)

  References:
    Lin et al., `Dynamic Model Pruning with Feedback
    <https://arxiv.org/abs/2006.07253>`_, ICLR 2020.
  """
  refresh = getattr(getattr(tx, 'update', None), 'dpf_refresh', None)
  if refresh is None:
    raise ValueError(
      'dpf_refresh: `tx` must be the transformation returned by dpf (not a '
      f'chain or wrapper of it), got {type(tx).__name__}.'
    )
  return refresh(opt_state, params)


@metadata.describe(citations=('lin2020dynamic',))
def dpf_pruned_params(
  params: optax.Params, opt_state: optax.OptState
) -> optax.Params:
  """The pruned params :math:`m \\odot w` of a :func:`dpf` state.

  Use them for the forward pass whose gradient feeds :func:`dpf`, for
  evaluation and for export.

  Args:
    params: the dense params.
    opt_state: an optimiser state holding exactly one :class:`DpfState`.

  Returns:
    ``params`` with the pruned weights set to zero (same dtypes).

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import pruning
    >>> tx = pruning.dpf(optax.sgd(0.1), 0.5)
    >>> params = jnp.ones((2, 2))
    >>> pruning.dpf_pruned_params(params, tx.init(params))  # nothing pruned
    Array([[1., 1.],
           [1., 1.]], dtype=float32)

  References:
    Lin et al., `Dynamic Model Pruning with Feedback
    <https://arxiv.org/abs/2006.07253>`_, ICLR 2020; Zhu and Gupta, `To
    prune, or not to prune: exploring the efficacy of pruning for model
    compression <https://arxiv.org/abs/1710.01878>`_, 2017.
  """
  node = alias.find_state('dpf_pruned_params', opt_state, DpfState)
  # Leaf by leaf rather than tree.map: the params and the mask may sit in
  # different containers (e.g. flax.nnx Param vs OptVariable wrappers).
  leaves, treedef = jax.tree.flatten(params)
  masks = jax.tree.leaves(node.mask)
  if len(masks) != len(leaves):
    raise ValueError(
      f'dpf_pruned_params: the params have {len(leaves)} leaves but the DPF '
      f'mask has {len(masks)}; pass the params the state was built for.'
    )
  pruned = [
    jnp.where(m, p, jnp.zeros([], p.dtype))
    for p, m in zip(leaves, masks, strict=True)
  ]
  return jax.tree.unflatten(treedef, pruned)


@metadata.describe(citations=('lin2020dynamic',))
def dpf_sparsity(opt_state: optax.OptState) -> jax.Array:
  """The realised sparsity of a :func:`dpf` mask over the prunable leaves.

  Args:
    opt_state: an optimiser state holding exactly one :class:`DpfState`.

  Returns:
    The float32 scalar pruned prunable weights / prunable weights.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import pruning
    >>> tx = pruning.dpf(optax.sgd(0.1), 0.5)
    >>> float(pruning.dpf_sparsity(tx.init(jnp.ones((2, 2)))))
    0.0

  References:
    Lin et al., `Dynamic Model Pruning with Feedback
    <https://arxiv.org/abs/2006.07253>`_, ICLR 2020; Zhu and Gupta, `To
    prune, or not to prune: exploring the efficacy of pruning for model
    compression <https://arxiv.org/abs/1710.01878>`_, 2017.
  """
  node = alias.find_state('dpf_sparsity', opt_state, DpfState)
  masks = [m for m in jax.tree.leaves(node.mask) if jnp.ndim(m) > 0]
  total = sum(m.size for m in masks)
  pruned = sum(jnp.sum(~m, dtype=jnp.int32) for m in masks)
  return pruned.astype(jnp.float32) / jnp.float32(total)
