"""Memory-lean microbatch populations give the stacked population's update.

For every registry aggregator (and population transform, then the mean):
``tx.update(population.microbatches(loss, params, batch, K), ...)`` equals
``tx.update(grad_population(loss, K)(params, batch)[1], ...)`` over two
steps (the state is kept), or raises a clear error naming
``grad_population`` for the rules that need every member at a coordinate.
"""

import flax.nnx as nnx
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
import pytest

import optax_ext
from optax_ext import population
from optax_ext import robust
from tests import helpers
from tests import registry

K = registry.NUM_MEMBERS  # 4 microbatches
# Rules that need every member at a coordinate (or mix members in place):
# the registry's ``lean=False`` (NNA's default pivot is the coordinate
# median; a mean pivot is tested below).
UNSUPPORTED = set(registry.with_property(lambda p: not p.lean))
# The geometric median starts from the medoid on the lean path (the
# coordinate median on the stacked one), so both run to convergence
# (ftol = 0) and agree to float32 Weiszfeld accuracy.
OVERRIDES = {'aggregate_by_geometric_median': {'ftol': 0.0, 'maxiter': 500}}
LOOSE = {'aggregate_by_geometric_median': 1e-4}
ENTRIES = [
  pytest.param(e, id=e.name)
  for e in registry.REGISTRY
  if e.kind in ('aggregator', 'population') and e.layouts
]


def _problem(seed=0, nan_microbatch=None):
  rng = np.random.default_rng(seed)
  params = {
    'w': jnp.asarray(rng.normal(size=(6, 3)), jnp.float32),
    'b': jnp.asarray(rng.normal(size=(3,)), jnp.float32),
  }
  x = rng.normal(size=(4 * K, 6)).astype(np.float32)
  # Microbatches from different distributions: the members differ a lot.
  x *= np.repeat(np.arange(1, K + 1), 4)[:, None]
  if nan_microbatch is not None:
    x[4 * nan_microbatch] = np.nan
  batch = {'x': jnp.asarray(x), 'y': jnp.asarray(rng.normal(size=(4 * K, 3)))}

  def loss(p, b):
    h = jnp.tanh(b['x'] @ p['w'] + p['b'])
    return jnp.mean((h - b['y']) ** 2)

  return loss, params, batch


def _two_steps(tx, make_pop, params, steps=2):
  """The updates and the state after each of ``steps`` steps (from the
  second on, stateful rules start from a non-trivial state)."""
  state = tx.init(params)
  out = []
  for _ in range(steps):
    u, state = tx.update(make_pop(params), state, params)
    out.append((u, helpers.float_leaves(state)))
    params = jax.tree.map(lambda p, x: p - 0.1 * x, params, u)
  return out


def _lean_and_stacked(tx, loss, params, batch, steps):
  """:func:`_two_steps` on the lean and on the stacked population."""
  runs = (
    lambda q: population.microbatches(loss, q, batch, K),
    lambda q: population.grad_population(loss, K)(q, batch)[1],
  )
  return tuple(
    jax.jit(lambda p, f=f: _two_steps(tx, f, p, steps=steps))(params)
    for f in runs
  )


@pytest.mark.parametrize('entry', ENTRIES)
def test_lean_equals_stacked(entry):
  loss, params, batch = _problem()
  tx = entry.aggregator(**OVERRIDES.get(entry.name, {}))
  extra = entry.extra_args(params)
  assert not extra  # the registry's aggregators take no extra arguments
  lean = jax.jit(
    lambda p: _two_steps(
      tx, lambda q: population.microbatches(loss, q, batch, K), p
    )
  )
  if entry.name in UNSUPPORTED:
    with pytest.raises(ValueError, match='grad_population'):
      lean(params)
    return
  stacked = jax.jit(
    lambda p: _two_steps(
      tx, lambda q: population.grad_population(loss, K)(q, batch)[1], p
    )
  )
  rtol = LOOSE.get(entry.name, 1e-5)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 1e-1),
    lean(params),
    stacked(params),
  )


# The two clipped Gramians agree to 2e-7; CAGrad's projected-gradient dual
# (2e-5 of the objective in float32) moves its weights by ~3e-6 on that
# difference, and three steps through the params make it 5e-4 of the update.
CLIPPED_LOOSE = {'aggregate_by_cagrad': 1e-3}
GRAMIAN_ENTRIES = [
  p
  for p in ENTRIES
  if p.values[0].kind == 'aggregator' and p.values[0].name not in UNSUPPORTED
]


@pytest.mark.parametrize('entry', GRAMIAN_ENTRIES)
def test_lean_per_member_clipping_then_every_rule(entry):
  """``clip_each_by_global_norm`` (per-member scales on the lean path) then
  each rule, over three steps, updates and state: lean == stacked.

  Regression: no test combined them, and a transposed column of the scaled
  Gramian went unseen (lean vs stacked 1.8e-3 on values of 1.6e-2).
  """
  loss, params, batch = _problem()
  # Below most members' norms, so the scales differ from member to member.
  tx = optax.chain(
    robust.clip_each_by_global_norm(0.3),
    entry.aggregator(**OVERRIDES.get(entry.name, {})),
  )
  lean, stacked = _lean_and_stacked(tx, loss, params, batch, steps=3)
  rtol = {**LOOSE, **CLIPPED_LOOSE}.get(entry.name, 1e-5)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 1e-1),
    lean,
    stacked,
  )


