"""Distributed execution on JAX's SPMD engine (8 simulated CPU devices).

* Every aggregator (and population transform) of the registry gives the
  stacked single-device numbers in the three settings: (a) the population
  sharded on its member axis under global-view ``jit`` (XLA inserts the
  collectives); (b) ``jax.shard_map`` with one member per device and
  ``PopulationAxes(axis=None, axis_name=...)``; (c) both at once, several
  members stacked on every device, ``PopulationAxes(axis=0, axis_name=...)``.
* Optimizer state follows the params' sharding on a 2-D mesh for every entry
  of the registry (no silent replication).
* ``scale_by_gsnr`` in the three settings. GradAlign's are in
  ``test_gradalign.py``; the two-process ``jax.distributed`` run is in
  ``test_multiprocess.py``.
"""

import functools

import jax
import jax.numpy as jnp
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
import pytest

import optax_ext
from optax_ext import population
from optax_ext import robust
from optax_ext import variance
from tests import helpers
from tests import registry

K = registry.NUM_MEMBERS  # 4 members


@functools.cache
def _mesh(n: int, names=('data',)):
  shape = (n,) if len(names) == 1 else n
  return jax.make_mesh(
    shape,
    names,
    axis_types=(AxisType.Auto,) * len(names),
    devices=jax.devices()[: int(np.prod(shape))],
  )


def _params():
  """Leaf sizes that divide the device counts (2, 4, 8) and ones that do not:
  10 and 7 (coordinate shards padded), 3 (fewer coordinates than devices,
  gathered whole), 13 (prime)."""
  rng = np.random.default_rng(0)
  shapes = {'w': (8, 4), 'b': (12,), 'o': (10,), 'p': (7,), 's': (3,)}
  shapes['q'] = (13,)
  return {
    name: jnp.asarray(rng.normal(size=shape), jnp.float32)
    for name, shape in shapes.items()
  }


def _grads(params, seed=1):
  rng = np.random.default_rng(seed)
  return jax.tree.map(
    lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params
  )


POPULATION_ENTRIES = [
  pytest.param(e, id=e.name)
  for e in registry.REGISTRY
  if e.kind in ('aggregator', 'population') and e.layouts
]


def _aggregate(entry, axes, **overrides):
  tx = entry.make(axes=axes, **overrides)
  if entry.kind == 'population':
    return optax.chain(tx, optax_ext.aggregate_by_mean(axes=axes))
  return tx


def _update(tx, population, params, extra):
  return tx.update(population, tx.init(params), params, **extra)[0]


def _update_and_state(tx, population, params, extra):
  return tx.update(population, tx.init(params), params, **extra)


def _assert_close(got, want, what, **tol):
  """Every float leaf of the updates and the state (a layout that gets the
  update right can still keep a wrong statistic in its state)."""
  got, want = helpers.float_leaves(got), helpers.float_leaves(want)
  assert len(got) == len(want), what
  for i, (a, b) in enumerate(zip(got, want, strict=True)):
    np.testing.assert_allclose(a, b, err_msg=f'{what}, leaf {i}', **tol)


@pytest.mark.parametrize('entry', POPULATION_ENTRIES)
def test_aggregator_three_settings(entry):
  """Updates *and* every float leaf of the state agree with the stacked run
  (regression: the noise scale's state on a named axis was off by a factor
  with the update right), on leaves whose sizes do not divide the device
  count."""
  params = _params()
  grads = _grads(params)
  pop = entry.population(grads)
  extra = entry.extra_args(grads)
  stacked = optax_ext.PopulationAxes()
  want = _update_and_state(_aggregate(entry, stacked), pop, params, extra)
  tol = {'rtol': 1e-4, 'atol': 1e-6}

  # (a) global view: members sharded over 4 devices, XLA's collectives.
  mesh = _mesh(K)
  sharded = jax.device_put(pop, NamedSharding(mesh, P('data')))
  tx = _aggregate(entry, stacked)
  got = jax.jit(lambda g: _update_and_state(tx, g, params, extra))(sharded)
  _assert_close(got, want, 'global view', **tol)
  # ... and resharded to coordinates first (the O(D) per device recipe).
  got = jax.jit(
    lambda g: _update_and_state(
      tx, population.shard_coordinates(g, 'data', mesh=mesh), params, extra
    )
  )(sharded)
  _assert_close(got, want, 'global view, coordinates', **tol)

  # (b) local view: one member per device.
  tx = _aggregate(entry, optax_ext.PopulationAxes(axis=None, axis_name='data'))
  got = jax.jit(
    jax.shard_map(
      lambda g: _update_and_state(
        tx, jax.tree.map(lambda x: x[0], g), params, extra
      ),
      mesh=mesh,
      in_specs=P('data'),
      out_specs=P(),
    )
  )(pop)
  _assert_close(got, want, 'shard_map, one member per device', **tol)

  # (c) both: two members stacked on each of 2 devices.
  tx = _aggregate(entry, optax_ext.PopulationAxes(axis=0, axis_name='data'))
  got = jax.jit(
    jax.shard_map(
      lambda g: _update_and_state(tx, g, params, extra),
      mesh=_mesh(2),
      in_specs=P('data'),
      out_specs=P(),
    )
  )(pop)
  _assert_close(got, want, 'shard_map, two members per device', **tol)


