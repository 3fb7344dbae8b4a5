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
"""The gradient population: one place for all maths over its members.

A *gradient population* is a set of ``K`` gradients of the same parameters:
per-example, per-microbatch, per-task or per-device gradients. It is laid out
in one of three ways, described by :class:`PopulationAxes`:

* **stacked**: every leaf has the members on a leading axis,
  ``[K, *param.shape]`` (``PopulationAxes(axis=0)``);
* **named**: under ``jax.shard_map``, ``jax.pmap`` or
  ``jax.vmap(..., axis_name=...)`` every index of a named mapped axis holds one
  param-shaped member (``PopulationAxes(axis=None, axis_name='data')``);
* **both**: every index of the named axis holds a local stack of ``k`` members
  (``PopulationAxes(axis=0, axis_name='data')``), ``K = k * axis_size``.

Every function here has a leading-axis path and a named-axis path that give
the same answer (tested on 8 simulated devices). Reductions accumulate in
float32 (float64 for float64 inputs). Member-ordering convention for the named
path: members are ordered by the index of the named axis first, then by the
position on the local axis, i.e. the order ``jax.lax.all_gather(...,
tiled=True)`` produces.
"""

import builtins
from collections.abc import Callable, Hashable, Sequence
import dataclasses
import functools
import operator
from typing import Any

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import optax

from optax_ext._src import kernels
from optax_ext._src import lean
from optax_ext._src import numerics

AxisName = Hashable | tuple[Hashable, ...]
Population = optax.Params


@dataclasses.dataclass(frozen=True)
class PopulationAxes:
  """Where the members of a gradient population live.

  Attributes:
    axis: the position of the member axis in every leaf (``0`` means leaves
      are ``[K, *param.shape]``), or ``None`` when each index of
      ``axis_name`` holds exactly one param-shaped member.
    axis_name: the name of the mapped axis the members are spread over
      (``jax.shard_map``, ``jax.pmap``, ``jax.vmap(axis_name=...)``), or a
      tuple of names, or ``None`` when the whole population is local.

  Example:
    >>> import optax_ext
    >>> optax_ext.PopulationAxes()
    PopulationAxes(axis=0, axis_name=None)
    >>> optax_ext.PopulationAxes(axis=None, axis_name='data')
    PopulationAxes(axis=None, axis_name='data')
  """

  axis: int | None = 0
  axis_name: AxisName | None = None

  def __post_init__(self):
    if self.axis is None and self.axis_name is None:
      raise ValueError(
        'PopulationAxes: at least one of `axis` and `axis_name` must be '
        'given, got axis=None and axis_name=None.'
      )
    if self.axis is not None and (
      isinstance(self.axis, bool)
      or not isinstance(self.axis, int)
      or self.axis < 0
    ):
      raise ValueError(
        'PopulationAxes: `axis` must be None or an integer >= 0, got '
        f'{self.axis!r}.'
      )

  @property
  def is_named(self) -> bool:
    """Whether members are spread over a named mapped axis."""
    return self.axis_name is not None


_DEFAULT_AXES = PopulationAxes()


def _axes(axes: PopulationAxes | None, where: str = '') -> PopulationAxes:
  """``axes`` or the default (stacked on axis 0); a clear error otherwise.

  The one resolver: ``base.resolve_axes`` is this with the caller's name.
  """
  if axes is None:
    return _DEFAULT_AXES
  if not isinstance(axes, PopulationAxes):
    prefix = f'{where}: ' if where else ''
    raise TypeError(
      f'{prefix}`axes` must be an optax_ext.PopulationAxes, got {axes!r}.'
    )
  return axes


def _leading(x: jax.Array, axis: int) -> jax.Array:
  return x if axis == 0 else jnp.moveaxis(x, axis, 0)


def local_size(population: Population, axes: PopulationAxes | None = None):
  """Number of members held locally (on one index of the named axis).

  Raises ``ValueError`` at trace time when leaves disagree on the number of
  members or lack the member axis.

  Args:
    population: the gradient population (a pytree of arrays).
    axes: where the members live.

  Returns:
    A Python ``int``: ``1`` when ``axes.axis is None``.
  """
  axes = _axes(axes)
  if lean.is_lean(population):
    if axes.axis not in (0,):
      raise ValueError(
        'a Microbatches population holds its members on axis 0 (the '
        f'microbatches of each index), got axes={axes!r}.'
      )
    return lean.local_size(population)
  if axes.axis is None:
    return 1
  leaves = jax.tree_util.tree_leaves_with_path(population)
  if not leaves:
    raise ValueError('population: the population has no array leaves.')
  sizes = {}
  for path, leaf in leaves:
    shape = jnp.shape(leaf)
    if len(shape) <= axes.axis:
      raise ValueError(
        f'population: leaf {jax.tree_util.keystr(path)} has shape '
        f'{shape}, which has no member axis {axes.axis}; a stacked '
        'population needs leaves shaped [K, *param.shape].'
      )
    sizes[jax.tree_util.keystr(path)] = shape[axes.axis]
  if len(set(sizes.values())) > 1:
    listed = ', '.join(f'leaf {p} has {k}' for p, k in sizes.items())
    raise ValueError(
      'population: leaves disagree on the number of members along axis '
      f'{axes.axis}: {listed}.'
    )
  k = next(iter(sizes.values()))
  if k == 0:
    raise ValueError(
      f'population: the population is empty (its member axis {axes.axis} '
      'has size 0); an aggregator needs at least one member.'
    )
  return k


def size(population: Population, axes: PopulationAxes | None = None) -> int:
  """The number of members ``K`` of a population (a static Python int).

  Args:
    population: the gradient population.
    axes: where the members live.

  Returns:
    ``K``: local members times the size of the named axis.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> population.size({'w': jnp.zeros((4, 3))})
    4
  """
  axes = _axes(axes)
  k = local_size(population, axes)
  if axes.is_named:
    k *= lax.axis_size(axes.axis_name)
  return k


def _local_sum(x: jax.Array, axes: PopulationAxes) -> jax.Array:
  """Sum over the local member axis in the accumulation dtype."""
  if axes.axis is None:
    return numerics.to_accumulation(x)
  (total,) = numerics.sum_over_members(_leading(x, axes.axis), (_identity,))
  return total


def _all_gather(x: jax.Array, axis_name: AxisName, *, tiled: bool):
  """``lax.all_gather`` on axis 0 whose result is typed as replicated.

  Under ``jax.shard_map`` (with its varying-manual-axes check) a gathered
  value is the same on every index, and is marked so (``to='invarying'``) to
  be returnable with ``out_specs=P()``. Under ``vmap``/``pmap`` there is no
  such typing and the plain gather is used.
  """
  names = set(axis_name) if isinstance(axis_name, tuple) else {axis_name}
  to = 'invarying' if names & _varying_axes(x) else 'varying'
  return lax.all_gather(x, axis_name, axis=0, tiled=tiled, to=to)


def _varying_axes(x) -> set:
  """The manual mesh axes ``x`` varies over under ``jax.shard_map``."""
  aval = jax.typeof(x)
  manual = getattr(aval, 'manual_axis_type', None)
  varying = getattr(manual, 'varying', None)
  if varying is None:  # older spelling of the varying-manual-axes type
    varying = getattr(aval, 'vma', frozenset())
  return set(varying)


