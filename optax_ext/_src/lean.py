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
"""Memory-lean microbatch populations: ``K`` gradients, never all in memory.

A :class:`Microbatches` population is the loss function, the params and a
batch split into ``K`` microbatches; member ``k`` is the gradient of the
loss on microbatch ``k`` (times an optional per-member scale). The functions
here compute what the aggregators need without the ``K x D`` stack:

* sums, means, variances, norms and weighted combinations stream over the
  microbatches with ``lax.scan`` (one gradient alive at a time: O(D) memory
  plus one microbatch's activations; ``K`` microbatch backward passes, i.e.
  one full-batch backward);
* the ``K x K`` Gramian column by column: column ``j`` is the
  Jacobian-vector product of the ``K`` microbatch losses along ``g_j``
  (forward mode, one microbatch at a time), so O(D + K^2) memory for ``K``
  backward passes of a microbatch and ``K`` forward-mode passes over the
  whole batch.

The population functions of ``optax_ext.population`` dispatch here when
given a :class:`Microbatches`; statistics that need every member's value at
a coordinate (median, trimmed mean, sorting, GradDrop) raise.
"""

import builtins
from collections.abc import Callable
import dataclasses
import sys
from typing import Any

import jax
from jax import lax
import jax.numpy as jnp
import optax

from optax_ext._src import axes as axes_lib
from optax_ext._src import numerics

_F32 = jnp.float32


@dataclasses.dataclass(frozen=True, eq=False)
class Microbatches:
  """A population given by microbatch losses (see :func:`microbatches`).

  Not an array tree on purpose: build it inside the jitted step and hand it
  to an aggregator. Anything else that tries to read it as arrays (an optax
  transform before the aggregator, :class:`optax.MultiSteps` around it, a
  ``nnx.Optimizer.update``'s positional gradient) gets a ``TypeError`` that
  says where it goes, instead of failing inside another library.

  Attributes:
    loss_fn: ``(params, microbatch) -> scalar`` loss.
    params: the params the gradients are taken at.
    batch: the microbatches, every leaf ``[K, ...]``.
    scales: optional ``[K]`` float32 per-member factors (member ``k`` is
      ``scales[k] * grad_k``; set by ``clip_each_by_global_norm``).
  """

  loss_fn: Callable[..., jax.Array]
  params: optax.Params
  batch: optax.Params
  scales: jax.Array | None = None

  def __getattr__(self, name: str):
    # Only called for attributes the dataclass does not have: an array
    # attribute (``.real``, ``.dtype``, JAX's ``__jax_array__`` probe when a
    # jnp function or a lax.cond operand meets it, flax's filters asking for
    # ``.type``) asked for by code that took the population for an array. A
    # TypeError, unlike an AttributeError, passes through getattr's default
    # and hasattr, so that code stops here with the fix.
    if name.startswith('__') and name != '__jax_array__':
      raise AttributeError(name)
    raise TypeError(misplaced(f'(asked for its `{name}` attribute) '))

  def with_scales(self, scales: jax.Array) -> 'Microbatches':
    """The same population with member ``k`` multiplied by ``scales[k]``."""
    scales = jnp.asarray(scales, _F32)
    if self.scales is not None:
      scales = scales * self.scales
    return dataclasses.replace(self, scales=scales)


def misplaced(detail: str = '') -> str:
  """Where a :class:`Microbatches` goes, for code that met it elsewhere."""
  return (
    'A Microbatches population (optax_ext.population.microbatches) '
    f'{detail}is not an array tree: only an optax_ext aggregator or '
    'population transform reads it. Build it inside the jitted step and '
    'pass it straight to the aggregator, which comes first in the chain '
    'and outside any wrapper (wrap what follows it instead: '
    '`optax.chain(aggregator, optax.MultiSteps(tx, k)'
    '.gradient_transformation())`). With flax.nnx pass it as '
    '`optimizer.update(model, grads, population=microbatches)`.'
  )