@pytest.mark.parametrize('iterations', [2, 3])
def test_lean_centered_clipping_several_iterations_over_several_steps(
  iterations,
):
  """From the second step the state's centre is not 0, so the lean path's
  inner products with it matter. Regression: the only such test did one
  update from the zero state, where a dropped factor in them vanishes."""
  loss, params, batch = _problem(seed=4)
  tx = robust.aggregate_by_centered_clipping(0.05, iterations=iterations)
  lean, stacked = _lean_and_stacked(tx, loss, params, batch, steps=4)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    lean,
    stacked,
  )


@pytest.mark.parametrize(
  'make',
  [
    pytest.param(lambda: robust.aggregate_by_krum(num_byzantine=0), id='krum'),
    pytest.param(
      lambda: robust.aggregate_by_centered_clipping(0.05, iterations=3),
      id='centered_clipping_L3',
    ),
    pytest.param(
      lambda: robust.aggregate_by_geometric_median(ftol=0.0, maxiter=300),
      id='geometric_median',
    ),
    pytest.param(
      lambda: robust.aggregate_by_nearest_neighbors(
        1, pivot=lambda g, a: robust.geometric_median(g, a)[0]
      ),
      id='nna_geometric_median_pivot',
    ),
    pytest.param(
      lambda: optax.chain(
        robust.clip_each_by_global_norm(0.05), optax_ext.aggregate_by_mean()
      ),
      id='clip_each_then_mean',
    ),
  ],
)
def test_lean_robust_rules_with_a_nan_microbatch(make):
  # A microbatch whose gradient is NaN is handled as on the stacked path
  # (excluded, or a zero offset), and the update stays finite.
  loss, params, batch = _problem(nan_microbatch=2)
  tx = make()
  lean, _ = jax.jit(
    lambda p: tx.update(
      population.microbatches(loss, p, batch, K), tx.init(p), p
    )
  )(params)
  want, _ = jax.jit(
    lambda p: tx.update(
      population.grad_population(loss, K)(p, batch)[1], tx.init(p), p
    )
  )(params)
  for a, b in zip(jax.tree.leaves(lean), jax.tree.leaves(want), strict=True):
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


def test_lean_inside_nnx_optimizer():
  # nnx.Optimizer passes extra arguments through: the lean population goes
  # as `population=`, the positional grads are only param-shaped.
  model = nnx.Linear(6, 3, rngs=nnx.Rngs(0))
  tx = optax.chain(optax_ext.alignment.aggregate_by_upgrad(), optax.sgd(0.1))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  graphdef, _ = nnx.split(model)
  _, _, batch = _problem()

  def loss(params, b):
    return jnp.mean((nnx.merge(graphdef, params)(b['x']) - b['y']) ** 2)

  @nnx.jit
  def step(model, optimizer):
    params = nnx.state(model, nnx.Param)
    mb = population.microbatches(loss, nnx.as_pure(params), batch, K)
    optimizer.update(model, params, population=mb)

  reference = nnx.clone(model)
  pure = nnx.as_pure(nnx.state(reference, nnx.Param))
  stacked = population.grad_population(loss, K)(pure, batch)[1]
  want, _ = tx.update(stacked, tx.init(pure), pure)
  step(model, optimizer)
  got = nnx.as_pure(nnx.state(model, nnx.Param))
  jax.tree.map(
    lambda new, old, u: np.testing.assert_allclose(
      new, old + u, rtol=1e-5, atol=1e-7
    ),
    got,
    pure,
    want,
  )


def test_lean_streamed_rules_across_devices(mesh):
  # Microbatches on each device, members across devices: the streamed
  # statistics compose with the named axis (local scan, then psum).
  loss, params, batch = _problem()
  n = mesh.shape['data']
  big = jax.tree.map(lambda x: jnp.concatenate([x] * n), batch)
  k_total = K * n
  axes = population.PopulationAxes(axis=0, axis_name='data')
  for make in (
    optax_ext.aggregate_by_mean,
    optax_ext.variance.aggregate_by_gsnr,
    lambda axes=None: robust.aggregate_by_centered_clipping(0.05, axes=axes),
  ):
    tx = make(axes=axes)
    local = jax.jit(
      jax.shard_map(
        lambda b, tx=tx: tx.update(
          population.microbatches(loss, params, b, K), tx.init(params), params
        )[0],
        mesh=mesh,
        in_specs=P('data'),
        out_specs=P(),
      )
    )(big)
    ref = make()
    stacked = population.grad_population(loss, k_total)(params, big)[1]
    want = ref.update(stacked, ref.init(params), params)[0]
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
      local,
      want,
    )


def test_lean_gramian_rules_across_devices_name_the_ghost_population(mesh):
  """A Gramian rule needs every pair of members: microbatches on a named
  axis cannot give it (the ghost population can: test_ghost.py)."""
  loss, params, batch = _problem()
  n = mesh.shape['data']
  big = jax.tree.map(lambda x: jnp.concatenate([x] * n), batch)
  tx = robust.aggregate_by_krum(
    0, num_selected=2, axes=population.PopulationAxes(axis_name='data')
  )
  run = jax.shard_map(
    lambda b: tx.update(
      population.microbatches(loss, params, b, K), tx.init(params), params
    )[0],
    mesh=mesh,
    in_specs=P('data'),
    out_specs=P(),
  )
  with pytest.raises(ValueError, match=r'every pair.*population\.ghost'):
    jax.jit(run)(big)


def test_microbatches_validates():
  loss, params, batch = _problem()
  with pytest.raises(ValueError, match='not divisible'):
    population.microbatches(loss, params, batch, 3)
  with pytest.raises(ValueError, match='num_microbatches'):
    population.microbatches(loss, params, batch, 0)
  with pytest.raises(TypeError, match='population'):
    optax_ext.aggregate_by_mean().update(
      params, optax.EmptyState(), params, population=batch
    )
