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
"""Populations at the cost of one backward pass ("ghost" populations).

Almost every parameter of a network enters through a contraction with an
activation, ``y = x @ W``; the gradient of member ``k`` is then
:math:`x_k^\\top d_k` (activations ``x`` and output cotangents ``d`` of the
rows of member ``k``), so the Gramian, the norms, the inner products and the
combinations of the members' gradients follow from ``x`` and ``d`` without
forming a per-member gradient:

.. math::
  G_{kl} = \\sum_{t \\in k,\\, s \\in l} (x_t \\cdot x_s)(d_t \\cdot d_s),
  \\qquad \\sum_k w_k g_k = x^\\top (w_{k(t)} d_t).

:func:`ghost` finds those contractions in the loss function's jaxpr (the
``dot_general`` and ``conv_general_dilated`` equations one of whose operands
is a parameter leaf used nowhere else, and the row lookups of a parameter
table), evaluates the jaxpr with a zero added to each such output, and
differentiates once with respect to those zeros (the output cotangents) and
to the other leaves, per member under ``vmap``. Each leaf is then one of:

* ``'ghost'``: a ``dot_general``, a convolution (its rows: the input
  patches of each output position) or a lookup of whole rows of a table
  (``gather``) whose per-member rows are few enough that the Gramian from
  the rows is the cheaper (see ``mode``): Gramian and norms from the rows;
* ``'materialised'``: a ``dot_general`` or a convolution with many rows per
  member: its per-member gradients formed from ``x`` and ``d`` (one
  contraction per member, no second backward pass);
* ``'fallback'``: any other use (biases, normalisation scales, other
  gathers, leaves used twice or inside a loop): per-member gradients of
  that leaf from the same backward pass.

:func:`report` lists which. Every population function of the core reads a
:class:`GhostPopulation` through the same interface as a
:class:`~optax_ext.population.Microbatches` (``lean.MemberFree``).
"""

from collections.abc import Callable
import dataclasses
import math
from typing import Any

import jax
from jax import lax
import jax.numpy as jnp
import optax

from optax_ext._src import axes as axes_lib
from optax_ext._src import jaxpr_taps as taps_lib
from optax_ext._src import lean

_F32 = jnp.float32
_HIGHEST = lax.Precision.HIGHEST


def _lookup_rows(x, d) -> tuple[jax.Array, jax.Array]:
  """``[K, T]`` row indices and ``[K, T, O]`` cotangent rows of a lookup."""
  k = x.shape[0]
  ids = x.reshape(k, -1)
  t = ids.shape[1]
  return ids, d.reshape(k, t, -1)


def _member_rows(
  tap: taps_lib.Tap, x, d, shape: tuple[int, ...]
) -> tuple[jax.Array, jax.Array]:
  """What a ghost leaf (of ``shape``) has its Gramian made of: ``[K, T]``
  looked-up ids or ``[K, T, I]`` activation rows (a convolution's patches),
  and ``[K, T, O]`` cotangent rows."""
  if tap.kind == 'gather':
    return _lookup_rows(x, d.astype(_F32))
  if tap.kind == 'conv':
    return _conv_rows(tap, x.astype(_F32), d.astype(_F32), shape)
  return _rows(tap, x.astype(_F32), d.astype(_F32))


def _conv_rows(
  tap: taps_lib.Tap, x, d, kernel_shape: tuple[int, ...]
) -> tuple[jax.Array, jax.Array]:
  """``[K, T, I]`` input patches and ``[K, T, O]`` cotangent rows of a
  convolution (``T``: a member's examples times output positions; ``I``:
  input features times the window), with :math:`g_k = \\sum_t p_{kt}
  \\otimes d_{kt}` up to the order of the kernel's entries (which no inner
  product sees)."""
  p = tap.params
  dn = p['dimension_numbers']
  window = [kernel_shape[i] for i in dn.rhs_spec[2:]]

  def patches(xk):  # the convolution with a one-hot kernel: exact
    return lax.conv_general_dilated_patches(
      xk,
      window,
      p['window_strides'],
      p['padding'],
      p['lhs_dilation'],
      p['rhs_dilation'],
      dn,
      precision=_HIGHEST,
    )

  def rows(a):  # [K, *out] -> [K, examples x positions, features]
    out = dn.out_spec
    a = jnp.transpose(a, (0, 1 + out[0], *(1 + i for i in out[2:]), 1 + out[1]))
    return a.reshape(a.shape[0], -1, a.shape[-1])

  return rows(jax.vmap(patches)(x)), rows(d)