def vary_like(tree: optax.Params, reference: optax.Params, axis_name=None):
  """Marks ``tree`` as varying over ``axis_name`` where ``reference`` is.

  Under ``jax.shard_map`` the gradient with respect to a replicated
  (invariant) input of a per-device loss comes back *summed over devices*
  (the transpose of the implicit broadcast is a ``psum``). Per-device
  gradients need the params marked varying first; this does it when the
  reference (e.g. the local batch) varies over the named axis, and is a
  no-op under ``vmap``/``pmap`` or outside ``shard_map``.

  Args:
    tree: e.g. the params.
    reference: e.g. the local batch.
    axis_name: the named axis (or tuple of names), or ``None`` for every
      axis ``reference`` varies over.

  Returns:
    ``tree``, varying over the names of ``axis_name`` that ``reference``
    varies over.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jax.sharding import PartitionSpec as P
    >>> from optax_ext import population
    >>> mesh = jax.make_mesh((2,), ('data',), devices=jax.devices()[:2],
    ...                      axis_types=(jax.sharding.AxisType.Auto,))
    >>> w, xs = jnp.ones(3), jnp.arange(6.0).reshape(2, 3)
    >>> def per_device(x):
    ...   p = population.vary_like(w, x, 'data')
    ...   return jax.grad(lambda p: p @ x[0])(p)[None]
    >>> jax.shard_map(per_device, mesh=mesh, in_specs=P('data'),
    ...               out_specs=P('data'))(xs)  # one row per device
    Array([[0., 1., 2.],
           [3., 4., 5.]], dtype=float32)
  """
  ref = set()
  for leaf in jax.tree.leaves(reference):
    ref |= _varying_axes(leaf)
  if axis_name is None:
    names = ref
  else:
    names = set(axis_name) if isinstance(axis_name, tuple) else {axis_name}
    names &= ref
  if not names:
    return tree

  def one(x):
    missing = tuple(sorted(names - _varying_axes(x), key=str))
    return lax.pcast(x, missing, to='varying') if missing else x

  return jax.tree.map(one, tree)


def _identity(x):
  return x


def _psum(x, axes: PopulationAxes):
  return lax.psum(x, axes.axis_name) if axes.is_named else x


def _acc(x):
  return numerics.accumulation_dtype(x.dtype)


def across_indices(tree: optax.Params, axes: PopulationAxes):
  """Sums a per-index tree over the named axis (identity off it)."""
  axes = _axes(axes)
  return jax.tree.map(lambda x: _psum(x, axes), tree)


def _total(population, axes: PopulationAxes, divisor: int | None = None):
  """Sum of the members (divided by ``divisor``), in each leaf's dtype."""
  local_size(population, axes)
  if lean.is_lean(population):  # uniform weights, one streamed pass
    k = size(population, axes)
    w = jnp.full((k,), 1.0 if divisor is None else 1.0 / divisor)
    return combine(population, w, axes)

  def one(x):
    total = _psum(_local_sum(x, axes), axes)
    return (total if divisor is None else total / divisor).astype(x.dtype)

  return jax.tree.map(one, population)


def sum(  # pylint: disable=redefined-builtin
  population: Population, axes: PopulationAxes | None = None
) -> optax.Params:
  r"""Sum of the members, :math:`\sum_k g_k`, in each leaf's dtype.

  Accumulates in float32 (float64 for float64 leaves), then casts back.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    axes: where the members live.

  Returns:
    A param-shaped tree, identical on every index of the named axis.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> population.sum({'w': jnp.array([[1., 2.], [3., 4.]])})
    {'w': Array([4., 6.], dtype=float32)}
  """
  return _total(population, _axes(axes))


def mean(
  population: Population, axes: PopulationAxes | None = None
) -> optax.Params:
  r"""Mean of the members, :math:`\frac1K\sum_k g_k`, in each leaf's dtype.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    axes: where the members live.

  Returns:
    A param-shaped tree, identical on every index of the named axis.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> population.mean({'w': jnp.array([[1., 2.], [3., 4.]])})
    {'w': Array([2., 3.], dtype=float32)}
  """
  axes = _axes(axes)
  return _total(population, axes, divisor=size(population, axes))


def mean_and_var(
  population: Population,
  axes: PopulationAxes | None = None,
  *,
  ddof: int = 0,
) -> tuple[optax.Params, optax.Params]:
  r"""Per-coordinate mean and variance over the members.

  .. math::
    \mu = \frac1K \sum_k g_k, \qquad
    \sigma^2 = \frac{1}{K - \mathrm{ddof}} \sum_k (g_k - \mu)^2 .

  Both are returned in the accumulation dtype (float32 for float32, bfloat16
  and float16 leaves) because they are statistics, not updates.

  The local members are reduced in one pass with the *shifted* sums
  :math:`S_1 = \sum_k (g_k - c)`, :math:`S_2 = \sum_k (g_k - c)^2` with the
  shift :math:`c = g_1` (the first local member), so that
  :math:`M_2 = S_2 - S_1^2 / k` does not lose precision when
  :math:`|\mu| \gg \sigma` (unlike :math:`E[g^2] - E[g]^2`), while XLA reads
  the population once (both sums fuse into one loop). On the named path
  every index's local mean and :math:`M_2` are merged across the axis with
  the parallel formula of Chan, Golub and LeVeque (all indices hold the same
  number of members): :math:`M_2 = \sum_p M_{2,p} + \sum_p k (\mu_p -
  \mu)^2` (two all-reduces).

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    axes: where the members live.
    ddof: delta degrees of freedom; ``1`` gives the unbiased estimator.

  Returns:
    ``(mean, var)``, two param-shaped trees.

  Raises:
    ValueError: at trace time, if ``K - ddof <= 0``.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> m, v = population.mean_and_var({'w': jnp.array([[1.], [3.]])}, ddof=1)
    >>> m['w'], v['w']
    (Array([2.], dtype=float32), Array([2.], dtype=float32))
  """
  axes = _axes(axes)
  if isinstance(ddof, bool) or not isinstance(ddof, int) or ddof < 0:
    raise ValueError(
      f'mean_and_var: `ddof` must be an integer >= 0, got {ddof!r}.'
    )
  k_local = local_size(population, axes)
  k = size(population, axes)
  if k - ddof <= 0:
    raise ValueError(
      f'mean_and_var: the population has K={k} member(s), which is too few '
      f'for ddof={ddof}; need K > ddof.'
    )

  if lean.is_lean(population):
    _, lean_mean, lean_m2 = lean.mean_and_var_local(population)

  def one(x, *streamed):
    acc = numerics.accumulation_dtype(x.dtype)
    if streamed:
      local_mean, local_m2 = streamed
    elif axes.axis is None:
      local_mean = x.astype(acc)
      local_m2 = jnp.zeros_like(local_mean)
    else:
      xs = _leading(x, axes.axis)
      shift = xs[0].astype(acc)
      s1, s2 = numerics.sum_over_members(
        xs, (lambda m: m - shift, lambda m: jnp.square(m - shift))
      )
      local_mean = shift + s1 / k_local
      local_m2 = jnp.maximum(s2 - s1 * s1 / k_local, 0.0)
    if not axes.is_named:
      return local_mean, local_m2 / (k - ddof)
    n_index = k // k_local
    global_mean = lax.psum(local_mean, axes.axis_name) / n_index
    offset = local_mean - global_mean
    m2 = lax.psum(local_m2 + k_local * offset * offset, axes.axis_name)
    return global_mean, m2 / (k - ddof)

  if lean.is_lean(population):
    pairs = jax.tree.map(one, population.params, lean_mean, lean_m2)
    outer = jax.tree.structure(population.params)
  else:
    pairs = jax.tree.map(one, population)
    outer = jax.tree.structure(population)
  inner = jax.tree.structure((0, 0))
  return jax.tree.transpose(outer, inner, pairs)


def _local_flat(x: jax.Array, axes: PopulationAxes) -> jax.Array:
  """Local members as a ``[k, d]`` matrix."""
  if axes.axis is None:
    return jnp.reshape(x, (1, -1))
  x = _leading(x, axes.axis)
  return jnp.reshape(x, (x.shape[0], -1))


