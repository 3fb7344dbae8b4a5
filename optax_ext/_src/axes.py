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
"""Where a population's members live, and the collectives over them.

:class:`PopulationAxes` (stacked on a leading axis, spread over a named
mapped axis, or both), the wrappers of the named-axis collectives every
population function shares, and the specs of the coordinate-sharded layout.
The lowest layer of the population core: it knows no population function.
"""

from collections.abc import Hashable
import dataclasses

import jax
from jax import lax
import jax.numpy as jnp
import optax

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

  def locally_stacked(self) -> 'PopulationAxes':
    """The same axes with the local members on a leading axis 0."""
    return PopulationAxes(axis=0, axis_name=self.axis_name)


_DEFAULT_AXES = PopulationAxes()


def resolve(axes: PopulationAxes | None, where: str = '') -> PopulationAxes:
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


def leading(x: jax.Array, axis: int) -> jax.Array:
  return x if axis == 0 else jnp.moveaxis(x, axis, 0)


def local_sum(x: jax.Array, axes: PopulationAxes) -> jax.Array:
  """Sum over the local member axis in the accumulation dtype."""
  if axes.axis is None:
    return numerics.to_accumulation(x)
  (total,) = numerics.sum_over_members(leading(x, axes.axis), (identity,))
  return total


def all_gather(x: jax.Array, axis_name: AxisName, *, tiled: bool):
  """``lax.all_gather`` on axis 0 whose result is typed as replicated.

  Under ``jax.shard_map`` (with its varying-manual-axes check) a gathered
  value is the same on every index, and is marked so (``to='invarying'``) to
  be returnable with ``out_specs=P()``. Under ``vmap``/``pmap`` there is no
  such typing and the plain gather is used.
  """
  names = set(axis_name) if isinstance(axis_name, tuple) else {axis_name}
  to = 'invarying' if names & varying_axes(x) else 'varying'
  return lax.all_gather(x, axis_name, axis=0, tiled=tiled, to=to)


def varying_axes(x) -> set:
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
    ref |= varying_axes(leaf)
  if axis_name is None:
    names = ref
  else:
    names = set(axis_name) if isinstance(axis_name, tuple) else {axis_name}
    names &= ref
  if not names:
    return tree

  def one(x):
    missing = tuple(sorted(names - varying_axes(x), key=str))
    return lax.pcast(x, missing, to='varying') if missing else x

  return jax.tree.map(one, tree)


def vary_over_members(
  tree: optax.Params, reference: optax.Params, axes: PopulationAxes
) -> optax.Params:
  """:func:`vary_like` over the members' named axis (identity off it).

  For code that differentiates per member itself (an oracle): under
  ``jax.shard_map`` the gradient of a replicated input comes back summed
  over the axis unless it is marked varying like the member's data.
  """
  if not axes.is_named:
    return tree
  return vary_like(tree, reference, axes.axis_name)


def identity(x):
  return x


def psum(x, axes: PopulationAxes):
  return lax.psum(x, axes.axis_name) if axes.is_named else x


def accumulation_dtype_of(x):
  return numerics.accumulation_dtype(x.dtype)


def across_indices(tree: optax.Params, axes: PopulationAxes):
  """Sums a per-index tree over the named axis (identity off it)."""
  axes = resolve(axes)
  return jax.tree.map(lambda x: psum(x, axes), tree)


def local_flat(x: jax.Array, axes: PopulationAxes) -> jax.Array:
  """Local members as a ``[k, d]`` matrix."""
  if axes.axis is None:
    return jnp.reshape(x, (1, -1))
  x = leading(x, axes.axis)
  return jnp.reshape(x, (x.shape[0], -1))


def gather_leaf(x: jax.Array, axes: PopulationAxes) -> jax.Array:
  """All ``K`` members of one named-axis leaf, stacked on axis 0."""
  local = x if axes.axis is None else leading(x, axes.axis)
  return all_gather(local, axes.axis_name, tiled=axes.axis is not None)


def shards_coordinates(axes: PopulationAxes, size_: int) -> bool:
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


def to_coordinate_shards(x: jax.Array, axes: PopulationAxes) -> jax.Array:
  """``[K, ceil(d / N)]``: all members of this index's coordinate block.

  One ``all_to_all`` of the local ``[k, d]`` members (zero-padded to a
  multiple of ``N``); members are ordered by named-axis index, then local
  position (as :func:`gather`).
  """
  n = lax.axis_size(axes.axis_name)
  flat = local_flat(x, axes)
  k_local, d = flat.shape
  m = -(-d // n)
  flat = jnp.pad(flat, ((0, 0), (0, n * m - d)))
  blocks = lax.all_to_all(
    flat.reshape(k_local, n, m), axes.axis_name, split_axis=1, concat_axis=0
  )  # [n, k_local, m]: block i came from index i
  return blocks.reshape(n * k_local, m)


def coordinate_spec(shape: tuple[int, ...], axis: int, n: int, mesh_axis):
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


def coordinate_shardings(
  params: optax.Params, mesh: jax.sharding.Mesh, mesh_axis: str
) -> optax.Params:
  """Param shardings that match :func:`shard_coordinates` (ZeRO/FSDP style).

  Each param is sharded on the dimension :func:`shard_coordinates` shards in
  its members, so params, the optimiser state (``tx.init`` of sharded params
  places every param-shaped buffer like its param) and the aggregated
  update all hold ``D / N`` per device and :func:`optax.apply_updates` needs no
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
    spec = tuple(coordinate_spec((1, *shape), 0, n, mesh_axis))[1:]
    if any(s is not None and shape[i] % n for i, s in enumerate(spec)):
      spec = ()  # arrays cannot be placed unevenly: replicate this one
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec))

  return jax.tree.map(one, params)


def local_slice(values: jax.Array, axes: PopulationAxes, k_local: int):
  """This index's ``k_local`` entries of a per-member ``[K, ...]`` array.

  Members are ordered named-axis index first, then local position; off a
  named axis the array is returned whole.
  """
  if not axes.is_named:
    return values
  start = lax.axis_index(axes.axis_name) * k_local
  return lax.dynamic_slice_in_dim(values, start, k_local)
