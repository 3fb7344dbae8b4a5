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
"""GradAlign and FedGA: gradients taken at per-worker displaced points."""

from collections.abc import Callable
from typing import Any

import jax
from jax import lax
import jax.numpy as jnp
import optax

from optax_ext._src import base
from optax_ext._src import metadata
from optax_ext._src import population as pop_lib
from optax_ext._src import validation

_F32 = jnp.float32


def _check_axes(where, axes) -> pop_lib.PopulationAxes:
  axes = base.resolve_axes(where, axes)
  if axes.axis not in (0, None):
    raise ValueError(
      f'{where}: workers must be on the leading axis (axes.axis=0) or one '
      f'per index of a named axis (axes.axis=None), got axis={axes.axis}.'
    )
  return axes


def _num_workers(where, tree, axes) -> tuple[int, int]:
  """``(local, total)`` numbers of workers of a worker-stacked tree."""
  try:
    k_local = pop_lib.local_size(tree, axes)
  except ValueError as e:
    raise ValueError(f'{where}: {e}') from None
  return k_local, pop_lib.size(tree, axes)


def _local_weights(where, weights, axes, k_local, k) -> jax.Array:
  """This index's normalised worker weights ``omega_i / sum(omega)``."""
  if weights is None:
    return jnp.full((k_local,), 1.0 / k, _F32)
  w = jnp.asarray(weights, _F32)
  if w.shape != (k,):
    raise ValueError(
      f'{where}: `weights` must have shape ({k},), one per worker, got '
      f'{w.shape}.'
    )
  return pop_lib.local_slice(w / jnp.sum(w), axes, k_local)


def _weighted_sum(tree, w, axes):
  """``sum_i w_i x_i`` over local workers, then across the named axis (f32).

  ``tree`` leaves are ``[k_local, ...]`` when ``axes.axis == 0`` and
  member-shaped otherwise.
  """

  def one(x):
    x = x.astype(_F32)
    if axes.axis is None:
      out = w[0] * x
    else:
      out = jnp.tensordot(w, x, axes=(0, 0), precision=lax.Precision.HIGHEST)
    return out

  return pop_lib.across_indices(jax.tree.map(one, tree), axes)


@metadata.describe(citations=('dandi2022implicit',))
def gradalign_displacement(
  anchor: optax.Params, mean_anchor: optax.Params, beta: jax.typing.ArrayLike
) -> optax.Params:
  r"""A worker's displacement :math:`v_i = -\beta(\bar a - a_i)` in float32.

  Args:
    anchor: the worker's gradient :math:`a_i` at the shared iterate.
    mean_anchor: the (weighted) mean :math:`\bar a` over the workers.
    beta: :math:`\beta \ge 0`.

  Returns:
    A float32 tree shaped like ``anchor``; the worker evaluates its gradient
    at ``params + v``.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> a, mean = jnp.array([3.0]), jnp.array([1.0])
    >>> alignment.gradalign_displacement(a, mean, beta=0.5)
    Array([1.], dtype=float32)
  """
  beta = jnp.asarray(beta, _F32)
  return jax.tree.map(
    lambda a, m: -beta * (m.astype(_F32) - a.astype(_F32)), anchor, mean_anchor
  )


def _displaced(params, disp, stacked: bool):
  def one(p, d):
    p32 = p.astype(_F32)
    return (p32[None] + d if stacked else p32 + d).astype(p.dtype)

  return jax.tree.map(one, params, disp)


def _value_and_grad(loss_fn, has_aux):
  vg = jax.value_and_grad(loss_fn, has_aux=has_aux)
  if has_aux:
    return vg
  return lambda *a: (lambda v, g: ((v, None), g))(*vg(*a))


