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
"""Population layouts: sizes, moving members, coordinate maps.

The number of members on each layout (stacked, named, lean microbatches),
gathering members, moving a member-sharded population to coordinate shards,
mapping a per-coordinate function over the members on every layout, and
building a stacked population (``stack``, ``grad_population``).
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import optax

from optax_ext._src import axes as axes_lib
from optax_ext._src import lean


def local_size(
  population: axes_lib.Population, axes: axes_lib.PopulationAxes | None = None
):
  """Number of members held locally (on one index of the named axis).

  Raises ``ValueError`` at trace time when leaves disagree on the number of
  members or lack the member axis.

  Args:
    population: the gradient population (a pytree of arrays).
    axes: where the members live.

  Returns:
    A Python ``int``: ``1`` when ``axes.axis is None``.
  """
  axes = axes_lib.resolve(axes)
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


def size(
  population: axes_lib.Population, axes: axes_lib.PopulationAxes | None = None
) -> int:
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
  axes = axes_lib.resolve(axes)
  k = local_size(population, axes)
  if axes.is_named:
    k *= lax.axis_size(axes.axis_name)
  return k


def gather(
  population: axes_lib.Population, axes: axes_lib.PopulationAxes | None = None
) -> axes_lib.Population:
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
  axes = axes_lib.resolve(axes)
  local_size(population, axes)
  if lean.is_lean(population):
    raise lean.unsupported('gather', 'gathering the population')

  def one(x):
    if not axes.is_named:
      return axes_lib.leading(x, axes.axis)
    return axes_lib.gather_leaf(x, axes)

  return jax.tree.map(one, population)


def all_members(
  values: jax.Array, axes: axes_lib.PopulationAxes | None = None
) -> jax.Array:
  """Per-member values of the local members -> all ``K``, on every index.

  ``values`` holds one entry per local member on a leading axis (``[k]``),
  or one per index when ``axes.axis is None``, e.g. the output of
  :func:`norms`; off a named axis they are already all ``K``.
  """
  axes = axes_lib.resolve(axes)
  if not axes.is_named:
    return values
  member_axis = None if axes.axis is None else 0
  return gather(values, axes_lib.PopulationAxes(member_axis, axes.axis_name))


def member_dtypes(population: axes_lib.Population) -> Any:
  """The dtype of each leaf of one member (a tree shaped like the params)."""
  template = population.params if lean.is_lean(population) else population
  return jax.tree.map(lambda x: jnp.asarray(x).dtype, template)


def shard_coordinates(
  population: axes_lib.Population,
  mesh_axis: str,
  *,
  mesh: jax.sharding.Mesh | None = None,
  axes: axes_lib.PopulationAxes | None = None,
) -> axes_lib.Population:
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
  axes = axes_lib.resolve(axes)
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
    spec = axes_lib.coordinate_spec(x.shape, axes.axis, n, mesh_axis)
    if isinstance(mesh, jax.sharding.Mesh):
      spec = jax.sharding.NamedSharding(mesh, spec)
    return lax.with_sharding_constraint(x, spec)

  return jax.tree.map(one, population)


def map_coordinates(
  population: axes_lib.Population,
  fn: Callable[..., jax.Array],
  axes: axes_lib.PopulationAxes | None = None,
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
  axes = axes_lib.resolve(axes)
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
      return call(axes_lib.leading(x, axes.axis))
    if not axes_lib.shards_coordinates(axes, size_):
      return call(axes_lib.gather_leaf(x, axes))
    m = -(-size_ // lax.axis_size(axes.axis_name))
    block = call(  # [m]
      axes_lib.to_coordinate_shards(x, axes),
      lax.axis_index(axes.axis_name) * m,
      m,
      (m,),
    )
    whole = axes_lib.all_gather(block, axes.axis_name, tiled=True)
    return whole[:size_].reshape(shape)

  return jax.tree.map(one, population)


def stack(members: Sequence[optax.Params]) -> axes_lib.Population:
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
  population: axes_lib.Population, axes: axes_lib.PopulationAxes | None = None
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
) -> Callable[..., tuple[Any, axes_lib.Population]]:
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


def vary_like_members(
  tree: Any, population: Any, axes: axes_lib.PopulationAxes | None = None
) -> Any:
  """``tree`` typed like an aggregate of the local members.

  For a loop carry started from the optimiser state (centered clipping's
  centre): with per-device members under ``jax.shard_map`` (no named axis
  in ``axes``) the aggregate varies over the mesh axes its data varies
  over; on a named axis it is replicated and ``tree`` is returned as is.
  """
  axes = axes_lib.resolve(axes)
  if axes.is_named:
    return tree
  if isinstance(population, lean.Microbatches):
    reference = population.batch
  elif lean.is_lean(population):
    reference = getattr(population, 'losses', population.params)
  else:
    reference = population
  return axes_lib.vary_like(tree, reference)