# Hyper-parameters sized by the number of members, for K = 8.
EIGHT_MEMBER_KWARGS = {
  'aggregate_by_constant': {'weights': jnp.linspace(0.1, 0.8, 8)},
  'aggregate_by_gradvac': {'num_tasks': 8},
}


@pytest.mark.parametrize('entry', POPULATION_ENTRIES)
def test_eight_devices_with_leaves_smaller_than_and_not_multiple_of_eight(
  entry,
):
  """One member per device on all 8 devices: leaves of 10, 7, 13 and 3
  coordinates are padded or gathered. Regression: a mistake in the
  coordinate-shard padding left every test green while a coordinate median
  of a 10-coordinate leaf on 8 devices was off by 0.86."""
  params = _params()
  grads = _grads(params)
  pop = jax.tree.map(
    lambda a, b: jnp.concatenate([a, b]),
    entry.population(grads),
    entry.population(_grads(params, seed=2)),
  )
  extra = entry.extra_args(grads)
  sized = EIGHT_MEMBER_KWARGS.get(entry.name, {})
  want = _update_and_state(
    _aggregate(entry, optax_ext.PopulationAxes(), **sized), pop, params, extra
  )
  tx = _aggregate(
    entry, optax_ext.PopulationAxes(axis=None, axis_name='data'), **sized
  )
  got = jax.jit(
    jax.shard_map(
      lambda g: _update_and_state(
        tx, jax.tree.map(lambda x: x[0], g), params, extra
      ),
      mesh=_mesh(8),
      in_specs=P('data'),
      out_specs=P(),
    )
  )(pop)
  _assert_close(got, want, 'shard_map on 8 devices', rtol=1e-4, atol=1e-6)


@functools.cache
def _explicit_mesh(n: int):
  """``jax.make_mesh``'s default: Explicit axes (sharding in types)."""
  mesh = jax.make_mesh((n,), ('data',), devices=jax.devices()[:n])
  assert mesh.axis_types == (AxisType.Explicit,)
  return mesh


@pytest.mark.parametrize('entry', POPULATION_ENTRIES)
def test_global_view_with_explicit_axes(entry):
  """``jax.make_mesh`` defaults to Explicit axes: a member-sharded
  population under global-view jit gives the stacked update and state.

  Regression: the medians raised ``ShardingTypeError: slicing on sharded
  dims ...`` and Krum ``dot_general ... produces an illegally sharded
  result`` from inside the rules.
  """
  params = _params()
  grads = _grads(params)
  pop = entry.population(grads)
  extra = entry.extra_args(grads)
  tx = _aggregate(entry, optax_ext.PopulationAxes())
  want = _update_and_state(tx, pop, params, extra)
  sharded = jax.device_put(pop, NamedSharding(_explicit_mesh(K), P('data')))
  got = jax.jit(lambda g: _update_and_state(tx, g, params, extra))(sharded)
  _assert_close(got, want, 'explicit global view', rtol=1e-4, atol=1e-6)