def norms(
  population: Population,
  axes: PopulationAxes | None = None,
  *,
  center: optax.Params | None = None,
) -> jax.Array:
  r"""The global L2 norm of each member, :math:`\|g_k - c\|_2` over all leaves.

  With ``center`` (a param-shaped tree, the same on every index) the norms
  of the deviations :math:`g_k - c`, without materialising them.

  Overflow-safe: when a squared norm is not finite (a member above ~1.8e19
  in float32, or a NaN/Inf member), the norms are recomputed from
  :math:`\max_i |x_i|` and the sum of squares of :math:`x / \max_i |x_i|`,
  so every finite member has a finite norm and only NaN/Inf members give
  NaN/Inf.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    axes: where the members live.

  Returns:
    A float32 array with the norms of the *local* members: shape ``[k]`` when
    ``axes.axis`` is not ``None``, a scalar otherwise (each index's own
    member). Pass it to :func:`gather` with the same ``axes`` to get all ``K``.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> population.norms({'a': jnp.array([[3.], [0.]]),
    ...                   'b': jnp.array([[4.], [1.]])})
    Array([5., 1.], dtype=float32)
  """
  axes = _axes(axes)
  local_size(population, axes)
  if lean.is_lean(population):
    return lean.norms(population, center)
  leaves = jax.tree.leaves(population)
  acc = numerics.tree_common_accumulation_dtype(population)
  centers = [None] * len(leaves) if center is None else jax.tree.leaves(center)

  def flats():
    # Recomputed inside each branch below: a centred copy passed into the
    # conditional would be materialised (K D floats) instead of fused.
    out = []
    for x, c in zip(leaves, centers, strict=True):
      f = _local_flat(x, axes).astype(acc)
      if c is not None:
        f = f - jnp.reshape(jnp.asarray(c).astype(acc), (1, -1))
      out.append(f)
    return out

  sq = builtins.sum(jnp.sum(jnp.square(x), axis=1) for x in flats())

  def scaled():
    flat = flats()
    # max|x| first, then the sum of squares of x / max|x|: finite for every
    # finite member (the plain sum of squares overflows above ~1.8e19 in
    # float32, which would count a finite member as non-finite).
    peak = functools.reduce(
      jnp.maximum, [jnp.max(jnp.abs(x), axis=1) for x in flat]
    )
    safe = jnp.where((peak > 0) & jnp.isfinite(peak), peak, 1.0)
    # x / peak as two multiplications by 1 / sqrt(peak): XLA turns the
    # division into a multiplication by 1 / peak, which is subnormal (and
    # flushed to 0) for peaks above ~8.5e37.
    inv_root = (1.0 / jnp.sqrt(safe))[:, None]
    ssq = builtins.sum(
      jnp.sum(jnp.square((x * inv_root) * inv_root), axis=1) for x in flat
    )
    finite_peak = (peak > 0) & jnp.isfinite(peak)
    # 0 for a zero member; the peak itself (Inf or NaN) for a non-finite one.
    rescaled = jnp.where(finite_peak, safe * jnp.sqrt(ssq), peak)
    return jnp.where(jnp.isfinite(sq), jnp.sqrt(sq), rescaled).astype(acc)

  # The rescaled pass runs only when some squared norm is not finite.
  out = lax.cond(jnp.all(jnp.isfinite(sq)), lambda: jnp.sqrt(sq), scaled)
  return out[0] if axes.axis is None else out


def all_norms(
  population: Population,
  axes: PopulationAxes | None = None,
  *,
  center: optax.Params | None = None,
) -> jax.Array:
  """:func:`norms` of all ``K`` members, ``[K]`` on every index.

  On a named axis the local norms are gathered (``K`` floats per index).
  """
  axes = _axes(axes)
  local = norms(population, axes, center=center)
  if not axes.is_named:
    return local
  member_axis = None if axes.axis is None else 0
  return gather(local, PopulationAxes(member_axis, axes.axis_name))


def _gather_leaf(x: jax.Array, axes: PopulationAxes) -> jax.Array:
  """All ``K`` members of one named-axis leaf, stacked on axis 0."""
  local = x if axes.axis is None else _leading(x, axes.axis)
  return _all_gather(local, axes.axis_name, tiled=axes.axis is not None)


def gather(
  population: Population, axes: PopulationAxes | None = None
) -> Population:
  """All ``K`` members, stacked on axis 0, on every index of the named axis.

  On the stacked path this only moves the member axis to the front. On the
  named path it is an ``all_gather``: each index then holds ``K`` times the
  memory of one member, and the communication is ``(K - 1)`` members per
  index. Order: named-axis index first, then local position. The result is
  typed as replicated (``to='invarying'``), so under ``jax.shard_map`` it can
  be returned with ``out_specs=P()``.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named). Any
      pytree whose leaves carry the member axis works, e.g. the output of
      :func:`norms`.
    axes: where the members live.

  Returns:
    The population with leaves ``[K, *shape]``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from optax_ext import population
    >>> axes = population.PopulationAxes(axis=None, axis_name='i')
    >>> f = lambda g: population.gather(g, axes)
    >>> jax.vmap(f, axis_name='i')(jnp.arange(3.))[0]
    Array([0., 1., 2.], dtype=float32)
  """
  axes = _axes(axes)
  local_size(population, axes)
  if lean.is_lean(population):
    raise lean.unsupported('gather', 'gathering the population')

  def one(x):
    if not axes.is_named:
      return _leading(x, axes.axis)
    return _gather_leaf(x, axes)

  return jax.tree.map(one, population)


def _shards_coordinates(axes: PopulationAxes, size_: int) -> bool:
  """Whether a named-axis leaf of ``size_`` coordinates is coordinate-sharded.

  The size rule: with a single axis name and at least one coordinate per
  index (``size_ >= N``), the leaf is redistributed with ``all_to_all`` so
  each index holds all ``K`` members for ``ceil(size_ / N)`` coordinates
  (memory and traffic per index O(size_), whatever ``K``). Leaves smaller
  than ``N`` (a bias of a few units on a large mesh) are gathered whole:
  ``K * size_ < K * N`` floats, less than the padding would cost.
  """
  return (
    axes.is_named
    and not isinstance(axes.axis_name, tuple)
    and size_ >= lax.axis_size(axes.axis_name)
  )