@metadata.describe(citations=('dandi2022implicit',))
def gradalign_value_and_grad(
  loss_fn: Callable[..., Any],
  params: optax.Params,
  batch: Any,
  *,
  beta: jax.typing.ArrayLike = 0.1,
  axes: pop_lib.PopulationAxes | None = None,
  weights: jax.Array | None = None,
  has_aux: bool = False,
  vectorize: bool = True,
) -> tuple[Any, optax.Updates]:
  r"""GradAlign: the mean gradient taken at per-worker displaced points.

  With workers :math:`i` holding losses :math:`f_i` (their batches) and
  weights :math:`\omega_i` (normalised to sum to 1):

  .. math::
    a_i = \nabla f_i(x), \quad \bar a = \sum_i \omega_i a_i, \quad
    y_i = x - \beta(\bar a - a_i), \quad
    g = \sum_i \omega_i \nabla f_i(y_i).

  To first order in :math:`\beta` (exactly for quadratics),
  :math:`g = \nabla\big[f + \tfrac\beta2 V\big](x)` with
  :math:`V = \sum_i\omega_i\|\nabla f_i - \nabla f\|^2` (see
  :func:`gradient_variance`): the implicit regulariser of small-batch SGD
  that large parallel batches lose, which pushes the workers' gradients into
  alignment. Feed ``g`` to any optax optimiser. Each worker uses the same
  batch for its anchor and its displaced gradient.

  Cost: two gradients per worker (three with ``vectorize=False``), two
  all-reduces over the named axis, and with ``vectorize=True`` two
  param-sized buffers per local worker (``vectorize=False`` runs the local
  workers one at a time with ``lax.map``-style loops and O(1) extra memory).

  Args:
    loss_fn: ``loss_fn(params, worker_batch) -> scalar`` (or ``(scalar,
      aux)`` with ``has_aux``); anything it does in train mode (dropout,
      batch-norm statistics, L2 terms) enters both passes.
    params: the shared iterate :math:`x`.
    batch: the workers' batches: leaves ``[K, ...]`` (one slice per worker)
      when ``axes.axis == 0``, one worker's batch per index of the named axis
      when ``axes.axis is None``, or ``[K_local, ...]`` per index when both.
    beta: :math:`\beta \ge 0` (reference 0.1); may be a traced scalar
      (schedules). :math:`\beta = 0` or one worker gives the plain mean
      gradient at twice the cost.
    axes: where the workers live (default: stacked on axis 0).
    weights: optional ``[K]`` worker weights :math:`\omega` (e.g. data
      sizes), in member order; the same weights form :math:`\bar a` and the
      final average (otherwise the displacements add a drift).
    has_aux: whether ``loss_fn`` returns ``(loss, aux)``.
    vectorize: ``vmap`` the local workers (fast, memory per worker) or loop
      over them.

  Returns:
    ``((mean anchor loss, aux), grads)``: the :math:`\omega`-weighted mean of
    the workers' losses at :math:`x`, ``aux`` stacked over local workers
    (``None`` without ``has_aux``), and ``grads`` shaped and typed like
    ``params``, identical on every index of the named axis.

  Raises:
    ValueError: ``beta < 0`` or NaN, a worker axis other than 0, leaves of
      ``batch`` disagreeing on the number of workers, or ``weights`` not
      ``[K]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> loss = lambda w, b: 0.5 * b['h'] * jnp.sum((w - b['c']) ** 2)
    >>> batch = {'h': jnp.array([1.0, 3.0]), 'c': jnp.array([[1.0], [-1.0]])}
    >>> (value, _), g = alignment.gradalign_value_and_grad(
    ...   loss, jnp.zeros(1), batch, beta=0.1)
    >>> value, g  # plain mean gradient: [1.]; aligned: 1 + beta * 2
    (Array(1., dtype=float32), Array([1.2], dtype=float32))

  References:
    Dandi, Barba and Jaggi, `Implicit Gradient Alignment in Distributed
    and Federated Learning <https://arxiv.org/abs/2106.13897>`_, AAAI 2022;
    reference code `epfml/GradientAlignment
    <https://github.com/epfml/GradientAlignment>`_.
  """
  return _gradalign(
    'gradalign_value_and_grad', loss_fn, params, batch, beta=beta, axes=axes,
    weights=weights, has_aux=has_aux, vectorize=vectorize,
  )  # fmt: skip