def _per_device_step(tx, extra, vary):
  """JAX's documented data-parallel step: replicated params, a local batch,
  ``jax.grad`` of the per-device loss inside ``jax.shard_map``."""

  def loss(p, x):
    return sum(jnp.sum(leaf * x[0]) for leaf in jax.tree.leaves(p))

  def step(params, xs):
    p = population.vary_like(params, xs) if vary else params
    g = jax.grad(loss)(p, xs)
    return _update(tx, g, params, extra)

  return jax.jit(
    jax.shard_map(step, mesh=_mesh(K), in_specs=(P(), P('data')), out_specs=P())
  )


@pytest.mark.parametrize('entry', POPULATION_ENTRIES)
def test_shard_map_without_vary_like_raises(entry):
  """Regression: the gradient of replicated params is already summed over
  the devices, so every member was the same all-reduced gradient (the
  coordinate median and Krum silently returned the mean; the geometric
  median failed inside its while_loop)."""
  params = _params()
  extra = entry.extra_args(_grads(params))
  tx = _aggregate(entry, optax_ext.PopulationAxes(axis=None, axis_name='data'))
  xs = jnp.arange(1.0, K + 1.0)
  with pytest.raises(ValueError, match=r'population\.vary_like\(params'):
    _per_device_step(tx, extra, vary=False)(params, xs)


@pytest.mark.parametrize(
  'make',
  [
    pytest.param(robust.aggregate_by_coordinate_median, id='median'),
    pytest.param(lambda **kw: robust.aggregate_by_krum(0, **kw), id='krum'),
    pytest.param(robust.aggregate_by_geometric_median, id='geometric_median'),
  ],
)
def test_shard_map_with_vary_like_matches_stacked(make):
  params = _params()
  xs = jnp.asarray([1.0, -2.0, 3.0, 0.5])
  got = _per_device_step(
    make(axes=optax_ext.PopulationAxes(axis=None, axis_name='data')),
    {},
    vary=True,
  )(params, xs)
  pop = jax.tree.map(lambda p: xs.reshape((K,) + (1,) * p.ndim) + 0 * p, params)
  tx = make()
  want = _update(tx, pop, params, {})
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    got,
    want,
  )


@pytest.mark.parametrize(
  'entry',
  [
    e
    for e in POPULATION_ENTRIES
    if e.id in registry.with_property(lambda p: p.robust)
  ],
)
def test_robust_faults_same_in_every_layout(entry):
  # NaN, Inf, a huge and a sign-flipped member: stacked == shard_map ==
  # global view resharded to coordinates, fault for fault (the coordinate
  # shards must not change which members are dropped or clipped).
  params = _params()
  pop = entry.population(_grads(params))
  extra = entry.extra_args(pop)
  mesh = _mesh(K)
  stacked = _aggregate(entry, optax_ext.PopulationAxes())
  named = _aggregate(
    entry, optax_ext.PopulationAxes(axis=None, axis_name='data')
  )
  layouts = {
    'stacked': jax.jit(lambda g: _update(stacked, g, params, extra)),
    'shard_map': jax.jit(
      jax.shard_map(
        lambda g: _update(
          named, jax.tree.map(lambda x: x[0], g), params, extra
        ),
        mesh=mesh,
        in_specs=P('data'),
        out_specs=P(),
      )
    ),
    'global view': jax.jit(
      lambda g: _update(
        stacked, population.shard_coordinates(g, 'data', mesh=mesh), params,
        extra,
      )
    ),
  }  # fmt: skip
  for fault, corrupt in helpers.FAULTS.items():
    bad = jax.tree.map(lambda x, c=corrupt: x.at[1].set(c(x[1])), pop)
    bad = jax.device_put(bad, NamedSharding(mesh, P('data')))
    want = layouts['stacked'](bad)
    for name in ('shard_map', 'global view'):
      got = layouts[name](bad)
      jax.tree.map(
        lambda a, b, n=name, f=fault: np.testing.assert_allclose(
          a, b, rtol=1e-4, atol=1e-6, err_msg=f'{n}, {f}'
        ),
        got,
        want,
      )


def _collective_bytes(hlo_text):
  scale = helpers.benchmark_module('scale')
  return sum(scale.collective_bytes(hlo_text).values())


