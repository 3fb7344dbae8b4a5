"""Fault injection for every aggregator and population transform.

One member of ``K = 4`` is replaced by NaN, +Inf, 1e30, a sign flip x100 or
zeros. The documented behaviour (README, "Faults"):

* the robust aggregators (coordinate median, trimmed mean, geometric median,
  nearest-neighbour averaging, centered clipping, per-member clipping and
  DP-SGD's clipped mean, which drops non-finite members) stay
  finite and within the honest output's norm of it for every fault; the
  clipping rules clip a huge finite member (1e30) to their threshold, so it
  moves the output by at most ``2 tau / K``;
* every other aggregator propagates a non-finite member: NaN in gives NaN
  out, Inf gives a non-finite output; never a finite answer that hides it.

``optax.apply_if_finite`` composes with every registry entry: around
param-shaped optimisers, and after aggregators (which change the updates'
shape), where it sees the aggregate.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests import helpers
from tests import registry

# From the registry's properties (tests/registry.py, ``Properties``).
ROBUST = set(registry.with_property(lambda p: p.robust))
CLIPPED = {
  name: e.properties.clip_threshold
  for name, e in registry.with_property(lambda p: p.clip_threshold).items()
}
ENTRIES = [
  pytest.param(e, id=e.name)
  for e in registry.REGISTRY
  if e.kind in ('aggregator', 'population')
]


def _flat(tree):
  return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


@pytest.mark.standard_promotion  # some rules chain optax's Adam
@pytest.mark.parametrize('entry', ENTRIES)
def test_fault_is_bounded_or_propagated(entry):
  rng = np.random.default_rng(0)
  params = {
    'w': jnp.asarray(rng.normal(size=6), jnp.float32),
    'b': jnp.asarray([0.5, -1.0], jnp.float32),
  }
  grads = jax.tree.map(lambda p: 0.3 * p + 0.1, params)
  tx = entry.aggregator()
  extra = entry.extra_args(grads)
  pop = entry.population(grads)
  # One compilation for the honest run and the five faults.
  update = jax.jit(
    lambda g: _flat(tx.update(g, tx.init(params), params, **extra)[0])
  )
  honest = update(pop)
  for fault, corrupt in helpers.FAULTS.items():
    bad = jax.tree.map(lambda x, c=corrupt: x.at[0].set(c(x[0])), pop)
    out = update(bad)
    finite = bool(jnp.all(jnp.isfinite(out)))
    if fault == 'huge' and entry.name in CLIPPED:
      # A huge but finite member is clipped to the threshold tau, not
      # dropped: it moves the aggregate by at most 2 tau / K per iteration.
      tau = entry.kwargs[CLIPPED[entry.name]]
      k = jax.tree.leaves(pop)[0].shape[0]
      assert finite, (entry.name, fault, out)
      assert float(jnp.linalg.norm(out - honest)) <= 2 * tau / k * 1.0001
    elif (entry.name in ROBUST and fault != 'flip') or fault == 'zero':
      assert finite, (entry.name, fault, out)
      err = float(jnp.linalg.norm(out - honest) / jnp.linalg.norm(honest))
      bound = 1.0 if entry.name in ROBUST else 10.0
      assert err < bound, (entry.name, fault, err)
    elif fault == 'nan':
      assert bool(jnp.any(jnp.isnan(out))), (entry.name, 'hid a NaN', out)
    elif fault == 'inf':
      assert not finite, (entry.name, 'hid an Inf', out)


@pytest.mark.standard_promotion
@pytest.mark.parametrize(
  'entry', [p for p in ENTRIES if p.values[0].layouts]
)  # a wrapper's inner aggregator names itself
def test_empty_population_raises_naming_the_function(entry):
  """K = 0 is a trace-time ValueError naming the factory and the axis (it
  was a ZeroDivisionError from a reshape in the population core)."""
  trace, where = _tracer(entry, lambda x: x[:0])
  with pytest.raises(ValueError, match=rf'{where}.*empty.*axis 0'):
    trace()


def _tracer(entry, change):
  """Traces the entry's update on its population with ``change`` applied to
  every leaf; returns the trace and the name errors must carry."""
  params = {'w': jnp.ones(6), 'b': jnp.ones(2)}
  grads = jax.tree.map(lambda p: 0.3 * p, params)
  population = jax.tree.map(change, entry.population(grads))
  tx = entry.aggregator()
  extra = entry.extra_args(grads)

  def trace():
    jax.eval_shape(
      lambda g: tx.update(g, tx.init(params), params, **extra), population
    )

  return trace, entry.name.split('.')[-1]


@pytest.mark.standard_promotion
@pytest.mark.parametrize(
  'entry', [p for p in ENTRIES if p.values[0].layouts]
)  # a wrapper's inner aggregator names itself
def test_integer_population_raises_a_type_error(entry):
  """Regression: the mean of an int32 population truncated (members 0 and 1
  gave 0, an int update for float params) and the order statistics raised
  ``OverflowError: cannot convert float infinity to integer``."""
  trace, where = _tracer(entry, lambda x: jnp.round(10 * x).astype(jnp.int32))
  with pytest.raises(TypeError, match=rf'{where}:.*int32.*floating point'):
    trace()


PARAM_ENTRIES = [
  pytest.param(e, id=e.name)
  for e in registry.REGISTRY
  if e.kind not in ('aggregator', 'population')
]


@pytest.mark.parametrize('entry', PARAM_ENTRIES)
def test_apply_if_finite_composes(entry):
  """``optax.apply_if_finite`` around every param-shaped optimiser skips a
  NaN step without touching the inner state, then steps as the bare
  optimiser would."""
  params = helpers.params()
  grads = helpers.grads(params, 0)
  bad = jax.tree.map(lambda g: g.at[(0,) * g.ndim].set(jnp.nan), grads)
  extra = entry.extra_args(grads)
  tx = optax.apply_if_finite(entry.optimizer(0.1), max_consecutive_errors=3)
  step = jax.jit(lambda g, s, p, e: tx.update(g, s, p, **e))
  state = tx.init(params)
  u, skipped = step(bad, state, params, extra)
  for leaf in jax.tree.leaves(u):
    np.testing.assert_array_equal(leaf, 0.0)
  assert int(skipped.notfinite_count) == 1
  assert not bool(skipped.last_finite)
  jax.tree.map(
    np.testing.assert_array_equal, skipped.inner_state, state.inner_state
  )
  u, after = step(grads, skipped, params, extra)
  assert bool(after.last_finite) and int(after.notfinite_count) == 0
  bare = entry.optimizer(0.1)
  expected, _ = jax.jit(lambda g, s, p, e: bare.update(g, s, p, **e))(
    grads, bare.init(params), params, extra
  )
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
    u,
    expected,
  )


@pytest.mark.standard_promotion  # some rules chain optax's Adam
@pytest.mark.parametrize('entry', ENTRIES)
def test_apply_if_finite_after_an_aggregator(entry):
  """Aggregators change the updates' shape, so ``apply_if_finite`` goes
  after them and checks the aggregate: a NaN member either is filtered
  (robust rules: a finite step) or makes the aggregate non-finite, and the
  step is then skipped with the optimiser's state untouched."""
  params = helpers.params()
  grads = helpers.grads(params, 0)
  agg = entry.aggregator()
  tx = optax.chain(agg, optax.apply_if_finite(optax.sgd(0.1, momentum=0.9), 3))
  population = entry.oracle_input(grads)
  bad = jax.tree.map(lambda x: x.at[0].set(jnp.nan), population)
  extra = entry.extra_args(grads)
  step = jax.jit(lambda g, s, p, e: tx.update(g, s, p, **e))
  state = tx.init(params)
  aggregate, _ = jax.jit(lambda g, s, p, e: agg.update(g, s, p, **e))(
    bad, agg.init(params), params, extra
  )
  u, new_state = step(bad, state, params, extra)
  guarded = new_state[1]
  finite = all(
    bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(aggregate)
  )
  assert bool(guarded.last_finite) == finite
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(u))
  if not finite:
    for leaf in jax.tree.leaves(u):
      np.testing.assert_array_equal(leaf, 0.0)
    jax.tree.map(
      np.testing.assert_array_equal,
      guarded.inner_state,
      state[1].inner_state,
    )
  if entry.name in ROBUST:
    assert finite, entry.name
