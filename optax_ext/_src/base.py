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
"""Base types: the aggregator transform and trace-time population checks."""

from typing import Any

import jax
import jax.numpy as jnp
import optax
from optax.experimental import aggregating

from optax_ext._src import axes as axes_lib
from optax_ext._src import lean
from optax_ext._src import population as pop_lib


class Aggregator(aggregating.Aggregator):
  """A transformation from a gradient population to param-shaped updates.

  An ``Aggregator`` is an :class:`optax.GradientTransformationExtraArgs` whose
  ``update`` receives a gradient *population* (see
  :class:`optax_ext.PopulationAxes`) in place of the usual param-shaped
  gradient, and returns param-shaped updates. It therefore comes first in an
  :func:`optax.chain`; every transform after it is an ordinary optax transform.
  ``init`` receives the (param-shaped) parameters, so
  ``flax.nnx.Optimizer(model, tx, wrt=nnx.Param)`` works unchanged: pass the
  population as the gradient to ``optimizer.update``.

  It subclasses ``optax.experimental.aggregating.Aggregator`` so it can also
  be the aggregator of ``optax.experimental.aggregating.process``.

  Wrappers that look at the incoming updates go *after* the aggregator, on
  param-shaped updates: ``optax.chain(agg, optax.apply_if_finite(tx, 3))``
  and ``optax.chain(agg, optax.MultiSteps(tx, k).gradient_transformation())``
  (wrapping the aggregator itself would make their skip branch return
  population-shaped zeros).

  Under global-view ``jax.jit`` with ``AxisType.Explicit`` mesh axes (the
  default of ``jax.make_mesh``), a population sharded on its member axis is
  moved to its coordinates (:func:`optax_ext.population.shard_coordinates`)
  and reduced with those axes treated as ``Auto``; the update comes out
  sharded like the params (replicated params: a replicated update) and the
  state like itself.

  Attributes:
    init: ``init(params) -> state``.
    update: ``update(population, state, params=None, **extra_args) ->
      (updates, state)``.
  """

  def __new__(cls, init, update):
    return super().__new__(cls, init, _with_explicit_axes(update))


def _explicit_sharding(leaf):
  """``(abstract mesh, spec, explicit names)`` of a leaf's sharding type."""
  sharding = getattr(jax.typeof(leaf), 'sharding', None)
  mesh = getattr(sharding, 'mesh', None)
  names = getattr(mesh, 'axis_names', ())
  if not names:
    return None, None, set()
  kinds = dict(zip(names, mesh.axis_types, strict=True))
  explicit = set()
  for entry in sharding.spec:
    for name in entry if isinstance(entry, tuple) else (entry,):
      if name is not None and kinds.get(name) == jax.sharding.AxisType.Explicit:
        explicit.add(name)
  return mesh, sharding.spec, explicit


def population_transform(init, update) -> optax.GradientTransformationExtraArgs:
  """A population -> population transform (per-member clipping, mixing),
  with the explicit-axes handling of :class:`Aggregator`."""
  return optax.GradientTransformationExtraArgs(
    init, _with_explicit_axes(update, population_out=True)
  )


def _with_explicit_axes(update, population_out=False):
  """``update`` that also runs on explicitly sharded stacked populations.

  The rules are written for compiler-chosen intermediate shardings; with
  Explicit axes JAX's sharding-in-types rejects their slices and dots
  (``ShardingTypeError``). ``jax.sharding.auto_axes`` runs them with those
  axes as Auto, after the population is moved from its members to its
  coordinates (O(D) per device instead of XLA gathering ``K D``).
  """

  def wrapped(updates, state, params=None, **extra_args):
    if lean.is_lean(updates):
      return update(updates, state, params, **extra_args)
    found = [_explicit_sharding(x) for x in jax.tree.leaves(updates)]
    names = set().union(*(f[2] for f in found))
    if not names:
      return update(updates, state, params, **extra_args)
    mesh = next(m for m, _, explicit in found if explicit)
    member_axes = {
      spec[0] for _, spec, _ in found if spec is not None and len(spec)
    }
    member_axis = next(iter(member_axes)) if len(member_axes) == 1 else None

    def spec_of(x):
      spec = _explicit_sharding(x)[1]
      return jax.sharding.PartitionSpec() if spec is None else spec

    if population_out:  # members back on their axis, as they came
      out_updates = jax.tree.map(spec_of, updates)
    elif params is not None:
      out_updates = jax.tree.map(spec_of, params)
    else:
      out_updates = jax.tree.map(
        lambda x: jax.sharding.PartitionSpec(), updates
      )
    out_state = jax.tree.map(spec_of, state)

    def inner(population, state, params):
      if isinstance(member_axis, str):
        population = pop_lib.shard_coordinates(population, member_axis)
      return update(population, state, params, **extra_args)

    with jax.sharding.use_abstract_mesh(mesh):
      return jax.sharding.auto_axes(
        inner, axes=tuple(sorted(names)), out_sharding=(out_updates, out_state)
      )(updates, state, params)

  return wrapped