@pytest.mark.parametrize(
  'make',
  [
    pytest.param(robust.aggregate_by_coordinate_median, id='median'),
    pytest.param(lambda: robust.aggregate_by_krum(num_byzantine=0), id='krum'),
    pytest.param(optax_ext.alignment.aggregate_by_upgrad, id='upgrad'),
  ],
)
def test_global_view_recipe_stays_coordinate_sharded(make):
  # docs/distributed.md, global view: the population resharded to
  # coordinates, params and optimiser state sharded the same way. The step
  # matches the stacked one, params keep their sharding, and the only
  # D-sized communication is the population's one all_to_all.
  mesh = _mesh(K)
  rng = np.random.default_rng(0)
  params = {  # D large enough that K x K all-reduces are small beside it
    'w': jnp.asarray(rng.normal(size=(64, 30)), jnp.float32),
    'b': jnp.asarray(rng.normal(size=(30,)), jnp.float32),
  }
  pop = jax.tree.map(
    lambda p: jnp.asarray(rng.normal(size=(K, *p.shape)), jnp.float32), params
  )
  tx = optax.chain(make(), optax.sgd(1e-2, momentum=0.9))

  def step(p, s, g, reshard=True):
    if reshard:
      g = population.shard_coordinates(g, 'data', mesh=mesh)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  want, _ = step(params, tx.init(params), pop, reshard=False)
  shardings = population.coordinate_shardings(params, mesh, 'data')
  sharded_params = jax.device_put(params, shardings)
  state = tx.init(sharded_params)
  g = jax.device_put(pop, NamedSharding(mesh, P('data')))
  compiled = jax.jit(step).lower(sharded_params, state, g).compile()
  got, _ = compiled(sharded_params, state, g)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    got,
    want,
  )
  for leaf, sharding in zip(
    jax.tree.leaves(got), jax.tree.leaves(shardings), strict=True
  ):
    assert leaf.sharding.is_equivalent_to(sharding, leaf.ndim)
  d_bytes = 4 * sum(x.size for x in jax.tree.leaves(params))
  # One all_to_all of D / N per device (plus K x K Gramian / K norms).
  assert _collective_bytes(compiled.as_text()) <= 1.1 * d_bytes


def test_scale_by_gsnr_three_settings():
  params = _params()
  group = registry.symmetric_population(_grads(params, 2), 8)
  group = jax.tree.map(
    lambda x: (
      x + 0.3 * jnp.sin(jnp.arange(x.size, dtype=x.dtype)).reshape(x.shape)
    ),
    group,
  )
  updates = _grads(params, 3)
  tx = variance.scale_by_gsnr()
  want = tx.update(updates, tx.init(params), params, group_grads=group)[0]
  tol = {'rtol': 1e-5, 'atol': 1e-6}

  mesh8 = _mesh(8)
  got = jax.jit(
    lambda g: tx.update(updates, tx.init(params), params, group_grads=g)[0]
  )(jax.device_put(group, NamedSharding(mesh8, P('data'))))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **tol), got, want)

  named = variance.scale_by_gsnr(
    axes=optax_ext.PopulationAxes(axis=None, axis_name='data')
  )
  got = jax.jit(
    jax.shard_map(
      lambda g: named.update(
        updates,
        named.init(params),
        params,
        group_grads=jax.tree.map(lambda x: x[0], g),
      )[0],
      mesh=mesh8,
      in_specs=P('data'),
      out_specs=P(),
    )
  )(group)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **tol), got, want)


# --- State sharding follows the params on a 2-D mesh ------------------------

ALL_ENTRIES = [pytest.param(e, id=e.name) for e in registry.REGISTRY]
# The odd-sized leaves cannot be placed unevenly by device_put: replicated.
SPECS = {
  'w': P('data', 'model'),
  'b': P('model'),
  **{k: P() for k in ('o', 'p', 's', 'q')},
}