def _row_block(tap: taps_lib.Tap, mine, other) -> jax.Array:
  """``[K, L]``: :math:`\\sum_{t,s} (x_{kt} \\cdot x_{ls})(d_{kt} \\cdot
  d_{ls})` between two sets of members' rows."""
  (xa, da), (xb, db) = mine, other
  if tap.kind == 'gather':
    xx = (xa[:, :, None, None] == xb[None, None, :, :]).astype(_F32)
  else:
    xx = jnp.einsum('kti,lsi->ktls', xa, xb, precision=_HIGHEST)
  dd = jnp.einsum('kto,lso->ktls', da, db, precision=_HIGHEST)
  return jnp.einsum('ktls,ktls->kl', xx, dd, precision=_HIGHEST)


def _within_members(tap: taps_lib.Tap, rows) -> jax.Array:
  """``[K]``: the diagonal of :func:`_row_block` of rows with themselves."""
  x, d = rows
  if tap.kind == 'gather':
    xx = (x[:, :, None] == x[:, None, :]).astype(_F32)
  else:
    xx = jnp.einsum('kti,ksi->kts', x, x, precision=_HIGHEST)
  dd = jnp.einsum('kto,kso->kts', d, d, precision=_HIGHEST)
  return jnp.sum(xx * dd, axis=(1, 2))


def _rows(tap: taps_lib.Tap, x, d) -> tuple[jax.Array, jax.Array]:
  """``[K, T, I]`` activation rows and ``[K, T, O]`` cotangent rows with
  :math:`g_k = \\sum_t x_{kt} \\otimes d_{kt}` (the parameter permuted to
  its contracted dimensions, then its free ones)."""
  (lc, rc), _ = tap.params['dimension_numbers']
  x_contract = lc if tap.position == 1 else rc
  x_rank = x.ndim - 1  # a leading member axis
  x_free = [i for i in range(x_rank) if i not in x_contract]
  k = x.shape[0]
  xr = jnp.transpose(
    x, (0, *(1 + i for i in x_free), *(1 + i for i in x_contract))
  )
  t = math.prod(x.shape[1 + i] for i in x_free)
  xr = xr.reshape(k, t, -1)
  out_rank = d.ndim - 1
  n_x_free = len(x_free)
  w_free_count = out_rank - n_x_free
  if tap.position == 1:  # out = x_free + w_free
    order = list(range(out_rank))
  else:  # out = w_free + x_free
    order = list(range(w_free_count, out_rank)) + list(range(w_free_count))
  dr = jnp.transpose(d, (0, *(1 + i for i in order))).reshape(k, t, -1)
  return xr, dr


def _applied(tap: taps_lib.Tap, x, w):
  """The tapped equation on every member's operand ``x[k]``."""
  return jax.vmap(lambda xk: taps_lib.apply(tap, xk, w))(x)


def _member_grads(tap: taps_lib.Tap, x, d, param) -> jax.Array:
  """``[K, *param.shape]``: each member's :math:`x_k^\\top d_k`."""

  def one(xk, dk):
    out, vjp = jax.vjp(lambda w: taps_lib.apply(tap, xk, w), param)
    return vjp(dk.astype(out.dtype))[0]

  return jax.vmap(one)(x, d)


def _summed_grad(tap: taps_lib.Tap, x, d, param):
  """:math:`\\sum_k x_k^\\top d_k`: the equation's own transpose."""
  out, vjp = jax.vjp(lambda w: _applied(tap, x, w), param)
  return vjp(d.astype(out.dtype))[0]


def _pack(tree) -> jax.Array:
  """Every leaf of ``tree`` in one flat float32 buffer (integer ids kept
  bit for bit)."""
  parts = []
  for x in jax.tree.leaves(tree):
    if jnp.issubdtype(x.dtype, jnp.integer):
      x = lax.bitcast_convert_type(x.astype(jnp.int32), _F32)
    parts.append(x.astype(_F32).reshape(-1))
  return jnp.concatenate(parts)


