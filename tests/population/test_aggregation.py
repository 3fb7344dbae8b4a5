"""Aggregators: equivalences with plain optax and the named-axis path."""

from flax import nnx
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
from optax.experimental import aggregating
import pytest

import optax_ext
from optax_ext import population as pop


def _population(k=8, seed=0):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return {
    'w': jax.random.normal(k1, (k, 3, 2)),
    'b': jax.random.normal(k2, (k, 2)),
  }


def _params():
  return {'w': jnp.ones((3, 2)), 'b': jnp.zeros(2)}


@pytest.mark.standard_promotion  # optax.adam's bias correction
def test_mean_then_adam_equals_adam_on_the_mean_gradient():
  tx = optax.chain(optax_ext.aggregate_by_mean(), optax.adam(1e-2))
  ref = optax.adam(1e-2)
  p1 = p2 = _params()
  s1, s2 = tx.init(p1), ref.init(p2)
  for seed in range(5):
    g = _population(seed=seed)
    u1, s1 = tx.update(g, s1, p1)
    u2, s2 = ref.update(pop.mean(g), s2, p2)
    p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), p1, p2)


def test_sum_is_k_times_mean():
  g = _population()
  u_sum, _ = optax_ext.aggregate_by_sum().update(g, optax.EmptyState())
  u_mean, _ = optax_ext.aggregate_by_mean().update(g, optax.EmptyState())
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, 8 * b, rtol=1e-5, atol=1e-6),
    u_sum,
    u_mean,
  )


@pytest.mark.standard_promotion  # optax.adam's bias correction
@pytest.mark.parametrize('local', [1, 2])
def test_named_path_equals_stacked_path(mesh, local):
  """Per-device populations under shard_map train like the stacked one."""
  n = 8 * local
  axes = optax_ext.PopulationAxes(
    axis=None if local == 1 else 0, axis_name='data'
  )
  named = optax.chain(optax_ext.aggregate_by_mean(axes), optax.adam(1e-2))
  stacked = optax.chain(optax_ext.aggregate_by_mean(), optax.adam(1e-2))

  def named_step(params, state, g):
    if local == 1:
      g = jax.tree.map(lambda x: x[0], g)
    u, state = named.update(g, state, params)
    return optax.apply_updates(params, u), state

  step = jax.jit(
    jax.shard_map(
      named_step,
      mesh=mesh,
      in_specs=(P(), P(), P('data')),
      out_specs=(P(), P()),
    )
  )
  p1 = p2 = _params()
  s1, s2 = named.init(p1), stacked.init(p2)
  for seed in range(3):
    g = _population(n, seed)
    p1, s1 = step(p1, s1, g)
    u, s2 = stacked.update(g, s2, p2)
    p2 = optax.apply_updates(p2, u)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7),
    p1,
    p2,
  )


def test_aggregator_is_an_optax_aggregator():
  agg = optax_ext.aggregate_by_mean()
  assert isinstance(agg, aggregating.Aggregator)
  assert isinstance(agg, optax.GradientTransformationExtraArgs)
  tx = aggregating.process(
    optax.identity(), agg, optax.sgd(0.1), aggregator_has_aux=False
  )
  g = _population()
  u, _ = tx.update(g, tx.init(_params()), _params())
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, -0.1 * b, rtol=1e-6),
    u,
    pop.mean(g),
  )


def test_param_shaped_input_is_rejected_with_shapes():
  tx = optax.chain(optax.scale(2.0), optax_ext.aggregate_by_mean())
  params = _params()
  with pytest.raises(
    ValueError,
    match=r"aggregate_by_mean: population leaf \['b'\] has shape \(2,\) but "
    r'params have shape \(2,\); with members on axis 0 the population leaf '
    r'must have shape \(K, 2\)\. It arrived param-shaped: something before '
    r'the aggregator reduced it.*The aggregator must come first',
  ):
    tx.update(params, tx.init(params), params)


def test_structure_mismatch_is_rejected():
  agg = optax_ext.aggregate_by_mean()
  with pytest.raises(ValueError, match='different tree structures'):
    agg.update({'w': jnp.zeros((4, 3, 2))}, agg.init(None), _params())


def test_population_without_params_is_checked_for_consistency():
  agg = optax_ext.aggregate_by_sum()
  with pytest.raises(ValueError, match='aggregate_by_sum: .*disagree'):
    agg.update({'a': jnp.zeros((2, 1)), 'b': jnp.zeros((3, 1))}, None)


def test_axes_type_is_checked():
  with pytest.raises(TypeError, match='`axes` must be an optax_ext'):
    optax_ext.aggregate_by_mean('data')


def test_dtype_of_updates_is_the_population_dtype():
  g = jax.tree.map(lambda x: x.astype(jnp.bfloat16), _population())
  u, _ = optax_ext.aggregate_by_mean().update(g, optax.EmptyState())
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(u))


def test_nan_member_propagates():
  """The mean is not robust: a NaN member makes the update NaN (documented)."""
  g = _population()
  g = jax.tree.map(lambda x: x.at[3].set(jnp.nan), g)
  u, _ = optax_ext.aggregate_by_mean().update(g, optax.EmptyState())
  assert all(bool(jnp.all(jnp.isnan(x))) for x in jax.tree.leaves(u))
  # optax.apply_if_finite composes (after the aggregator) and skips the step.
  tx = optax.chain(
    optax_ext.aggregate_by_mean(), optax.apply_if_finite(optax.sgd(0.1), 3)
  )
  params = _params()
  state = tx.init(params)
  u, state = tx.update(g, state, params)
  assert all(bool(jnp.all(x == 0)) for x in jax.tree.leaves(u))
  assert int(state[1].notfinite_count) == 1


def test_nnx_optimizer_with_per_example_population():
  model = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
  tx = optax.chain(optax_ext.aggregate_by_mean(), optax.sgd(0.1))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  graphdef, params = nnx.split(model, nnx.Param)
  x = jnp.arange(12.0).reshape(4, 3) / 12
  y = jnp.ones((4, 1))

  def loss(p, xb, yb):
    return jnp.mean((nnx.merge(graphdef, p)(xb) - yb) ** 2)

  before = jax.tree.map(jnp.copy, params)
  per_example = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(
    nnx.state(model, nnx.Param), x[:, None], y[:, None]
  )
  optimizer.update(model, per_example)
  expected = jax.tree.map(
    lambda p, g: p - 0.1 * g, before, jax.grad(loss)(before, x, y)
  )
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
    nnx.state(model, nnx.Param),
    expected,
  )