@pytest.mark.parametrize('entry', ALL_ENTRIES)
def test_state_sharding_follows_params(entry):
  mesh = _mesh((2, 4), ('data', 'model'))
  params = _params()
  shardings = {k: NamedSharding(mesh, SPECS[k]) for k in params}
  params = {k: jax.device_put(v, shardings[k]) for k, v in params.items()}
  grads = _grads(params)
  g = entry.oracle_input(grads)
  if entry.takes_population:
    g = {
      k: jax.device_put(v, NamedSharding(mesh, P(None, *SPECS[k])))
      for k, v in g.items()
    }
  else:
    g = {k: jax.device_put(v, shardings[k]) for k, v in g.items()}
  tx = entry.optimizer(0.01)
  # Initialised eagerly, as optax and nnx.Optimizer do: under ``jax.jit`` a
  # constant output (a zero buffer) is placed on one device by JAX whatever
  # the transform (optax's own too); pass ``out_shardings`` there.
  state = tx.init(params)

  def step(p, s, g):
    u, s = tx.update(g, s, p, **entry.extra_args(grads))
    return optax.apply_updates(p, u), s

  new_params, new_state = jax.jit(step)(params, state, g)
  by_shape = {params[k].shape: shardings[k] for k in params}
  checked = 0
  for name, tree in (('init', state), ('after a step', new_state)):
    for path, leaf in jax.tree.leaves_with_path(tree):
      want = by_shape.get(getattr(leaf, 'shape', None))
      if want is None:
        continue
      checked += 1
      assert leaf.sharding.is_equivalent_to(want, leaf.ndim), (
        f'{entry.name} ({name}): state leaf {jax.tree_util.keystr(path)} '
        f'has sharding {leaf.sharding}, params have {want}'
      )
  for k in params:
    assert new_params[k].sharding.is_equivalent_to(shardings[k], 2), k
  del checked  # stateless transforms have nothing param-shaped to check


def test_gradalign_global_view_matches_stacked():
  """(a) for GradAlign; (b) and (c) are in ``test_gradalign.py``."""
  from optax_ext import alignment  # noqa: PLC0415

  rng = np.random.default_rng(4)
  batch = {
    'x': jnp.asarray(rng.normal(size=(8, 16, 3)), jnp.float32),
    'y': jnp.asarray(rng.normal(size=(8, 16)), jnp.float32),
  }
  params = jnp.asarray(rng.normal(size=3), jnp.float32)

  def loss(w, b):
    return jnp.mean((b['x'] @ w - b['y']) ** 2)

  want = alignment.gradalign_grad(loss, params, batch, beta=0.3)
  sharded = jax.device_put(batch, NamedSharding(_mesh(8), P('data')))
  got = jax.jit(lambda b: alignment.gradalign_grad(loss, params, b, beta=0.3))(
    sharded
  )
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


PER_DEVICE = [
  pytest.param(e, id=e.name)
  for e in registry.REGISTRY
  if e.kind in ('aggregator', 'population') and e.layouts
]


# Iterative solvers stopping at a tolerance (CAGrad's dual, Nash-MTL's
# Newton steps): the two compilations (per device, alone) round differently
# and the stopping step amplifies it.
SOLVER_RTOL = {'aggregate_by_cagrad': 5e-3, 'aggregate_by_nash_mtl': 5e-3}


@pytest.mark.parametrize('entry', PER_DEVICE)
def test_per_device_members_without_a_named_axis(entry, mesh):
  """Each device aggregates its own members (``axes=None``) under
  ``jax.shard_map``: the loops inside the rules (QP solvers, Weiszfeld,
  centered clipping, PCGrad's projections) carry values typed as varying
  over the mesh, and each device's update is the rule on its slice alone."""
  n = mesh.shape['data']
  rng = np.random.default_rng(0)
  k = registry.NUM_MEMBERS
  params = {'w': jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)}
  x = jnp.asarray(rng.normal(size=(n * 2 * k, 5)), jnp.float32)

  def loss(p, b):
    return jnp.mean(jnp.tanh(b @ p['w']) ** 2)

  tx = entry.aggregator()
  state = tx.init(params)

  def local(xb):
    p = population.vary_like(params, xb)
    pop = population.grad_population(loss, k)(p, xb)[1]
    out = tx.update(pop, state, p, **entry.extra_args(pop))[0]
    return jax.tree.map(lambda u: u[None], out)

  got = jax.jit(
    jax.shard_map(local, mesh=mesh, in_specs=P('data'), out_specs=P('data'))
  )(x)
  for i, xb in enumerate(jnp.split(x, n)):
    pop = population.grad_population(loss, k)(params, xb)[1]
    want = tx.update(pop, state, params, **entry.extra_args(pop))[0]
    jax.tree.map(
      lambda g, w, i=i: np.testing.assert_allclose(
        g[i], w, rtol=SOLVER_RTOL.get(entry.name, 2e-5), atol=1e-6
      ),
      got,
      want,
    )