def reject_microbatches(where: str, updates: Any, hint: str) -> None:
  """Raises for a memory-lean population where a rule takes something else.

  Args:
    where: the public name used in the error.
    updates: what the rule received.
    hint: what it takes instead.
  """
  if lean.is_lean(updates):
    raise ValueError(f'{where}: takes {hint}, not a Microbatches population.')


def check_population(
  where: str,
  population: optax.Params,
  params: optax.Params | None,
  axes: pop_lib.PopulationAxes,
  *,
  lean_ok: bool | str = False,
) -> int:
  """Trace-time check that ``population`` matches ``params`` under ``axes``.

  Args:
    where: the public name used in error messages.
    population: the gradient population.
    params: the parameters, or ``None`` to check only the population.
    axes: where the members live.
    lean_ok: whether the caller accepts a memory-lean ``Microbatches``
      population (a clear error otherwise); a string says what needs every
      member at once, for that error (e.g. an option of the rule).

  Returns:
    The local number of members.

  Raises:
    ValueError: if the tree structures differ, a leaf's shape is not the
      param's shape with the member axis inserted, or leaves disagree on the
      number of members.
  """
  if lean.is_lean(population):
    if lean_ok is not True:
      raise lean.unsupported(where, lean_ok or 'this rule')
    if params is not None and (
      jax.tree.structure(population.params) != jax.tree.structure(params)
    ):
      raise ValueError(
        f'{where}: the Microbatches params and the params have different '
        'tree structures.\n  Microbatches params: '
        f'{jax.tree.structure(population.params)}\n  params: '
        f'{jax.tree.structure(params)}\nBuild the population at the params '
        'the optimiser updates; with flax.nnx those are pure arrays: '
        '`population.microbatches(loss_fn, nnx.as_pure(nnx.state(model, '
        'nnx.Param)), batch, k)`.'
      )
  else:
    _check_floating(where, population)
    if params is not None:
      _check_against_params(where, population, params, axes)
    _check_varies_over_axis(where, population, axes)
  try:
    return pop_lib.local_size(population, axes)
  except ValueError as e:
    raise ValueError(f'{where}: {e}') from None


def population_arg(where: str, updates: Any, extra_args: dict) -> Any:
  """The population an aggregator reduces: ``updates`` or ``population=``.

  A memory-lean :class:`optax_ext.population.Microbatches` comes either as
  the updates (plain optax) or as the ``population=`` extra argument (for
  ``nnx.Optimizer.update(model, grads, population=...)``, whose ``grads``
  must be param-shaped). Lean updates win: they come from a population
  transform earlier in the chain (``clip_each_by_global_norm``), which saw
  the extra argument first.
  """
  given = extra_args.get('population')
  if given is None or lean.is_lean(updates):
    return updates
  if not lean.is_lean(given):
    raise TypeError(
      f'{where}: the `population` extra argument must be an '
      'optax_ext.population.Microbatches (from population.microbatches), '
      f'got {type(given).__name__}.'
    )
  return given