def _gradalign(
  where, loss_fn, params, batch, *, beta, axes, weights, has_aux, vectorize
):
  """:func:`gradalign_value_and_grad`, errors reported as ``where``."""
  validation.check_non_negative(where, 'beta', beta)
  axes = _check_axes(where, axes)
  k_local, k = _num_workers(where, batch, axes)
  w = _local_weights(where, weights, axes, k_local, k)
  vg = _value_and_grad(loss_fn, has_aux)
  grad = lambda p, b: vg(p, b)[1]
  stacked = axes.axis == 0
  # Per-worker (not device-summed) gradients under jax.shard_map.
  params = pop_lib.vary_over_members(params, batch, axes)

  if not stacked:
    (loss, aux), anchor = vg(params, batch)
    mean_anchor = _weighted_sum(anchor, w, axes)
    disp = gradalign_displacement(anchor, mean_anchor, beta)
    h = grad(_displaced(params, disp, False), batch)
    value = _weighted_sum(loss, w, axes)
  elif vectorize:
    (loss, aux), anchors = jax.vmap(vg, in_axes=(None, 0))(params, batch)
    mean_anchor = _weighted_sum(anchors, w, axes)
    disp = jax.tree.map(
      lambda a, m: gradalign_displacement(a, m[None], beta),
      anchors,
      mean_anchor,
    )
    h = jax.vmap(grad)(_displaced(params, disp, True), batch)
    value = _weighted_sum(loss, w, axes)
  else:
    zeros = jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), _F32), params)
    zero = jnp.zeros([], _F32)
    # The loop carries per-device partial sums.
    zero, zeros = pop_lib.vary_over_members((zero, zeros), batch, axes)

    def anchor_pass(acc, xs):
      b, wi = xs
      (loss, a), g = vg(params, b)
      acc = jax.tree.map(lambda s, x: s + wi * x.astype(_F32), acc, (loss, g))
      return acc, a

    (value, mean_anchor), aux = lax.scan(anchor_pass, (zero, zeros), (batch, w))
    value, mean_anchor = pop_lib.across_indices((value, mean_anchor), axes)

    def aligned_pass(acc, xs):
      b, wi = xs
      disp = gradalign_displacement(grad(params, b), mean_anchor, beta)
      hi = grad(_displaced(params, disp, False), b)
      return jax.tree.map(lambda s, x: s + wi * x.astype(_F32), acc, hi), None

    g, _ = lax.scan(aligned_pass, zeros, (batch, w))
    g = pop_lib.across_indices(g, axes)
    out = jax.tree.map(lambda x, p: x.astype(p.dtype), g, params)
    return (value, aux if has_aux else None), out

  g = _weighted_sum(h, w, axes)
  out = jax.tree.map(lambda x, p: x.astype(p.dtype), g, params)
  return (value, aux if has_aux else None), out


@metadata.describe(
  citations=('dandi2022implicit',),
  row=metadata.Row(
    'alignment',
    'GradAlign gradient oracle',
    papers='[Dandi et al. 2022](https://arxiv.org/abs/2106.13897)',
    also=(
      'gradalign_value_and_grad',
      'gradalign_displacement',
      'gradient_variance',
    ),
  ),
)
def gradalign_grad(
  loss_fn: Callable[..., Any],
  params: optax.Params,
  batch: Any,
  *,
  beta: jax.typing.ArrayLike = 0.1,
  axes: pop_lib.PopulationAxes | None = None,
  weights: jax.Array | None = None,
  has_aux: bool = False,
  vectorize: bool = True,
) -> optax.Updates:
  r"""The GradAlign gradient alone (see :func:`gradalign_value_and_grad`).

  .. math::
    g = \sum_i \omega_i \nabla f_i\big(x - \beta(\bar a - a_i)\big),
    \qquad a_i = \nabla f_i(x).

  Args:
    loss_fn: ``loss_fn(params, worker_batch) -> scalar``.
    params: the shared iterate.
    batch: the workers' batches (leaves ``[K, ...]`` or one per index of the
      named axis).
    beta: :math:`\beta \ge 0` (reference 0.1).
    axes: where the workers live.
    weights: optional ``[K]`` worker weights.
    has_aux: whether ``loss_fn`` returns ``(loss, aux)``.
    vectorize: ``vmap`` the local workers or loop over them.

  Returns:
    A tree shaped and typed like ``params``.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from optax_ext import alignment
    >>> loss = lambda w, b: jnp.mean((b['x'] @ w - b['y']) ** 2)
    >>> key = jax.random.key(0)
    >>> batch = {'x': jax.random.normal(key, (8, 16, 3)),  # 8 workers
    ...          'y': jnp.ones((8, 16))}
    >>> params, opt = jnp.zeros(3), optax.sgd(0.1)
    >>> state = opt.init(params)
    >>> g = alignment.gradalign_grad(loss, params, batch)
    >>> updates, state = opt.update(g, state)
    >>> optax.apply_updates(params, updates).shape
    (3,)

  References:
    Dandi, Barba and Jaggi, `Implicit Gradient Alignment in Distributed
    and Federated Learning <https://arxiv.org/abs/2106.13897>`_, AAAI 2022;
    reference code `epfml/GradientAlignment
    <https://github.com/epfml/GradientAlignment>`_.
  """
  _, g = _gradalign(
    'gradalign_grad',
    loss_fn,
    params,
    batch,
    beta=beta,
    axes=axes,
    weights=weights,
    has_aux=has_aux,
    vectorize=vectorize,
  )
  return g