def _unpack(flat: jax.Array, like):
  """The inverse of :func:`_pack`, shaped and typed like ``like``."""
  leaves, treedef = jax.tree.flatten(like)
  out, start = [], 0
  for x in leaves:
    part = flat[start : start + x.size].reshape(x.shape)
    start += x.size
    if jnp.issubdtype(x.dtype, jnp.integer):
      part = lax.bitcast_convert_type(part, jnp.int32).astype(x.dtype)
    out.append(part.astype(x.dtype))
  return jax.tree.unflatten(treedef, out)


def _per_member_axis(w: jax.Array, ndim: int) -> jax.Array:
  return w.reshape((-1,) + (1,) * (ndim - 1))


@dataclasses.dataclass(frozen=True, eq=False)
class _Leaf:
  """One parameter leaf's per-member information."""

  kind: str  # 'ghost', 'materialised' or 'fallback'
  tap: taps_lib.Tap | None = None
  x: jax.Array | None = None  # [K, ...] operand of the tapped equation
  d: jax.Array | None = None  # [K, ...] output cotangents
  per_member: jax.Array | None = None  # [K, *leaf.shape]


class GhostPopulation(lean.MemberFree):
  """A population of per-member gradients never formed (see :func:`ghost`).

  Attributes:
    params: the params the gradients are taken at.
    losses: ``[K]`` float32 member losses.
    scales: optional ``[K]`` float32 per-member factors.
  """

  def __init__(self, params, treedef, leaves, losses, scales=None):
    self.params = params
    self._treedef = treedef
    self._leaves = leaves
    self.losses = losses
    self.scales = scales

  def local_size(self) -> int:
    return int(self.losses.shape[0])

  def with_scales(self, scales: jax.Array) -> 'GhostPopulation':
    scales = jnp.asarray(scales, _F32)
    if self.scales is not None:
      scales = scales * self.scales
    return GhostPopulation(
      self.params, self._treedef, self._leaves, self.losses, scales
    )

  def kinds(self) -> list[str]:
    return [leaf.kind for leaf in self._leaves]

  # The member-free interface (lean.MemberFree).

  def _scaled(self, values: jax.Array, power: int = 1) -> jax.Array:
    """``values`` (leading axis: members) times the scales; 0 where a scale
    is 0 (a NaN of a dropped member stays out)."""
    if self.scales is None:
      return values
    s = _per_member_axis(self.scales**power, values.ndim)
    return jnp.where(s != 0, s * values, 0.0)

  def _per_member(self, leaf: _Leaf, param) -> jax.Array:
    """``[K, *shape]`` per-member gradients of one leaf (float32)."""
    if leaf.per_member is not None:
      return leaf.per_member.astype(_F32)
    return _member_grads(leaf.tap, leaf.x, leaf.d, param).astype(_F32)

  def _pairs(self):
    return zip(self._leaves, jax.tree.leaves(self.params), strict=True)

  def _ghost_rows(self) -> list:
    """The ghost leaves' rows: ``([K, T]`` ids or ``[K, T, I]``
    activations, ``[K, T, O]`` cotangents) per leaf."""
    return [
      _member_rows(leaf.tap, leaf.x, leaf.d, param.shape)
      for leaf, param in self._pairs()
      if leaf.kind == 'ghost'
    ]

  def _row_blocks(self, mine: list, other: list) -> jax.Array:
    """``[K, L]``: the ghost leaves' inner products between two sets of
    members' rows."""
    taps = [leaf.tap for leaf in self._leaves if leaf.kind == 'ghost']
    g = jnp.zeros((mine[0][0].shape[0], other[0][0].shape[0]), _F32)
    for tap, a, b in zip(taps, mine, other, strict=True):
      g = g + _row_block(tap, a, b)
    return g

  def _formed(self) -> list:
    """The other leaves' per-member gradients, ``[K, *shape]`` float32."""
    return [
      self._per_member(leaf, param)
      for leaf, param in self._pairs()
      if leaf.kind != 'ghost'
    ]

  def _with_scales(self, g: jax.Array, scales) -> jax.Array:
    g = 0.5 * (g + g.T)
    if scales is None:
      return g
    s = scales[:, None] * scales[None, :]
    return jnp.where(s != 0, s * g, 0.0)

  def gramian(self) -> jax.Array:
    """``[K, K]`` over the local members."""
    k = self.local_size()
    rows = self._ghost_rows()
    g = self._row_blocks(rows, rows) if rows else jnp.zeros((k, k), _F32)
    for p in self._formed():
      p = p.reshape(k, -1)
      g = g + jnp.matmul(p, p.T, precision=_HIGHEST)
    return self._with_scales(g, self.scales)

  def gathered_gramian(self, axis_name) -> tuple[jax.Array, list]:
    """The Gramian over the members of every index of ``axis_name`` (index
    first, then local position), in two parts.

    Returns:
      The ghost leaves' part, ``[K N, K N]``: every index gathers every
      index's rows (one ``all_gather`` of one buffer: the batch's tapped
      activations and cotangents, not ``K N`` gradients) and forms its
      ``[K, K N]`` row block; one ``all_gather`` of the blocks completes
      it. And the other leaves' scaled per-member gradients, ``[K, *shape]``
      each: their part is the Gramian of a population stacked on the axis,
      which the core forms with its coordinate-sharded collectives (per
      device ``K`` members, not ``K N``).
    """
    k = self.local_size()
    n = lax.axis_size(axis_name)
    rows = self._ghost_rows()
    formed = [self._scaled(p) for p in self._formed()]
    if not rows:
      return jnp.zeros((k * n, k * n), _F32), formed
    # One buffer, one collective, rather than one in flight per leaf.
    every = axes_lib.all_gather(_pack(rows)[None], axis_name, tiled=True)
    blocks = [self._row_blocks(rows, _unpack(every[i], rows)) for i in range(n)]
    row_block = jnp.concatenate(blocks, axis=1)  # [K, K N], index order
    g = axes_lib.all_gather(row_block, axis_name, tiled=True)
    every_scale = None
    if self.scales is not None:
      every_scale = axes_lib.all_gather(self.scales, axis_name, tiled=True)
    return self._with_scales(g, every_scale), formed

  def _squared_norms(self) -> jax.Array:
    k = self.local_size()
    sq = jnp.zeros((k,), _F32)
    for leaf, param in self._pairs():
      if leaf.kind == 'ghost':
        rows = _member_rows(leaf.tap, leaf.x, leaf.d, param.shape)
        sq = sq + _within_members(leaf.tap, rows)
      else:
        p = self._per_member(leaf, param).reshape(k, -1)
        sq = sq + jnp.sum(jnp.square(p), axis=1)
    return self._scaled(jnp.maximum(sq, 0.0), power=2)

  def inner_products(self, vector) -> jax.Array:
    """``[K]``: :math:`\\langle s_k g_k, v\\rangle`."""
    k = self.local_size()
    out = jnp.zeros((k,), _F32)
    leaves = jax.tree.leaves(self.params)
    for leaf, param, v in zip(
      self._leaves, leaves, jax.tree.leaves(vector), strict=True
    ):
      v = jnp.asarray(v)
      if leaf.kind in ('ghost', 'materialised'):
        # <x_k^T d_k, v> = <x_k v, d_k>: the equation applied to v.
        applied = _applied(leaf.tap, leaf.x, v.astype(param.dtype))
        prod = applied.astype(_F32) * leaf.d.astype(_F32)
        out = out + jnp.sum(prod.reshape(k, -1), axis=1)
      else:
        p = leaf.per_member.astype(_F32).reshape(k, -1)
        out = out + p @ v.astype(_F32).reshape(-1)
    return self._scaled(out)

  def norms(self, center=None) -> jax.Array:
    sq = self._squared_norms()
    if center is not None:
      c = jax.tree.leaves(center)
      cc = sum(jnp.sum(jnp.square(jnp.asarray(x, _F32))) for x in c)
      sq = sq - 2.0 * self.inner_products(center) + cc
    return jnp.sqrt(jnp.maximum(sq, 0.0))

  def combine(self, weights: jax.Array, *, skip_zero_weights: bool = False):
    """:math:`\\sum_k w_k s_k g_k` in the params' dtypes."""
    w = jnp.asarray(weights, _F32)
    # A zero-scaled member (clipped away: non-finite) is zero, and with
    # skip_zero_weights a member of weight 0 adds nothing: neither may bring
    # a NaN of its activations or cotangents into the sum.
    dropped = (w == 0) if skip_zero_weights else jnp.zeros(w.shape, bool)
    if self.scales is not None:
      dropped = dropped | (self.scales == 0)
      w = w * self.scales
    w = jnp.where(dropped, 0.0, w)
    out = []
    for leaf, param in self._pairs():
      if leaf.kind in ('ghost', 'materialised'):
        gone = _per_member_axis(dropped, leaf.d.ndim)
        d = jnp.where(gone, 0.0, leaf.d.astype(_F32))
        d = d * _per_member_axis(w, leaf.d.ndim)
        x_gone = _per_member_axis(dropped, leaf.x.ndim)
        x = jnp.where(x_gone, jnp.zeros_like(leaf.x), leaf.x)
        total = _summed_grad(leaf.tap, x, d, param)
      else:
        p = leaf.per_member.astype(_F32)
        p = jnp.where(_per_member_axis(dropped, p.ndim), 0.0, p)
        total = jnp.sum(_per_member_axis(w, p.ndim) * p, axis=0)
      out.append(total.astype(param.dtype))
    return jax.tree.unflatten(self._treedef, out)

  def mean_and_var_local(self):
    """``(count, mean, M2)`` over the local members, float32 (each leaf's
    per-member gradients formed one leaf at a time)."""
    k = self.local_size()
    means, m2s = [], []
    for leaf, param in self._pairs():
      p = self._scaled(self._per_member(leaf, param))
      mean = jnp.mean(p, axis=0)
      means.append(mean)
      m2s.append(jnp.sum(jnp.square(p - mean[None]), axis=0))
    unflat = lambda xs: jax.tree.unflatten(self._treedef, xs)
    return jnp.asarray(k, _F32), unflat(means), unflat(m2s)