def _check_floating(where, population) -> None:
  """Gradients are floating point: an integer (or bool) population would be
  truncated by a mean and has no infinity for the order statistics."""
  for path, leaf in jax.tree_util.tree_leaves_with_path(population):
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(
        f'{where}: population leaf {jax.tree_util.keystr(path) or "(root)"} '
        f'has dtype {dtype}; a gradient population must be floating point. '
        'Cast it first: `jax.tree.map(lambda g, p: g.astype(p.dtype), '
        'population, params)`.'
      )


def _check_varies_over_axis(where, population, axes) -> None:
  """Under ``jax.shard_map``, every leaf must vary over the members' axis.

  With shard_map's varying-manual-axes typing (``check_vma=True``, the
  default) a value that does not vary over a manual axis is the same on
  every device by construction: a "population" of identical members. That
  is what ``jax.grad`` of a per-device loss returns for replicated params
  (the transpose of their implicit broadcast is a ``psum``), so every member
  would be the all-reduced gradient and a robust rule would silently return
  the mean. ``lax.axis_index`` varies over every axis whose typing is on;
  under ``vmap``/``pmap`` or ``check_vma=False`` nothing is typed and
  nothing can be told.
  """
  if axes.axis_name is None:
    return
  names = axes.axis_name
  names = tuple(names) if isinstance(names, (tuple, list)) else (names,)
  manual = set(getattr(jax.sharding.get_abstract_mesh(), 'manual_axes', ()))
  varying = axes_lib.varying_axes
  typed = {
    n for n in names if n in manual and n in varying(jax.lax.axis_index(n))
  }
  if not typed:
    return
  for path, leaf in jax.tree_util.tree_leaves_with_path(population):
    missing = typed - varying(leaf)
    if missing:
      name = sorted(missing)[0]
      raise ValueError(
        f'{where}: population leaf {jax.tree_util.keystr(path) or "(root)"} '
        f'does not vary over the named axis {name!r} under jax.shard_map, '
        'so every device holds the same member. This is what jax.grad '
        'returns for replicated params: their per-device gradients come '
        'back already summed over the devices. Mark the params as varying '
        'before taking the gradient: '
        '`params = optax_ext.population.vary_like(params, local_batch)`, '
        'then `jax.grad(loss)(params, local_batch)`.'
      )


def _check_against_params(where, population, params, axes) -> None:
  p_def = jax.tree.structure(params)
  g_def = jax.tree.structure(population)
  if p_def != g_def:
    raise ValueError(
      f'{where}: the population and the params have different tree '
      f'structures.\n  population: {g_def}\n  params:     {p_def}'
    )
  for (path, g), p in zip(
    jax.tree_util.tree_leaves_with_path(population),
    jax.tree.leaves(params),
    strict=True,
  ):
    g_shape, p_shape = tuple(jnp.shape(g)), tuple(jnp.shape(p))
    if axes.axis is None:
      ok, expected = g_shape == p_shape, str(p_shape)
      layout = 'param-shaped members (axis=None)'
    else:
      a = axes.axis
      ok = len(g_shape) == len(p_shape) + 1 and (
        g_shape[:a] + g_shape[a + 1 :] == p_shape
      )
      expected = str(p_shape[:a] + ('K',) + p_shape[a:]).replace("'", '')
      layout = f'members on axis {a}'
    if not ok:
      hint = (
        ' It arrived param-shaped: something before the aggregator reduced '
        'it, such as optax.MultiSteps wrapped around the aggregator or a '
        'transform ahead of it in the chain. The aggregator must come first '
        'and outermost; wrap what follows it instead: '
        '`optax.chain(aggregator, optax.MultiSteps(tx, k)'
        '.gradient_transformation())`.'
        if axes.axis is not None and g_shape == p_shape
        else ' An aggregator must come first in a chain and receive the '
        'population as its updates.'
      )
      raise ValueError(
        f'{where}: population leaf {jax.tree_util.keystr(path) or "(root)"} '
        f'has shape {g_shape} but params have shape {p_shape}; with {layout} '
        f'the population leaf must have shape {expected}.{hint}'
      )


def resolve_axes(where: str, axes) -> pop_lib.PopulationAxes:
  """``axes`` or the default (stacked on axis 0); a clear error naming
  ``where`` otherwise (``population``'s one resolver)."""
  return axes_lib.resolve(axes, where)