def _to_coordinate_shards(x: jax.Array, axes: PopulationAxes) -> jax.Array:
  """``[K, ceil(d / N)]``: all members of this index's coordinate block.

  One ``all_to_all`` of the local ``[k, d]`` members (zero-padded to a
  multiple of ``N``); members are ordered by named-axis index, then local
  position (as :func:`gather`).
  """
  n = lax.axis_size(axes.axis_name)
  flat = _local_flat(x, axes)
  k_local, d = flat.shape
  m = -(-d // n)
  flat = jnp.pad(flat, ((0, 0), (0, n * m - d)))
  blocks = lax.all_to_all(
    flat.reshape(k_local, n, m), axes.axis_name, split_axis=1, concat_axis=0
  )  # [n, k_local, m]: block i came from index i
  return blocks.reshape(n * k_local, m)


def _coordinate_spec(shape: tuple[int, ...], axis: int, n: int, mesh_axis):
  """The partition spec that shards one param dim of a stacked leaf.

  The first param dim divisible by ``n`` (else the first with at least
  ``n`` entries; XLA pads the last shard) is sharded, the major-most such
  dim, so flattening a member to ``[d]`` keeps a plain block sharding.
  Leaves with no dim of ``n`` entries are replicated (the size rule of
  :func:`_shards_coordinates`).
  """
  dims = [i for i in range(len(shape)) if i != axis]
  chosen = next((i for i in dims if shape[i] % n == 0), None)
  if chosen is None:
    chosen = next((i for i in dims if shape[i] >= n), None)
  spec = [None] * len(shape)
  if chosen is not None:
    spec[chosen] = mesh_axis
  return jax.sharding.PartitionSpec(*spec)


def shard_coordinates(
  population: Population,
  mesh_axis: str,
  *,
  mesh: jax.sharding.Mesh | None = None,
  axes: PopulationAxes | None = None,
) -> Population:
  r"""Reshards a stacked population from its member axis to its coordinates.

  For global-view ``jax.jit``: a population ``[K, *shape]`` sharded on its
  member axis (``P('data')``) is constrained to be sharded on a coordinate
  axis instead (``jax.lax.with_sharding_constraint``; XLA inserts one
  ``all_to_all`` of the population, ``D`` per device). Every aggregator then
  runs on ``K`` members of ``D / N`` coordinates per device: order
  statistics and combinations need no communication, the Gramian and the
  norms one all-reduce of ``K^2`` (``K``) floats, and the update comes out
  sharded on the same coordinates (``D / N`` per device; ZeRO/FSDP style).
  Without it XLA gathers the population onto every device (``K D``) for
  any rule that mixes members.

  A leaf's first param dimension divisible by the mesh axis size is
  sharded (else the first with at least that many entries, padded by XLA);
  leaves with no such dimension (a bias smaller than the mesh) are
  replicated. Values are unchanged: only the layout moves.

  Args:
    population: leaves ``[K, *shape]`` with the members on ``axes.axis``.
    mesh_axis: the mesh axis to shard coordinates over (the one the member
      axis is sharded over).
    mesh: the mesh; ``None`` uses the one set by ``jax.set_mesh``.
    axes: where the members live; must be a stacked layout (no
      ``axis_name``: under ``jax.shard_map`` the aggregators redistribute
      coordinates themselves).

  Returns:
    The same population, constrained to coordinate sharding.

  Raises:
    ValueError: for a named layout, when no mesh is given or set, or when
      ``mesh_axis`` is not an ``AxisType.Auto`` axis (the aggregators are
      written for compiler-chosen intermediate shardings; ``jax.make_mesh``
      defaults to ``Explicit`` axes).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from optax_ext import population
    >>> mesh = jax.make_mesh(
    ...     (1,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
    >>> pop = {'w': jnp.ones((4, 8))}
    >>> out = jax.jit(
    ...     lambda p: population.shard_coordinates(p, 'data', mesh=mesh))(pop)
    >>> bool((out['w'] == pop['w']).all())  # only the layout moves
    True
  """
  axes = _axes(axes)
  if axes.is_named:
    raise ValueError(
      'shard_coordinates: the population must be stacked (axes.axis_name '
      f'None) for global-view jax.jit, got axes={axes!r}; under '
      'jax.shard_map the aggregators shard coordinates themselves.'
    )
  local_size(population, axes)
  if mesh is None:
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
      raise ValueError(
        'shard_coordinates: no mesh; pass `mesh=` or call it under '
        '`jax.set_mesh(mesh)`.'
      )
  n = mesh.shape[mesh_axis]

  axis_type = dict(zip(mesh.axis_names, mesh.axis_types, strict=True))
  if axis_type[mesh_axis] != jax.sharding.AxisType.Auto:
    raise ValueError(
      f'shard_coordinates: mesh axis {mesh_axis!r} must be of type '
      f'AxisType.Auto (the aggregators let the compiler place their '
      f'intermediates), got {axis_type[mesh_axis]}; build the mesh with '
      'jax.make_mesh(..., axis_types=(jax.sharding.AxisType.Auto,)).'
    )

  def one(x):
    spec = _coordinate_spec(x.shape, axes.axis, n, mesh_axis)
    if isinstance(mesh, jax.sharding.Mesh):
      spec = jax.sharding.NamedSharding(mesh, spec)
    return lax.with_sharding_constraint(x, spec)

  return jax.tree.map(one, population)


def coordinate_shardings(
  params: optax.Params, mesh: jax.sharding.Mesh, mesh_axis: str
) -> optax.Params:
  """Param shardings that match :func:`shard_coordinates` (ZeRO/FSDP style).

  Each param is sharded on the dimension :func:`shard_coordinates` shards in
  its members, so params, the optimiser state (``tx.init`` of sharded params
  places every param-shaped buffer like its param) and the aggregated
  update all hold ``D / N`` per device and ``optax.apply_updates`` needs no
  communication. A param with no dimension divisible by the mesh axis size
  is replicated (``jax.device_put`` cannot place arrays unevenly); its
  update is then gathered, which costs that param's size, not ``K`` times.

  Args:
    params: the params (or any tree of param-shaped arrays or shapes).
    mesh: the mesh.
    mesh_axis: the mesh axis the population is sharded over.

  Returns:
    A tree of ``jax.sharding.NamedSharding`` like ``params``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from optax_ext import population
    >>> mesh = jax.make_mesh(
    ...     (1,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
    >>> population.coordinate_shardings(
    ...     {'w': jnp.zeros((3, 8))}, mesh, 'data')['w'].spec
    P('data', None)
  """
  n = mesh.shape[mesh_axis]

  def one(p):
    shape = jnp.shape(p)
    spec = tuple(_coordinate_spec((1, *shape), 0, n, mesh_axis))[1:]
    if any(s is not None and shape[i] % n for i, s in enumerate(spec)):
      spec = ()  # arrays cannot be placed unevenly: replicate this one
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec))

  return jax.tree.map(one, params)