def ghost(
  loss_fn: Callable[..., jax.Array],
  params: optax.Params,
  batch: Any,
  num_members: int | None = None,
  *,
  mode: str = 'auto',
) -> GhostPopulation:
  r"""The population of ``K`` member gradients, from one backward pass.

  Member ``k`` is the gradient of ``loss_fn(params, batch_k)`` where
  ``batch_k`` is the ``k``-th of ``K`` equal consecutive slices of the
  batch's leading axis (``K`` = the batch size by default: per-example
  gradients). Nothing per member is formed for the contractions found in
  ``loss_fn``'s jaxpr (see the module docstring); the aggregators read the
  result as they read :func:`~optax_ext.population.microbatches`.

  Args:
    loss_fn: ``(params, batch) -> scalar``, the loss of a batch (of
      ``B / K`` examples: 1 for per-example members).
    params: the params the gradients are taken at.
    batch: a pytree whose leaves share a leading axis ``B``.
    num_members: ``K``, dividing ``B``; default ``B``.
    mode: ``'auto'``: a ``dot_general``, convolution (``T``: examples
      times output positions, ``I``: the patch size) or lookup with ``T``
      rows of widths ``I`` and ``O`` per member is ghost when the Gramian
      from its rows, :math:`K^2 T^2 (I + O)` multiply-adds, costs no more
      than forming the per-member gradients and their Gramian, :math:`K T I
      O + K^2 I O`; materialised otherwise. ``'ghost'`` (the least memory:
      :math:`K^2 T^2` floats instead of :math:`K I O`) or
      ``'materialise'`` forces one form for every contraction.

  Returns:
    A :class:`GhostPopulation`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population, robust
    >>> params = {'w': jnp.ones((3, 2)), 'b': jnp.zeros(2)}
    >>> loss = lambda p, b: jnp.sum(jnp.tanh(b @ p['w'] + p['b']))
    >>> batch = jnp.arange(12.).reshape(4, 3) / 12
    >>> pop = population.ghost(loss, params, batch)  # 4 per-example members
    >>> population.ghost_report(pop)
    {"['b']": 'fallback', "['w']": 'ghost'}
    >>> tx = robust.aggregate_by_krum(num_byzantine=0, num_selected=2)
    >>> update, _ = tx.update(pop, tx.init(params), params)
    >>> update['w'].shape
    (3, 2)
  """
  where = 'ghost'
  if mode not in ('auto', 'ghost', 'materialise'):
    raise ValueError(
      f"{where}: `mode` must be 'auto', 'ghost' or 'materialise', got {mode!r}."
    )
  if not callable(loss_fn):
    raise TypeError(f'{where}: `loss_fn` must be callable, got {loss_fn!r}.')
  sizes = {jnp.shape(x)[0] for x in jax.tree.leaves(batch)}
  if len(sizes) != 1:
    raise ValueError(
      f'{where}: the batch leaves must share their leading axis, got '
      f'{sorted(sizes)}.'
    )
  b = sizes.pop()
  k = b if num_members is None else num_members
  split = lean.split_batch(where, batch, k, 'num_members')
  # Under jax.shard_map, per-device gradients need the params varying like
  # the local batch (else the gradients come back summed over devices).
  leaves, treedef = jax.tree.flatten(axes_lib.vary_like(params, batch))
  n = len(leaves)
  member = jax.tree.map(lambda x: x[0], split)
  batch_leaves, batch_def = jax.tree.flatten(member)

  def flat_loss(*args):
    p = jax.tree.unflatten(treedef, args[:n])
    return loss_fn(p, jax.tree.unflatten(batch_def, args[n:]))

  closed = jax.make_jaxpr(flat_loss)(*leaves, *batch_leaves)
  taps, walk_into = taps_lib.analyse(closed.jaxpr, n)
  tapped = {tap.leaf: path for path, tap in taps.items()}
  others = [i for i in range(n) if i not in tapped]

  def run(other_leaves, zs, member_batch):
    full = list(leaves)
    for i, x in zip(others, other_leaves, strict=True):
      full[i] = x
    found = {}
    (loss,) = taps_lib.interpret(
      closed.jaxpr,
      closed.consts,
      [*full, *jax.tree.leaves(member_batch)],
      (),
      taps,
      walk_into,
      zs,
      found,
    )
    return loss.astype(_F32), found

  # The zeros added to the tapped outputs, shaped as the jaxpr says.
  zeros = {
    path: jnp.zeros((k, *tap.out.shape), tap.out.dtype)
    for path, tap in taps.items()
  }
  zeros = axes_lib.vary_like(zeros, batch)  # per-device cotangents
  grad_fn = jax.value_and_grad(run, argnums=(0, 1), has_aux=True)
  (losses, xs), (other_grads, ds) = jax.vmap(grad_fn, in_axes=(None, 0, 0))(
    [leaves[i] for i in others], zeros, split
  )
  records: list[_Leaf | None] = [None] * n
  for i, g in zip(others, other_grads, strict=True):
    records[i] = _Leaf('fallback', per_member=g)
  for path, tap in taps.items():
    x, d = xs[path], ds[path]
    kind = 'materialised'
    if mode != 'materialise':
      shape = leaves[tap.leaf].shape
      xr, dr = jax.eval_shape(
        lambda x, d, tap=tap, shape=shape: _member_rows(tap, x, d, shape),
        x[:1],
        d[:1],
      )
      # A lookup's rows compare ids: I = 1.
      t = xr.shape[1]
      width = (1 if tap.kind == 'gather' else xr.shape[2]) + dr.shape[2]
      size = leaves[tap.leaf].size
      # Multiply-adds of the Gramian from the rows (K^2 T^2 (I + O)) and of
      # forming and multiplying the per-member gradients (K T I O + K^2 I O);
      # the row products also hold K^2 T^2 floats, the others K I O.
      from_rows = k * k * t * t * width
      formed = k * t * size + k * k * size
      if mode == 'ghost' or from_rows <= formed:
        kind = 'ghost'
    records[tap.leaf] = _Leaf(kind, tap=tap, x=x, d=d)
  varying = jax.tree.unflatten(treedef, leaves)  # as the local batch
  return GhostPopulation(varying, treedef, records, losses)


def report(population: GhostPopulation) -> dict[str, str]:
  """Which leaves ran ghost, materialised or fell back, by path.

  Args:
    population: a :func:`ghost` population.

  Returns:
    ``{keystr(path): 'ghost' | 'materialised' | 'fallback'}``.
  """
  paths = [
    jax.tree_util.keystr(p)
    for p, _ in jax.tree_util.tree_leaves_with_path(population.params)
  ]
  return dict(zip(paths, population.kinds(), strict=True))