@metadata.describe(citations=('dandi2022implicit',))
def gradient_variance(
  grads: optax.Params,
  *,
  axes: pop_lib.PopulationAxes | None = None,
  weights: jax.Array | None = None,
) -> jax.Array:
  r"""Spread of a worker population, :math:`V=\sum_i\omega_i\|g_i-\bar g\|^2`.

  :math:`V = \sum_i \omega_i\|g_i\|^2 - \|\bar g\|^2`: GradAlign's implicit
  regulariser is :math:`\tfrac\beta2 V`; lowering it raises the workers'
  pairwise inner products (their alignment). Computed as the mean squared
  deviation from :math:`\bar g` (no cancellation).

  Args:
    grads: the population (leaves ``[K, *shape]`` or one member per index
      of the named axis).
    axes: where the members live.
    weights: optional ``[K]`` weights (normalised here).

  Returns:
    A float32 scalar, identical on every index of the named axis.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> alignment.gradient_variance(jnp.array([[1.0, 0.0], [-1.0, 0.0]]))
    Array(1., dtype=float32)

  References:
    Dandi, Barba and Jaggi, `Implicit Gradient Alignment in Distributed
    and Federated Learning <https://arxiv.org/abs/2106.13897>`_, AAAI 2022;
    reference code `epfml/GradientAlignment
    <https://github.com/epfml/GradientAlignment>`_.
  """
  where = 'gradient_variance'
  axes = base.resolve_axes(where, axes)
  if axes.axis not in (0, None):
    grads = jax.tree.map(lambda x: jnp.moveaxis(x, axes.axis, 0), grads)
    axes = axes.locally_stacked()
  k_local, k = _num_workers(where, grads, axes)
  w = _local_weights(where, weights, axes, k_local, k)
  mean = _weighted_sum(grads, w, axes)

  def one(x, m):
    d = x.astype(_F32) - (m[None] if axes.axis == 0 else m)
    sq = jnp.sum(jnp.square(d).reshape(k_local, -1), axis=1)
    return jnp.dot(w, sq, precision=lax.Precision.HIGHEST)

  total = sum(jax.tree.leaves(jax.tree.map(one, grads, mean)))
  return pop_lib.across_indices(total, axes)