def microbatches(
  loss_fn: Callable[..., jax.Array],
  params: optax.Params,
  batch: optax.Params,
  num_microbatches: int,
) -> Microbatches:
  r"""A population of ``K`` microbatch gradients that is never materialised.

  The same members as ``grad_population(loss_fn, K)(params, batch)`` (member
  ``k`` is :math:`\nabla_\theta L(\theta, b_k)` for the ``k``-th contiguous
  slice :math:`b_k` of the batch), for the aggregators that can work
  without the ``K x D`` stack: pass it to their ``update`` in place of the
  stacked population (or as the ``population=`` extra argument, e.g. through
  ``nnx.Optimizer.update(model, grads, population=...)``, where ``grads``
  is then unused). Streamed statistics (mean, sum, GSNR/VRGD, per-member
  clipping then the mean) cost O(D) memory and one full-batch backward
  pass; Gramian rules (every multi-task weighting, Krum, the geometric
  median, centered clipping) O(D + K^2) memory and ``K`` more forward-mode
  passes over the batch, plus one backward pass for the combination. See
  the "Memory" page of the docs.

  Build it inside the jitted train step (it holds the traced params and
  batch and is not a pytree).

  Args:
    loss_fn: ``(params, microbatch) -> scalar``, the mean loss of a
      microbatch.
    params: the params to differentiate at (a pytree of float arrays).
    batch: a pytree whose leaves share a leading batch axis ``B``, divisible
      by ``num_microbatches``.
    num_microbatches: ``K >= 1``.

  Returns:
    A :class:`Microbatches`.

  Raises:
    ValueError: if ``K`` is not a positive int, the leaves disagree on ``B``
      or ``B`` is not a multiple of ``K``.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import optax_ext
    >>> from optax_ext import population
    >>> loss = lambda w, b: jnp.mean((b['x'] @ w - b['y']) ** 2)
    >>> batch = {'x': jnp.ones((8, 3)), 'y': jnp.arange(8.)}
    >>> w = jnp.zeros(3)
    >>> tx = optax_ext.aggregate_by_mean()
    >>> lean = population.microbatches(loss, w, batch, 4)
    >>> stacked = population.grad_population(loss, 4)(w, batch)[1]
    >>> bool(jnp.allclose(tx.update(lean, tx.init(w), w)[0],
    ...                   tx.update(stacked, tx.init(w), w)[0]))
    True
  """
  where = 'microbatches'
  if (
    isinstance(num_microbatches, bool)
    or not isinstance(num_microbatches, int)
    or num_microbatches < 1
  ):
    raise ValueError(
      f'{where}: `num_microbatches` must be an int >= 1, got '
      f'{num_microbatches!r}.'
    )
  if not callable(loss_fn):
    raise TypeError(f'{where}: `loss_fn` must be callable, got {loss_fn!r}.')
  split = split_batch(where, batch, num_microbatches, 'num_microbatches')
  # Under jax.shard_map, per-device gradients need the params varying over
  # the axes the batch varies over (else the gradient comes back psum-ed).
  params = axes_lib.vary_like(params, batch)
  _refuse_flax_graph_traversal()
  return Microbatches(loss_fn, params, split)


def _refuse_flatten(population):
  raise TypeError(misplaced('(given where flax.nnx expects a graph state) '))


def _refuse_flax_graph_traversal() -> None:
  """``nnx.Optimizer.update(model, microbatches)`` traverses its positional
  gradient as a flax graph (and fails with an IndexError at the root):
  registered as a flax graph node whose flattening raises, the population
  stops there with the fix. Done once, and only when the user already
  imported ``flax.nnx`` (flax is not a dependency). ``nnx.as_pure`` of the
  ``population=`` keyword maps with JAX's tree functions, where
  ``Microbatches`` stays a leaf.
  """
  graph = getattr(sys.modules.get('flax.nnx'), 'graph', None)
  register = getattr(graph, 'register_graph_node_type', None)
  registry = getattr(graph, 'GRAPH_REGISTRY', None)
  if register is None or registry is None or Microbatches in registry:
    return
  unused = lambda *args: None
  register(
    Microbatches, _refuse_flatten, unused, unused, unused, unused, unused
  )