def map_coordinates(
  population: Population,
  fn: Callable[..., jax.Array],
  axes: PopulationAxes | None = None,
  *,
  with_indices: bool = False,
) -> optax.Params:
  """Applies a per-coordinate reduction over the members, leaf by leaf.

  ``fn`` maps ``[K, ...]`` (all members of some coordinates) to ``[...]``
  (one value per coordinate, in the leaf's dtype): a median, a trimmed mean,
  an order statistic. On the stacked path it sees each whole leaf with the
  members first. On a named axis (the size rule of
  :func:`_shards_coordinates`) each index receives all ``K`` members of
  ``1/N`` of the coordinates by one ``all_to_all``, applies ``fn`` to that
  ``[K, d/N]`` block, and the results are ``all_gather``-ed: per index
  O(D) memory and traffic instead of the ``K D`` of gathering the
  population.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    fn: ``[K, ...] -> [...]``, coordinate-wise (column ``j`` of the output
      depends only on column ``j`` of the input); with ``with_indices``,
      ``fn(members, indices)`` where ``indices`` (int32, shaped like the
      output) holds the flat index of each coordinate in its leaf, e.g. to
      draw per-coordinate random numbers that do not depend on the layout.
    axes: where the members live.
    with_indices: whether ``fn`` also receives the coordinate indices.

  Returns:
    A param-shaped tree, identical on every index of the named axis.
  """
  axes = _axes(axes)
  local_size(population, axes)
  if lean.is_lean(population):
    raise lean.unsupported(
      'map_coordinates', 'a statistic of every member at each coordinate'
    )

  def one(x):
    shape = (
      x.shape
      if axes.axis is None
      else (x.shape[: axes.axis] + x.shape[axes.axis + 1 :])
    )
    size_ = int(np.prod(shape, dtype=np.int64))

    def call(members, start=0, count=size_, out_shape=shape):
      if not with_indices:
        return fn(members)
      indices = start + lax.iota(jnp.int32, count)
      return fn(members, jnp.reshape(indices, out_shape))

    if not axes.is_named:
      return call(_leading(x, axes.axis))
    if not _shards_coordinates(axes, size_):
      return call(_gather_leaf(x, axes))
    m = -(-size_ // lax.axis_size(axes.axis_name))
    block = call(  # [m]
      _to_coordinate_shards(x, axes),
      lax.axis_index(axes.axis_name) * m,
      m,
      (m,),
    )
    whole = _all_gather(block, axes.axis_name, tiled=True)
    return whole[:size_].reshape(shape)

  return jax.tree.map(one, population)


def mix(
  population: Population,
  matrix: jax.Array,
  axes: PopulationAxes | None = None,
) -> Population:
  r"""Each member replaced by a combination of all: :math:`g_i \leftarrow
  \sum_j M_{ij} g_j`.

  Non-finite values count as 0 in the sums (a member with weight 0 cannot
  leak NaN). On a named axis the members are coordinate-sharded (one
  ``all_to_all``), each index mixes its ``[K, D/N]`` block and a second
  ``all_to_all`` returns every member's rows to its index: per index O(D)
  memory and traffic, whatever ``K`` (leaves smaller than ``N`` are
  gathered whole).

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    matrix: ``[K, K]`` float32, the same on every index, member order as
      :func:`gather`.
    axes: where the members live.

  Returns:
    A population with the same layout and dtypes (mixed in float32, float64
    for float64 leaves).
  """
  axes = _axes(axes)
  k_local = local_size(population, axes)
  if lean.is_lean(population):
    raise lean.unsupported('mix', 'mixing the members')
  acc = numerics.tree_common_accumulation_dtype(population)
  m_acc = jnp.asarray(matrix, acc)

  def clean(x):
    y = x.astype(acc)
    return jnp.where(jnp.isfinite(y), y, 0.0)

  def one(x):
    local_shape = x.shape
    flat = clean(_local_flat(x, axes))  # [k, d]
    d = flat.shape[1]
    if not axes.is_named:
      out = jnp.matmul(m_acc, flat, precision=lax.Precision.HIGHEST)
    elif _shards_coordinates(axes, d):
      n = lax.axis_size(axes.axis_name)
      block = _to_coordinate_shards(flat, PopulationAxes(0, axes.axis_name))
      mixed = jnp.matmul(m_acc, block, precision=lax.Precision.HIGHEST)
      m = mixed.shape[1]
      back = lax.all_to_all(
        mixed.reshape(n, k_local, m),
        axes.axis_name,
        split_axis=0,
        concat_axis=1,
      )  # [k_local, n, m]: this index's members, every block
      out = back.reshape(k_local, n * m)[:, :d]
    else:
      everyone = _all_gather(flat, axes.axis_name, tiled=True)
      rows = local_slice(m_acc, axes, k_local)
      out = jnp.matmul(rows, everyone, precision=lax.Precision.HIGHEST)
    if axes.axis is None:
      return out.reshape(local_shape).astype(x.dtype)
    moved = _leading(x, axes.axis).shape
    out = out.reshape(moved)
    return jnp.moveaxis(out, 0, axes.axis).astype(x.dtype)

  return jax.tree.map(one, population)


def gramian(
  population: Population,
  axes: PopulationAxes | None = None,
  *,
  center_on_median: bool = False,
) -> jax.Array:
  r"""The ``K x K`` Gram matrix :math:`G_{ij} = \langle g_i, g_j \rangle`.

  Inner products run over all leaves, accumulated in float32. On the named
  path the members are coordinate-sharded (one ``all_to_all``: each index
  holds all ``K`` members of ``1/N`` of the coordinates), each index forms
  the ``K x K`` partial Gramian of its block and one ``psum`` of ``K^2``
  floats completes it: per index O(D + K^2) memory and traffic, whatever
  ``K`` (``K^2 D / N`` multiply-adds). Leaves smaller than ``N`` are
  gathered whole (see :func:`map_coordinates`).

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    axes: where the members live.
    center_on_median: the Gramian of the members minus their coordinate
      median (NaN as an outlier), computed on the same coordinate blocks (no
      extra pass or collective). Distances from it keep float32 accuracy
      relative to the members' spread whatever their common offset.

  Returns:
    A float32 ``[K, K]`` symmetric positive semi-definite matrix, identical on
    every index of the named axis.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> population.gramian({'w': jnp.array([[1., 0.], [1., 1.]])})
    Array([[1., 1.],
           [1., 2.]], dtype=float32)
  """
  axes = _axes(axes)
  local_size(population, axes)
  if lean.is_lean(population):
    if axes.is_named:
      raise ValueError(
        'gramian: a Microbatches population on a named axis would need '
        'every member on every index (K D of traffic); gather the '
        'microbatch gradients with grad_population, or keep the Gramian '
        'rules to one index.'
      )
    return lean.gramian(population)
  acc = numerics.tree_common_accumulation_dtype(population)
  k = size(population, axes)
  sharded = jnp.zeros((k, k), acc)  # partial sums, summed over the axis
  whole = jnp.zeros((k, k), acc)  # identical on every index already
  any_sharded = False

  # The blocked CPU loop slices the coordinates: fine on per-device arrays
  # (a named axis, or one device), but a global-view jit population
  # sharded on its coordinates (shard_coordinates) would be gathered to
  # slice it (measured: Krum 2 -> 18 D of temporaries), so multi-device
  # global views keep the single dot.
  blocked = kernels.cpu_tuned() and (axes.is_named or jax.device_count() == 1)

  def gram(rows):  # [K, m], all members of m coordinates
    mid = None
    if center_on_median:
      mid = _coordinate_median(rows, nan_as_outlier=True).astype(rows.dtype)
    return _gram_of_rows(rows, mid, acc, blocked=blocked)

  for x in jax.tree.leaves(population):
    if not axes.is_named:
      whole = whole + gram(_local_flat(x, axes))
    elif _shards_coordinates(axes, _local_flat(x, axes).shape[1]):
      sharded = sharded + gram(_to_coordinate_shards(x, axes))
      any_sharded = True
    else:
      full = _gather_leaf(x, axes)
      whole = whole + gram(jnp.reshape(full, (k, -1)))
  if any_sharded:
    whole = whole + lax.psum(sharded, axes.axis_name)
  return whole


# Coordinates per block of the Gramian's contraction on XLA:CPU, and members
# per row group (the blocked path computes the upper triangle of group pairs).
GRAM_BLOCK = 8192
GRAM_GROUP = 8


def _gram_of_rows(
  rows: jax.Array, center: jax.Array | None, acc, *, blocked: bool
) -> jax.Array:
  """``(rows - center) (rows - center)^T`` in ``acc``, backend-aware.

  On GPU/TPU (and for short rows, or ``blocked=False``) one ``dot_general``.
  On XLA:CPU the dot of a ``[K, D]`` operand with a ``K x K`` result runs
  single-threaded at ~5 GFLOP/s. There the contraction runs as a
  ``fori_loop`` over column blocks, ``GRAM_BLOCK`` columns (a cache-resident
  ``[K, 8192]`` slice) at a time, and the members are split into groups of
  ``GRAM_GROUP`` rows: one small dot per block and pair of groups on or above
  the diagonal, ``q (q + 1) / 2`` independent dots for ``q`` groups (two or
  four blocks per loop step when there are few), which the CPU runtime runs
  on all its threads (and which skip the lower triangle).
  The lower triangle is filled by symmetry. The centring, when asked, is
  applied block by block (no centred copy of the rows). Measurements: docs
  and ``benchmarks/run.py --only multitask``.
  """
  k, d = rows.shape

  def centred(a, c):
    return a if c is None else a - c[None]

  def dot(a, b):
    return jnp.matmul(
      a, b.T, preferred_element_type=acc, precision=lax.Precision.HIGHEST
    ).astype(acc)

  if not blocked or d < 2 * GRAM_BLOCK:
    a = centred(rows, center)
    return dot(a, a)
  groups = [(s, min(s + GRAM_GROUP, k)) for s in range(0, k, GRAM_GROUP)]
  pairs = [(a, b) for a in range(len(groups)) for b in range(a, len(groups))]
  # Column blocks per loop step: enough independent dots per step to keep
  # the runtime's threads busy when there are few group pairs.
  width = GRAM_BLOCK * (4 if len(pairs) == 1 else 2)

  def add_pairs(blk, sums):  # blk: [K, m], one dot per pair of groups
    parts = [blk[s:e] for s, e in groups]
    return tuple(
      g + dot(parts[a], parts[b]) for g, (a, b) in zip(sums, pairs, strict=True)
    )

  def body(i, sums):
    start = i * width
    blk = lax.dynamic_slice_in_dim(rows, start, width, axis=1)
    c = (
      None if center is None else lax.dynamic_slice_in_dim(center, start, width)
    )
    blk = centred(blk, c)
    for j in range(0, width, GRAM_BLOCK):
      sums = add_pairs(blk[:, j : j + GRAM_BLOCK], sums)
    return sums

  n = d // width
  zeros = tuple(
    jnp.zeros((groups[a][1] - groups[a][0], groups[b][1] - groups[b][0]), acc)
    for a, b in pairs
  )
  sums = lax.fori_loop(0, n, body, zeros) if n else zeros
  if d > n * width:  # the tail
    tail_c = None if center is None else center[n * width :]
    sums = add_pairs(centred(rows[:, n * width :], tail_c), sums)
  grid = [[None] * len(groups) for _ in groups]
  for g, (a, b) in zip(sums, pairs, strict=True):
    grid[a][b] = g
    grid[b][a] = g.T
  return jnp.block(grid)


def local_slice(values: jax.Array, axes: PopulationAxes, k_local: int):
  """This index's ``k_local`` entries of a per-member ``[K, ...]`` array.

  Members are ordered named-axis index first, then local position; off a
  named axis the array is returned whole.
  """
  if not axes.is_named:
    return values
  start = lax.axis_index(axes.axis_name) * k_local
  return lax.dynamic_slice_in_dim(values, start, k_local)


# Up to this many members, sorting networks and member-by-member code.
NETWORK_MAX = 64


def combine(
  population: Population,
  weights: jax.Array,
  axes: PopulationAxes | None = None,
  *,
  skip_zero_weights: bool = False,
) -> optax.Params:
  r"""Weighted sum of the members, :math:`\sum_k w_k g_k`.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    weights: ``[K]`` weights, the same on every index of the named axis, in
      member order (named-axis index first, then local position).
    axes: where the members live.
    skip_zero_weights: members with weight exactly 0 contribute nothing even
      if they hold NaN or Inf (``0 * NaN`` would be NaN). For aggregators
      that select members.

  Returns:
    A param-shaped tree in each leaf's dtype (accumulated in float32),
    identical on every index of the named axis.

  Raises:
    ValueError: at trace time, if ``weights`` is not ``[K]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> pop = {'w': jnp.array([[1., 2.], [3., 4.]])}
    >>> population.combine(pop, jnp.array([0.25, 0.75]))
    {'w': Array([2.5, 3.5], dtype=float32)}
  """
  axes = _axes(axes)
  k_local = local_size(population, axes)
  k = size(population, axes)
  if jnp.shape(weights) != (k,):
    raise ValueError(
      f'combine: `weights` must have shape ({k},) for a population of K={k}'
      f' members, got shape {jnp.shape(weights)}.'
    )
  local_w = local_slice(weights, axes, k_local)
  if lean.is_lean(population):
    local = lean.combine(
      population, local_w, skip_zero_weights=skip_zero_weights
    )
    return jax.tree.map(
      lambda x: _psum(x.astype(_acc(x)), axes).astype(x.dtype), local
    )

  def one(x):
    acc = numerics.accumulation_dtype(x.dtype)
    w = local_w.astype(acc)
    if axes.axis is None:
      out = w[0] * x.astype(acc)
      if skip_zero_weights:
        out = jnp.where(w[0] != 0, out, 0.0)
    elif (
      skip_zero_weights
      and x.shape[axes.axis] <= NETWORK_MAX
      and kernels.cpu_tuned()
    ):
      # Member by member: a population-wide where before the contraction was
      # materialised in fresh memory by XLA:CPU (20x slower at K = 32).
      rows = [
        jnp.where(wi != 0, wi * xi.astype(acc), 0.0)
        for wi, xi in zip(w, _leading(x, axes.axis), strict=True)
      ]
      out = functools.reduce(operator.add, rows)
    else:
      if skip_zero_weights:
        shape = [1] * x.ndim
        shape[axes.axis] = -1
        x = jnp.where((w != 0).reshape(shape), x, jnp.zeros([], x.dtype))
      out = jnp.tensordot(
        w,
        x.astype(acc),
        axes=(0, axes.axis),
        precision=lax.Precision.HIGHEST,
      )
    return _psum(out, axes).astype(x.dtype)

  return jax.tree.map(one, population)


def _batcher_pairs(n: int) -> list[tuple[int, int]]:
  """Comparators of Batcher's odd-even merge sort for ``n`` (a power of 2)."""
  pairs = []
  p = 1
  while p < n:
    k = p
    while k >= 1:
      for j in range(k % p, n - k, 2 * k):
        for i in range(min(k, n - j - k)):
          if (i + j) // (2 * p) == (i + j + k) // (2 * p):
            pairs.append((i + j, i + j + k))
      k //= 2
    p *= 2
  return pairs


def network_sort(rows: list[jax.Array], pad) -> list[jax.Array]:
  """Sorts ``rows`` (equal-shaped arrays) with element-wise min/max.

  Batcher's odd-even merge network on a list of member rows (integer order
  keys in this package, see ``numerics.order_key``).

  XLA:CPU sorts along a leading axis 20-100x slower than this straight-line
  network (see ``benchmarks/``), and unused outputs (e.g. all but the middle
  ones for a median) are pruned by dead-code elimination. ``pad`` is the
  largest value (padding up to a power of two).
  """
  k = len(rows)
  n = 1 << max(k - 1, 0).bit_length()
  rows = list(rows) + [jnp.full_like(rows[0], pad)] * (n - k)
  for a, b in _batcher_pairs(n):
    rows[a], rows[b] = (
      jnp.minimum(rows[a], rows[b]),
      jnp.maximum(rows[a], rows[b]),
    )
  return rows[:k]


def _nan_count(x: jax.Array) -> jax.Array:
  """How many members of ``x`` ``[K, ...]`` are NaN, per coordinate."""
  (count,) = numerics.sum_over_members(
    x, (lambda m: jnp.isnan(m).astype(jnp.float32),), jnp.float32
  )
  return count


def _sorted_rows(x: jax.Array, keep_nan: bool) -> list[jax.Array]:
  """The ``K`` order statistics of ``x`` along axis 0 (NaN last).

  With ``keep_nan=False`` NaN is returned as ``+Inf``. Up to
  ``NETWORK_MAX`` members (with ``kernels.cpu_tuned()``; else ``jnp.sort``)
  go through a sorting network on
  :func:`numerics.order_key` integer keys, one member row at a time: a
  population-wide conversion was materialised by XLA:CPU into a freshly
  allocated ``[K, ...]`` buffer (10x slower at ``K >= 16``), while per-row
  conversions fuse into the network.
  """
  k = x.shape[0]
  if k > NETWORK_MAX or not kernels.cpu_tuned():
    xs = jnp.sort(x, axis=0)
    if not keep_nan:
      xs = jnp.where(xs < jnp.inf, xs, jnp.inf)
    return [xs[i] for i in range(k)]
  members = [x[i] for i in range(k)]
  keys = network_sort(
    [numerics.order_key(r) for r in members],
    numerics.max_order_key(x.dtype),
  )
  rows = [numerics.from_order_key(r, x.dtype) for r in keys]
  if keep_nan:  # restore NaN in the last slots, as jnp.sort orders them
    n_nan = _nan_count(x)
    rows = [
      jnp.where(k - 1 - i < n_nan, jnp.nan, r) for i, r in enumerate(rows)
    ]
  return rows


def sort(
  population: Population, axes: PopulationAxes | None = None
) -> Population:
  """Sorts every coordinate across the members (ascending).

  The result is a stacked population whose ``k``-th member holds the
  ``k``-th order statistic of every coordinate. NaN sorts last (as
  ``jnp.sort``). On the named path the population is gathered first (see
  :func:`gather` for the cost). Up to 64 members are sorted with a Batcher
  odd-even merge network of element-wise ``min``/``max`` (much faster than
  XLA's sort along the member axis on CPU); more fall back to ``jnp.sort``.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    axes: where the members live.

  Returns:
    Leaves ``[K, *shape]``, identical on every index of the named axis.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> population.sort(jnp.array([[3., 0.], [1., 2.]]))
    Array([[1., 0.],
           [3., 2.]], dtype=float32)
  """
  return jax.tree.map(
    lambda x: jnp.stack(_sorted_rows(x, keep_nan=True)),
    gather(population, axes),
  )


def _coordinate_median(x: jax.Array, nan_as_outlier: bool) -> jax.Array:
  """The median over axis 0 of ``x`` ``[K, ...]``, in ``x``'s dtype."""
  k = x.shape[0]
  lo, hi = (k - 1) // 2, k // 2
  acc = numerics.accumulation_dtype(x.dtype)
  rows = _sorted_rows(x, keep_nan=False)  # NaN as +inf
  mid = 0.5 * (rows[lo].astype(acc) + rows[hi].astype(acc))
  if not nan_as_outlier:
    mid = jnp.where(_nan_count(x) > 0, jnp.nan, mid)
  return mid.astype(x.dtype)


def median(
  population: Population,
  axes: PopulationAxes | None = None,
  *,
  nan_as_outlier: bool = False,
) -> optax.Params:
  """Coordinate-wise median across the members.

  For even ``K`` it is the mean of the two middle order statistics, computed
  in float32 and cast back to each leaf's dtype. On a named axis the
  members are coordinate-sharded (:func:`map_coordinates`): O(D) memory and
  traffic per index. By default a coordinate with
  any NaN member is NaN (``jnp.median``'s behaviour); with
  ``nan_as_outlier=True`` NaN counts as larger than every number (it sorts
  last), so the median stays finite while fewer than half the members are
  NaN or infinite in that coordinate.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    axes: where the members live.
    nan_as_outlier: treat NaN as the largest value instead of propagating it.

  Returns:
    A param-shaped tree, identical on every index of the named axis.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> population.median(jnp.array([[1., 10.], [2., 20.], [100., 30.]]))
    Array([ 2., 20.], dtype=float32)
  """
  if lean.is_lean(population):
    raise lean.unsupported('median', 'the coordinate-wise median')
  return map_coordinates(
    population,
    functools.partial(_coordinate_median, nan_as_outlier=nan_as_outlier),
    axes,
  )


def clip_factors(norms_: jax.Array, max_norm) -> tuple[jax.Array, jax.Array]:
  r"""Clipping factors :math:`c_k = \min(1, \tau / \|g_k\|)` and roots.

  Returns ``(c, r)``: ``c`` is 0 for non-finite norms, and ``r`` is
  :math:`\sqrt{c_k}` computed as :math:`\min(1, \sqrt\tau /
  \sqrt{\|g_k\|})`, a normal float for every finite norm (``c`` itself is
  subnormal, and flushed to 0 by XLA:CPU, above :math:`\tau \cdot 8.5
  \times 10^{37}`). Pass both to :func:`scale_members`.
  """
  # In the norms' dtype (float64 for a float64 population), at least float32.
  n = jnp.asarray(norms_)
  n = n.astype(numerics.accumulation_dtype(n.dtype))
  tau = jnp.asarray(max_norm, n.dtype)
  finite = jnp.isfinite(n)
  factor = jnp.minimum(1.0, tau / jnp.maximum(n, 1e-30))
  root = jnp.minimum(1.0, jnp.sqrt(tau) / jnp.sqrt(jnp.maximum(n, 1e-30)))
  return jnp.where(finite, factor, 0.0), jnp.where(finite, root, 0.0)


def scale_members(
  population: Population,
  factors: jax.Array,
  roots: jax.Array,
  axes: PopulationAxes | None = None,
) -> Population:
  """Each member times its factor, :math:`c_k g_k`; 0 where :math:`c_k = 0`.

  For clipping (``(factors, roots)`` from :func:`clip_factors`): a member
  with root 0 (non-finite, excluded) becomes 0 even if it holds NaN or Inf.
  Where the factor is below ``1e-30`` the product is taken as :math:`(g_k
  r_k) r_k`, so a huge member (up to the float32 maximum) scaled by a
  factor below the smallest normal float keeps its value; elsewhere it is
  the exact :math:`c_k g_k`.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    factors: the local members' non-negative factors, shaped as
      :func:`norms` returns norms (``[k]``, or a scalar when ``axes.axis is
      None``).
    roots: their square roots, the same shape.
    axes: where the members live.

  Returns:
    A population with the same layout, in the population's dtypes
    (computed in float32).

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext._src import population as pop_lib
    >>> c, r = pop_lib.clip_factors(jnp.array([3e38, jnp.nan, 5.0]), 1.0)
    >>> out = pop_lib.scale_members(jnp.array([[3e38], [jnp.nan], [5.]]), c, r)
    >>> out.round(5)
    Array([[1.],
           [0.],
           [1.]], dtype=float32)
  """
  axes = _axes(axes)
  local_size(population, axes)
  if lean.is_lean(population):  # clip_each uses Microbatches.with_scales
    raise lean.unsupported('scale_members', 'scaling members in place')
  factors, roots = jnp.asarray(factors), jnp.asarray(roots)

  def one(x):
    c, r = factors, roots
    if axes.axis is not None:
      shape = [1] * x.ndim
      shape[axes.axis] = -1
      c, r = c.reshape(shape), r.reshape(shape)
    return _clip_scaled(x, c, r)

  return jax.tree.map(one, population)


def _clip_scaled(x: jax.Array, c: jax.Array, r: jax.Array) -> jax.Array:
  """``c x`` (``(x r) r`` below 1e-30; 0 where ``r == 0``), in ``x.dtype``."""
  acc = numerics.tree_common_accumulation_dtype((x, c))
  y = jnp.where(r == 0, jnp.zeros([], x.dtype), x).astype(acc)
  c, r = c.astype(acc), r.astype(acc)
  return jnp.where(c >= 1e-30, y * c, (y * r) * r).astype(x.dtype)


def mean_of_scaled_deviations(
  population: Population,
  center: optax.Params,
  factors: jax.Array,
  roots: jax.Array,
  axes: PopulationAxes | None = None,
) -> optax.Params:
  r""":math:`\frac1K \sum_k c_k (g_k - z)`, clipped as :func:`scale_members`.

  The same value as ``mean(scale_members(deviations(population, center),
  factors, roots))``. On XLA:CPU with up to 64 members stacked locally it is
  written member by member (each scaled deviation added where it is made,
  in the members' order, as :func:`mean` adds them): XLA:CPU writes a
  whole-population product out before a reduction over more than 8 member
  slices, so the composition above holds one or two ``[K, D]`` temporaries
  (measured in docs/benchmarks.md, centered clipping). Elsewhere it is that
  composition.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named), in a
      float dtype.
    center: a param-shaped tree :math:`z`.
    factors: the local members' factors :math:`c_k`, from
      :func:`clip_factors` (``[k]``, or a scalar when ``axes.axis is
      None``).
    roots: their square roots, the same shape.
    axes: where the members live.

  Returns:
    A param-shaped tree in each leaf's dtype, identical on every index of
    the named axis.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext._src import population as pop_lib
    >>> pop = jnp.array([[3., 4.], [1., 0.]])
    >>> c, r = pop_lib.clip_factors(jnp.array([5.0, 1.0]), 1.0)
    >>> pop_lib.mean_of_scaled_deviations(pop, jnp.zeros(2), c, r)
    Array([0.8, 0.4], dtype=float32)
  """
  axes = _axes(axes)
  k_local = local_size(population, axes)
  stacked = axes.axis is not None and not lean.is_lean(population)
  if not (
    stacked
    and kernels.cpu_tuned()
    and k_local <= numerics.STRAIGHT_LINE_MEMBERS
  ):
    devs = deviations(population, center, axes)
    return mean(scale_members(devs, factors, roots, axes), axes)
  factors, roots = jnp.asarray(factors), jnp.asarray(roots)
  k = size(population, axes)

  def one(x, z):
    z = jnp.asarray(z).astype(x.dtype)
    members = _leading(x, axes.axis)
    acc = numerics.accumulation_dtype(x.dtype)
    total = None
    for i in range(k_local):
      scaled = _clip_scaled(members[i] - z, factors[i], roots[i]).astype(acc)
      total = scaled if total is None else total + scaled
    return (_psum(total, axes) / k).astype(x.dtype)

  return jax.tree.map(one, population, center)


def dots(
  population: Population,
  vector: optax.Params,
  axes: PopulationAxes | None = None,
) -> jax.Array:
  r"""Inner products :math:`\langle g_k, v\rangle` of the local members.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named), or a
      lean ``Microbatches`` (one forward-mode pass).
    vector: a param-shaped tree, the same on every index.
    axes: where the members live.

  Returns:
    Float32 ``[k]`` (the local members; a scalar when ``axes.axis`` is
    ``None``), like :func:`norms`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> population.dots(jnp.array([[1., 2.], [3., 4.]]), jnp.array([1., 1.]))
    Array([3., 7.], dtype=float32)
  """
  axes = _axes(axes)
  local_size(population, axes)
  if lean.is_lean(population):
    return lean.inner_products(population, vector)
  total = 0.0
  for x, v in zip(
    jax.tree.leaves(population), jax.tree.leaves(vector), strict=True
  ):
    flat = _local_flat(x, axes).astype(jnp.float32)
    vv = jnp.reshape(jnp.asarray(v), (-1,)).astype(jnp.float32)
    total = total + jnp.matmul(flat, vv, precision=lax.Precision.HIGHEST)
  return total[0] if axes.axis is None else total


def deviations(
  population: Population,
  center: optax.Params,
  axes: PopulationAxes | None = None,
) -> Population:
  """Each member minus a param-shaped ``center``: :math:`g_k - c`.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    center: a param-shaped tree (the same on every index of the named axis).
    axes: where the members live.

  Returns:
    A population with the same layout, in the population's dtypes.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> population.deviations(jnp.array([[1., 2.], [3., 4.]]), jnp.ones(2))
    Array([[0., 1.],
           [2., 3.]], dtype=float32)
  """
  axes = _axes(axes)
  local_size(population, axes)
  if lean.is_lean(population):
    raise lean.unsupported('deviations', 'the members minus a point')

  def one(x, c):
    c = jnp.asarray(c).astype(x.dtype)
    if axes.axis is not None:
      c = jnp.expand_dims(c, axes.axis)
    return x - c

  return jax.tree.map(one, population, center)


def stack(members: Sequence[optax.Params]) -> Population:
  """Stacks ``K`` param-shaped trees into a population ``[K, *shape]``.

  Args:
    members: a non-empty sequence of trees with the same structure and shapes.

  Returns:
    The stacked population.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> population.stack([{'w': jnp.zeros(2)}, {'w': jnp.ones(2)}])['w'].shape
    (2, 2)
  """
  if not members:
    raise ValueError('stack: `members` must be a non-empty sequence, got [].')
  return jax.tree.map(lambda *xs: jnp.stack(xs), *members)


def unstack(
  population: Population, axes: PopulationAxes | None = None
) -> list[optax.Params]:
  """Splits a population into a list of ``K`` param-shaped trees.

  On the named path the population is gathered first, so every index gets
  all ``K`` members.

  Args:
    population: leaves ``[K, *shape]`` (stacked) or ``shape`` (named).
    axes: where the members live.

  Returns:
    A list of ``K`` trees.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import population
    >>> [m['w'].tolist() for m in population.unstack({'w': jnp.eye(2)})]
    [[1.0, 0.0], [0.0, 1.0]]
  """
  full = gather(population, axes)
  k = local_size(full)
  return [jax.tree.map(lambda x, i=i: x[i], full) for i in range(k)]


def grad_population(
  loss_fn: Callable[..., Any],
  num_members: int,
  *,
  has_aux: bool = False,
) -> Callable[..., tuple[Any, Population]]:
  r"""Makes a function returning a loss and a microbatch gradient population.

  The batch is split into ``num_members`` equal, contiguous groups along its
  leading axis and the gradient of ``loss_fn`` is taken on each group with
  ``jax.vmap``. With ``num_members`` equal to the batch size this is the
  per-example population; with ``1`` it is the ordinary gradient.

  ``loss_fn(params, batch, *args, **kwargs)`` must return a scalar (or
  ``(scalar, aux)`` with ``has_aux``) that is a *mean* over the examples of
  ``batch``; the returned loss is then the mean of the group losses, equal to
  the full-batch loss.

  Other populations, as recipes:

  * per-example: ``jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, batch)``
    with ``loss`` written for one example;
  * per-task: ``jax.jacrev(vector_loss)(params)`` where ``vector_loss`` returns
    one loss per task, giving leaves ``[T, *param.shape]``;
  * per-device: inside ``jax.shard_map`` over a mesh axis ``'data'``,
    ``p = population.vary_like(params, local_batch)`` then
    ``jax.grad(loss)(p, local_batch)``, aggregated with
    ``PopulationAxes(axis=None, axis_name='data')``. Without
    :func:`vary_like` the gradient of replicated params comes back summed
    over the devices (every member the same); the aggregators raise then.

  Args:
    loss_fn: the loss, differentiated with respect to its first argument.
    num_members: ``K``, the number of groups; must divide the batch size.
    has_aux: whether ``loss_fn`` returns ``(loss, aux)``; ``aux`` is then
      returned stacked over the groups.

  Returns:
    A function ``(params, batch, *args, **kwargs) -> (loss, grads)`` (or
    ``((loss, aux), grads)``) where ``grads`` has leaves ``[K, *param.shape]``
    and ``loss`` is the mean of the ``K`` group losses.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax_ext
    >>> loss = lambda w, b: jnp.mean((b['x'] @ w - b['y']) ** 2)
    >>> batch = {'x': jnp.ones((8, 3)), 'y': jnp.zeros(8)}
    >>> value, grads = optax_ext.grad_population(loss, 4)(jnp.ones(3), batch)
    >>> value, grads.shape
    (Array(9., dtype=float32), (4, 3))
  """
  if not callable(loss_fn):
    raise TypeError(
      f'grad_population: `loss_fn` must be callable, got {loss_fn!r}.'
    )
  if (
    isinstance(num_members, bool)
    or not isinstance(num_members, int)
    or num_members < 1
  ):
    raise ValueError(
      'grad_population: `num_members` must be an integer >= 1, got '
      f'{num_members!r}.'
    )
  value_and_grad = jax.value_and_grad(loss_fn, has_aux=has_aux)

  def fn(params, batch, *args, **kwargs):
    groups = lean.split_batch(
      'grad_population', batch, num_members, 'num_members'
    )
    per_group = jax.vmap(lambda g: value_and_grad(params, g, *args, **kwargs))
    value, grads = per_group(groups)
    if has_aux:
      loss, aux = value
      return (jnp.mean(loss), aux), grads
    return jnp.mean(value), grads

  return fn