@metadata.describe(
  citations=('dandi2022implicit',),
  row=metadata.Row(
    'alignment',
    'FedGA round (server pseudo-gradient)',
    papers='[Dandi et al. 2022](https://arxiv.org/abs/2106.13897)',
  ),
)
def fedga_grad(
  loss_fn: Callable[..., Any],
  params: optax.Params,
  local_batches: Any,
  local_optimizer: optax.GradientTransformation,
  *,
  beta: jax.typing.ArrayLike = 0.1,
  anchor_batch: Any = None,
  anchor_grads: optax.Params | None = None,
  axes: pop_lib.PopulationAxes | None = None,
  weights: jax.Array | None = None,
) -> optax.Updates:
  r"""FedGA: one federated round, returned as the server's pseudo-gradient.

  Each client starts from its displaced point and takes :math:`K` local
  steps of ``local_optimizer`` on its own minibatches:

  .. math::
    y_i^0 = x - \beta(\bar a - a_i), \quad
    y_i^{k+1} = y_i^k + \mathrm{opt}(\nabla f_i(y_i^k; b_i^k)), \quad
    \Delta = x - \sum_i\omega_i y_i^K.

  Apply ``Delta`` with a server optimiser: ``optax.sgd(1.0)`` (the reference
  default) is model averaging. A GradAlign step is the :math:`K = 1` case:
  with local ``optax.sgd(lr)``, :math:`\Delta = \mathrm{lr} \cdot`
  :func:`gradalign_grad` (tested). The anchors :math:`a_i` are either given
  (``anchor_grads``, e.g. each client's full local-data gradient, as the
  reference code accumulates it) or computed on ``anchor_batch``.

  .. note::
    The reference keeps a per-client optimiser; its default is stateless
    SGD. Here the local optimiser state is re-initialised at :math:`y_i^0`
    every round (a design choice; identical for stateless SGD).

  Cost: one anchor gradient plus :math:`K` local gradients per client, two
  all-reduces (the anchors' mean and the final average).

  Args:
    loss_fn: ``loss_fn(params, minibatch) -> scalar``.
    params: the server iterate :math:`x`.
    local_batches: leaves ``[M, K, ...]`` (``M`` clients stacked, ``K``
      local steps each) or ``[K, ...]`` per index of the named axis.
    local_optimizer: the clients' optimiser (with its learning rate).
    beta: :math:`\beta \ge 0` (reference 0.1).
    anchor_batch: batches for the anchors, leaves ``[M, ...]`` (or one per
      index); exactly one of ``anchor_batch`` and ``anchor_grads``.
    anchor_grads: the anchors themselves, leaves ``[M, *param.shape]`` (or
      param-shaped per index).
    axes: where the clients live (default: stacked on axis 0).
    weights: optional ``[M]`` client weights (e.g. data sizes).

  Returns:
    The pseudo-gradient, shaped and typed like ``params``.

  Raises:
    ValueError: bad ``beta``, both or neither of ``anchor_batch`` and
      ``anchor_grads``, or inconsistent client counts.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import alignment
    >>> loss = lambda w, c: 0.5 * jnp.sum((w - c) ** 2)
    >>> centres = jnp.array([[1.0], [3.0]])  # two clients
    >>> local = jnp.repeat(centres[:, None], 5, axis=1)  # 5 local steps
    >>> delta = alignment.fedga_grad(
    ...   loss, jnp.zeros(1), local, optax.sgd(0.5), anchor_batch=centres)
    >>> delta  # x - mean(y^K): both clients end near their centres
    Array([-1.9375], dtype=float32)

  References:
    Dandi, Barba and Jaggi, `Implicit Gradient Alignment in Distributed
    and Federated Learning <https://arxiv.org/abs/2106.13897>`_, AAAI 2022;
    reference code `epfml/GradientAlignment
    <https://github.com/epfml/GradientAlignment>`_.
  """
  where = 'fedga_grad'
  validation.check_non_negative(where, 'beta', beta)
  axes = _check_axes(where, axes)
  if (anchor_batch is None) == (anchor_grads is None):
    raise ValueError(
      f'{where}: pass exactly one of `anchor_batch` and `anchor_grads`.'
    )
  local_optimizer = optax.with_extra_args_support(local_optimizer)
  stacked = axes.axis == 0
  k_local, k = _num_workers(where, local_batches, axes)
  w = _local_weights(where, weights, axes, k_local, k)
  grad = jax.grad(loss_fn)
  server = params
  # Per-client (not device-summed) gradients under jax.shard_map.
  params = pop_lib.vary_over_members(
    params, (local_batches, anchor_batch, anchor_grads), axes
  )
  if anchor_grads is None:
    _, k_anchor = _num_workers(where, anchor_batch, axes)
    if k_anchor != k:
      raise ValueError(
        f'{where}: `anchor_batch` has {k_anchor} clients but '
        f'`local_batches` has {k}.'
      )
    anchor_grads = (
      jax.vmap(grad, in_axes=(None, 0))(params, anchor_batch)
      if stacked
      else grad(params, anchor_batch)
    )
  mean_anchor = _weighted_sum(anchor_grads, w, axes)

  def client(anchor, batches):
    disp = gradalign_displacement(anchor, mean_anchor, beta)
    y0 = _displaced(params, disp, False)

    def local_step(carry, b):
      y, s = carry
      u, s = local_optimizer.update(grad(y, b), s, y)
      return (optax.apply_updates(y, u), s), None

    (y, _), _ = lax.scan(local_step, (y0, local_optimizer.init(y0)), batches)
    return y

  if stacked:
    ys = jax.vmap(client)(anchor_grads, local_batches)
  else:
    ys = client(anchor_grads, local_batches)
  avg = _weighted_sum(ys, w, axes)
  return jax.tree.map(
    lambda p, a: (p.astype(_F32) - a).astype(p.dtype), server, avg
  )