def split_batch(where: str, batch: Any, num: int, name: str) -> Any:
  """``batch`` leaves ``[B, ...]`` as ``[num, B / num, ...]`` (contiguous).

  Raises ``ValueError`` naming ``where`` when the leaves disagree on ``B``
  or ``B`` is not divisible by ``num`` (the argument ``name``).
  """
  leaves = jax.tree.leaves(batch)
  if not leaves:
    raise ValueError(f'{where}: `batch` has no array leaves.')
  sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in leaves}
  if len(sizes) != 1 or None in sizes:
    raise ValueError(
      f'{where}: every leaf of `batch` needs the same leading (example) '
      f'axis, got leading sizes {sorted(map(str, sizes))}.'
    )
  (b,) = sizes
  if b % num:
    raise ValueError(
      f'{where}: the batch size {b} is not divisible by `{name}`={num}.'
    )
  return jax.tree.map(
    lambda x: jnp.reshape(x, (num, b // num, *jnp.shape(x)[1:])), batch
  )


class MemberFree:
  """A population whose members are never held at once, other than
  :class:`Microbatches` (e.g. ``ghost.GhostPopulation``).

  It answers the questions the core asks a lean population through these
  methods (each over the local members, float32, scaled by ``scales``):
  ``local_size()``, ``gramian()``, ``norms(center)``,
  ``inner_products(vector)``, ``combine(weights, skip_zero_weights=)``,
  ``mean_and_var_local()`` and ``with_scales(scales)``; ``params`` is the
  params the gradients are taken at. On a named axis the Gramian rules ask
  ``gathered_gramian(axis_name)``: the part of the Gramian over every
  index's members it forms itself, and per-member gradients (``[K, ...]``)
  whose part the core forms as for a stacked population.
  """

  params: Any
  scales: Any = None


def is_lean(population: Any) -> bool:
  """Whether ``population`` holds no members (:class:`Microbatches` or
  :class:`MemberFree`)."""
  return isinstance(population, (Microbatches, MemberFree))


def local_size(population: Microbatches) -> int:
  if isinstance(population, MemberFree):
    return population.local_size()
  return int(jnp.shape(jax.tree.leaves(population.batch)[0])[0])


def unsupported(where: str, what: str) -> ValueError:
  """The error for a statistic a lean population cannot give."""
  return ValueError(
    f'{where}: {what} needs every member at once, which a memory-lean '
    'Microbatches population does not hold; build the stacked population '
    'with optax_ext.population.grad_population instead.'
  )


def _scales(population: Microbatches) -> jax.Array:
  k = local_size(population)
  if population.scales is None:
    return jnp.ones((k,), _F32)
  return population.scales


def _grad(population: Microbatches, microbatch) -> optax.Params:
  return jax.grad(population.loss_fn)(population.params, microbatch)


def scan_members(
  population: Microbatches,
  body: Callable[[Any, optax.Params, jax.Array, jax.Array], Any],
  init: Any,
) -> Any:
  """Folds ``body(carry, member, k, scale)`` over the members, one at a time.

  ``member`` is the unscaled gradient of microbatch ``k``; ``scale`` its
  factor (1 unless set).
  """
  k = local_size(population)

  def step(carry, xs):
    microbatch, index, scale = xs
    g = _grad(population, microbatch)
    if population.scales is not None:  # a zero-scaled member is zero
      g = jax.tree.map(lambda x: jnp.where(scale != 0, x, 0), g)
    return body(carry, g, index, scale), None

  # The carry varies like the gradients (under jax.shard_map).
  init = axes_lib.vary_like(init, population.params)
  out, _ = lax.scan(
    step,
    init,
    (population.batch, jnp.arange(k, dtype=jnp.int32), _scales(population)),
  )
  return out


def _zeros(params):
  return jax.tree.map(
    lambda p: jnp.zeros(jnp.shape(p), numerics.accumulation_dtype(p.dtype)),
    params,
  )


def combine(
  population: Microbatches,
  weights: jax.Array,
  *,
  skip_zero_weights: bool = False,
) -> optax.Params:
  """:math:`\\sum_k w_k g_k` over the local members, one scan (K backwards)."""
  if isinstance(population, MemberFree):
    return population.combine(weights, skip_zero_weights=skip_zero_weights)
  weights = jnp.asarray(weights, _F32)

  def body(acc, g, k, scale):
    w = weights[k] * scale

    def add(a, x):
      term = w.astype(a.dtype) * x.astype(a.dtype)
      if skip_zero_weights:
        term = jnp.where(w != 0, term, jnp.zeros_like(term))
      return a + term

    return jax.tree.map(add, acc, g)

  out = scan_members(population, body, _zeros(population.params))
  return jax.tree.map(lambda o, p: o.astype(p.dtype), out, population.params)


def mean_and_var_local(population: Microbatches):
  """Local ``(count, mean, M2)`` by Welford's update, in float32."""
  if isinstance(population, MemberFree):
    return population.mean_and_var_local()

  def body(carry, g, k, scale):
    n, mean, m2 = carry
    n1 = n + 1.0

    def one(m, s, x):
      x = scale.astype(m.dtype) * x.astype(m.dtype)
      delta = x - m
      m_new = m + delta / n1.astype(m.dtype)
      return m_new, s + delta * (x - m_new)

    pairs = jax.tree.map(one, mean, m2, g)
    outer = jax.tree.structure(mean)
    new_mean, new_m2 = jax.tree.transpose(
      outer, jax.tree.structure((0, 0)), pairs
    )
    del k
    return n1, new_mean, new_m2

  zeros = _zeros(population.params)
  return scan_members(population, body, (jnp.zeros([], _F32), zeros, zeros))


def norms(
  population: Microbatches, center: optax.Params | None = None
) -> jax.Array:
  """``[k]`` float32 norms :math:`\\|s_k g_k - c\\|` (overflow-safe)."""
  if isinstance(population, MemberFree):
    return population.norms(center)
  centers = None if center is None else jax.tree.leaves(center)

  def body(out, g, k, scale):
    leaves = jax.tree.leaves(g)
    acc = numerics.tree_common_accumulation_dtype(g)

    def flats():
      rows = [
        jnp.reshape((scale * x.astype(_F32)).astype(acc), (1, -1))
        for x in leaves
      ]
      if centers is not None:
        rows = [
          r - jnp.reshape(jnp.asarray(c).astype(acc), (1, -1))
          for r, c in zip(rows, centers, strict=True)
        ]
      return rows

    return out.at[k].set(numerics.row_norms(flats)[0].astype(_F32))

  return scan_members(
    population, body, jnp.zeros((local_size(population),), _F32)
  )


def _vector_losses(population: Microbatches) -> Callable[..., jax.Array]:
  """``params -> [K]`` microbatch losses, one microbatch at a time."""

  def losses(params):
    return lax.map(
      lambda b: population.loss_fn(params, b).astype(_F32), population.batch
    )

  return losses


def inner_products(population: Microbatches, vector: optax.Params) -> jax.Array:
  """``[K]``: :math:`\\langle s_k g_k, v\\rangle`, one forward-mode pass."""
  if isinstance(population, MemberFree):
    return population.inner_products(vector)
  params = population.params
  tangent = jax.tree.map(lambda v, p: jnp.asarray(v, p.dtype), vector, params)
  _, column = jax.jvp(_vector_losses(population), (params,), (tangent,))
  return _scaled_rows(population, column.astype(_F32))


def _scaled_rows(population: Microbatches, rows: jax.Array) -> jax.Array:
  """``rows`` (leading axis: members) times the scales; 0 where scale is 0."""
  s = _scales(population).reshape((-1,) + (1,) * (rows.ndim - 1))
  if population.scales is None:
    return rows
  return jnp.where(s != 0, s * rows, 0.0)


def gramian(population: Microbatches) -> jax.Array:
  """``[K, K]`` float32 :math:`G_{ij} = \\langle s_i g_i, s_j g_j\\rangle`.

  Column ``j`` is the JVP of the microbatch losses along ``g_j`` (symmetrised
  at the end): O(D + K^2) memory.
  """
  if isinstance(population, MemberFree):
    return population.gramian()
  k = local_size(population)
  losses = _vector_losses(population)

  def body(cols, g, j, scale):
    _, column = jax.jvp(losses, (population.params,), (g,))
    return cols.at[:, j].set(scale * column.astype(_F32))

  cols = scan_members(population, body, jnp.zeros((k, k), _F32))
  cols = _scaled_rows(population, cols)
  return 0.5 * (cols + cols.T)


def vdot(a: optax.Params, b: optax.Params) -> jax.Array:
  """Float32 inner product of two param-shaped trees."""
  return builtins.sum(
    jnp.vdot(x.astype(_F32), y.astype(_F32))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )
