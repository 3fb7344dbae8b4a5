"""Robust family (spec part B): golden values, faults, properties, paths."""

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
import pytest

from optax_ext import population as pop
from optax_ext import robust as R
from tests import helpers

SPEC = jnp.array([[0.0], [1.0], [2.5], [3.0], [100.0]])


def _agg(tx, g, state=None):
  params = jax.tree.map(lambda x: jnp.zeros(x.shape[1:], x.dtype), g)
  return tx.update(g, tx.init(params) if state is None else state, params)


# --- The spec's test vectors -------------------------------------------------


def test_spec_vectors():
  np.testing.assert_allclose(
    _agg(R.aggregate_by_coordinate_median(), SPEC)[0], [2.5]
  )
  np.testing.assert_allclose(
    _agg(R.aggregate_by_trimmed_mean(1), SPEC)[0], [6.5 / 3], rtol=1e-6
  )
  np.testing.assert_allclose(_agg(R.aggregate_by_krum(1), SPEC)[0], [2.5])
  np.testing.assert_allclose(
    _agg(R.aggregate_by_krum(1, num_selected=4), SPEC)[0], [1.625]
  )
  z, _ = R.geometric_median(jnp.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]]))
  np.testing.assert_allclose(z, [1.0, 0.0], atol=1e-4)
  even = jnp.array([[1.0], [2.0], [10.0], [20.0]])
  np.testing.assert_allclose(
    _agg(R.aggregate_by_coordinate_median(), even)[0], [6.0]
  )


def test_krum_scores_follow_the_spec():
  # Scores 7.25, 3.25, 2.5, 4.25, ~18915 (f = 1: K - f - 2 = 2 neighbours).
  from optax_ext._src import population as pop_lib  # noqa: PLC0415

  d = pop_lib.squared_distances(SPEC, pop.PopulationAxes())
  scores = jnp.sum(jnp.sort(d, axis=1)[:, :2], axis=1)
  np.testing.assert_allclose(scores[:4], [7.25, 3.25, 2.5, 4.25])
  np.testing.assert_allclose(scores[4], 97.0**2 + 97.5**2, rtol=1e-6)


def test_geometric_median_reaches_the_float64_optimum():
  rng = np.random.default_rng(0)
  pts = rng.normal(size=(7, 3)).astype(np.float32)
  z, info = R.geometric_median(jnp.asarray(pts), nu=1e-8, ftol=1e-10)
  # Float64 Weiszfeld run to convergence as the reference optimum.
  p = pts.astype(np.float64)
  ref = p.mean(0)
  for _ in range(5000):
    w = 1.0 / np.maximum(np.linalg.norm(p - ref, axis=1), 1e-12)
    ref = (w[:, None] * p).sum(0) / w.sum()
  objective = lambda y: np.linalg.norm(p - y, axis=1).sum()
  # ftol below float32 resolution: the loop stops when the float32 objective
  # stops moving, i.e. within a few ulps of the optimum; the point itself is
  # then accurate to ~sqrt(eps) (the objective is flat at the minimum).
  gap = objective(np.asarray(z, np.float64)) - objective(ref)
  assert 0 <= gap < 1e-6 * objective(ref), gap
  np.testing.assert_allclose(z, ref, atol=2e-3)
  assert 1 <= int(info.num_iterations) <= 100


# --- Properties --------------------------------------------------------------

AGGREGATORS = {
  'median': lambda: R.aggregate_by_coordinate_median(),
  'trimmed': lambda: R.aggregate_by_trimmed_mean(2),
  'krum': lambda: R.aggregate_by_krum(2),
  'multi_krum': lambda: R.aggregate_by_krum(2, num_selected=5),
  'geomed': lambda: R.aggregate_by_geometric_median(ftol=1e-8),
  'nna': lambda: R.aggregate_by_nearest_neighbors(2),
  # tau on the scale of the honest spread: f corrupted members move the
  # aggregate by at most tau * f / K per iteration.
  'cc': lambda: R.aggregate_by_centered_clipping(0.5, iterations=3),
}


def _population(k=9, seed=0, spread=0.1):
  rng = np.random.default_rng(seed)
  center = {'w': rng.normal(size=(3, 2)), 'b': rng.normal(size=(2,))}
  return jax.tree.map(
    lambda c: jnp.asarray(
      c[None] + spread * rng.normal(size=(k, *c.shape)), jnp.float32
    ),
    center,
  )


def _stateless(name):
  tx = AGGREGATORS[name]()
  return lambda g: _agg(tx, g)[0]


@pytest.mark.parametrize('name', sorted(AGGREGATORS))
def test_permutation_invariance(name):
  perm = np.random.default_rng(1).permutation(9)
  helpers.assert_permutation_invariant(
    _stateless(name), _population(), perm, rtol=1e-5, atol=1e-6
  )


@pytest.mark.parametrize('name', sorted(AGGREGATORS))
def test_identical_members_are_returned(name):
  tx = AGGREGATORS[name]()

  def aggregate(g):
    u, state = _agg(tx, g)
    if name == 'cc':  # centered clipping moves from its previous aggregate
      for _ in range(20):
        u, state = _agg(tx, g, state)
    return u

  one = jax.tree.map(lambda x: x[0], _population(1))
  helpers.assert_returns_identical_members(
    aggregate, one, 9, rtol=1e-5, atol=1e-6
  )


@pytest.mark.parametrize(
  'name', ['median', 'trimmed', 'krum', 'multi_krum', 'nna']
)
def test_positive_homogeneity(name):
  helpers.assert_homogeneous(
    _stateless(name), _population(), 3.0, rtol=1e-5, atol=1e-5
  )


# --- Three paths: stacked, vmap(axis_name), shard_map on 8 devices -----------


@pytest.mark.parametrize('name', sorted(AGGREGATORS))
def test_named_paths_match_stacked(name, mesh):
  g = _population(8, seed=2)
  params = jax.tree.map(lambda x: jnp.zeros(x.shape[1:]), g)
  want, _ = AGGREGATORS[name]().update(
    g, AGGREGATORS[name]().init(params), params
  )
  axes = pop.PopulationAxes(axis=None, axis_name='i')

  def make(ax):
    factory = {
      'median': lambda: R.aggregate_by_coordinate_median(ax),
      'trimmed': lambda: R.aggregate_by_trimmed_mean(2, ax),
      'krum': lambda: R.aggregate_by_krum(2, axes=ax),
      'multi_krum': lambda: R.aggregate_by_krum(2, 5, ax),
      'geomed': lambda: R.aggregate_by_geometric_median(ftol=1e-8, axes=ax),
      'nna': lambda: R.aggregate_by_nearest_neighbors(2, axes=ax),
      'cc': lambda: R.aggregate_by_centered_clipping(0.5, 3, ax),
    }[name]
    return factory()

  # Weiszfeld's stopping test sees rounding-level differences between the
  # paths (psum vs local sums), so it may stop an iteration apart.
  tol = (
    {'rtol': 1e-4, 'atol': 2e-5}
    if name == 'geomed'
    else {'rtol': 1e-5, 'atol': 1e-6}
  )
  tx = make(axes)
  got = jax.vmap(
    lambda m: tx.update(m, tx.init(params), params)[0], axis_name='i'
  )(g)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a[0], b, **tol),
    got,
    want,
  )
  tx = make(pop.PopulationAxes(axis=None, axis_name='data'))
  got = jax.jit(
    jax.shard_map(
      lambda m: tx.update(
        jax.tree.map(lambda x: x[0], m), tx.init(params), params
      )[0],
      mesh=mesh,
      in_specs=P('data'),
      out_specs=P(),
    )
  )(g)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, **tol),
    got,
    want,
  )


# --- Faults: f corrupted members out of K = 9 ------------------------------


def _corrupt(g, f, kind, seed=3):
  honest_mean = jax.tree.map(lambda x: x[f:].mean(0), g)
  rng = np.random.default_rng(seed)

  def one(x, m):
    bad = {
      'nan': jnp.full_like(x[:f], jnp.nan),
      'inf': jnp.full_like(x[:f], jnp.inf),
      'huge': jnp.full_like(x[:f], 1e30),
      'sign_flip': -10.0 * x[:f],
      'zeros': jnp.zeros_like(x[:f]),
      # ALIE: mean - z * std of the honest members, z ~ 1 (hides in the
      # spread); IPM: -eps * honest mean.
      'alie': jnp.broadcast_to(m - 1.0 * x[f:].std(0), x[:f].shape),
      'ipm': jnp.broadcast_to(-0.5 * m, x[:f].shape),
      'random': jnp.asarray(100 * rng.normal(size=x[:f].shape), x.dtype),
    }[kind]
    return x.at[:f].set(bad)

  return jax.tree.map(one, g, honest_mean), honest_mean


FAULTS = ['nan', 'inf', 'huge', 'sign_flip', 'zeros', 'alie', 'ipm', 'random']
# Tolerated corrupted members out of K = 9 (the breakdown points).
TOLERATED = {
  'median': 4,
  'trimmed': 2,
  'krum': 2,
  'multi_krum': 2,
  'geomed': 4,
  'nna': 2,
  'cc': 2,
}


@pytest.mark.parametrize('kind', FAULTS)
@pytest.mark.parametrize('name', sorted(AGGREGATORS))
def test_corrupted_members_within_the_breakdown_point(name, kind):
  """Finite output within a few honest spreads of the honest mean."""
  g, honest = _corrupt(_population(9, spread=0.1), TOLERATED[name], kind)
  tx = AGGREGATORS[name]()
  u, state = _agg(tx, g)
  if name == 'cc':  # centered clipping converges over steps (state = v)
    params = jax.tree.map(jnp.zeros_like, honest)
    update = jax.jit(tx.update)
    for _ in range(30):
      u, state = update(g, state, params)
  for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(honest), strict=True):
    assert bool(jnp.all(jnp.isfinite(a))), (name, kind, a)
    # honest members have std 0.1 per coordinate; allow ~ f/K-scale shifts.
    assert float(jnp.max(jnp.abs(a - b))) < 0.6, (name, kind, a - b)


def test_mean_breaks_down_and_median_beyond_half():
  """Documented behaviour at and above the breakdown point."""
  g, honest = _corrupt(_population(9), 1, 'huge')
  from optax_ext import aggregate_by_mean

  u, _ = _agg(aggregate_by_mean(), g)
  assert float(jnp.max(jnp.abs(u['w']))) > 1e28  # one member breaks the mean
  g, honest = _corrupt(_population(9), 5, 'huge')  # f = 5 > (9 - 1) / 2
  u, _ = _agg(R.aggregate_by_coordinate_median(), g)
  assert float(jnp.min(u['w'])) == float(np.float32(1e30))  # broken


def test_shape_preconditions_are_trace_time_errors():
  g = _population(5)
  with pytest.raises(ValueError, match=r'needs K >= 7 members, got K=5'):
    _agg(R.aggregate_by_trimmed_mean(3), g)
  with pytest.raises(ValueError, match=r'K > 2 \* num_byzantine \+ 2 = 6'):
    jax.jit(lambda x: _agg(R.aggregate_by_krum(2), x)[0])(g)
  with pytest.raises(ValueError, match=r'`num_selected` must be <= K - '):
    _agg(R.aggregate_by_krum(1, num_selected=5), g)
  with pytest.raises(ValueError, match=r'`num_byzantine` must be < K=5'):
    _agg(R.aggregate_by_nearest_neighbors(5), g)


@pytest.mark.parametrize(
  'factory,kwargs,match',
  [
    (
      R.aggregate_by_trimmed_mean,
      {'num_trim': -1},
      r'`num_trim` must be an '
      r'integer >= 0, got -1',
    ),
    (
      R.aggregate_by_krum,
      {'num_byzantine': 1.5},
      r'`num_byzantine` must be an '
      r'integer',
    ),
    (R.aggregate_by_geometric_median, {'nu': 0.0}, r'`nu` must be > 0.0'),
    (
      R.aggregate_by_geometric_median,
      {'maxiter': 0},
      r'`maxiter` must be an '
      r'integer >= 1',
    ),
    (
      R.aggregate_by_centered_clipping,
      {'threshold': -1.0},
      r'`threshold` must be > 0.0, got -1.0',
    ),
    (
      R.aggregate_by_centered_clipping,
      {'threshold': 1.0, 'iterations': 0},
      r'`iterations` must be an integer >= 1',
    ),
    (
      R.clip_each_by_global_norm,
      {'max_norm': 0.0},
      r'`max_norm` must be > 0.0',
    ),
  ],
)
def test_validation(factory, kwargs, match):
  with pytest.raises((ValueError, TypeError), match=match):
    factory(**kwargs)


# --- Centered clipping and per-member clipping ------------------------------


def test_centered_clipping_within_radius_is_the_mean():
  g = _population(5, spread=0.1)
  tx = R.aggregate_by_centered_clipping(threshold=100.0)
  u, state = _agg(tx, g)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b.mean(0), rtol=1e-5), u, g
  )
  np.testing.assert_allclose(state.center['w'], u['w'])


def test_centered_clipping_one_member_is_median_tracking():
  stream = [
    jnp.array([[3.0, 4.0]]),
    jnp.array([[0.0, 0.0]]),
    jnp.array([[10.0, 0.0]]),
  ]
  tx = R.aggregate_by_centered_clipping(threshold=1.0)
  state, m = None, np.zeros(2)
  for x in stream:
    u, state = _agg(tx, x, state)
    d = np.asarray(x[0]) - m
    m = m + d * min(1.0, 1.0 / np.linalg.norm(d))
    np.testing.assert_allclose(u, m, rtol=1e-6)


def test_clip_each_by_global_norm():
  g = {
    'a': jnp.array([[3.0], [0.3], [jnp.nan]]),
    'b': jnp.array([[4.0], [0.4], [1.0]]),
  }
  tx = R.clip_each_by_global_norm(1.0)
  out, _ = tx.update(g, tx.init(None))
  np.testing.assert_allclose(out['a'][:, 0], [0.6, 0.3, 0.0], rtol=1e-6)
  np.testing.assert_allclose(out['b'][:, 0], [0.8, 0.4, 0.0], rtol=1e-6)
  # Before an aggregator: per-example clipping then the mean.
  from optax_ext import aggregate_by_mean

  tx = optax.chain(R.clip_each_by_global_norm(1.0), aggregate_by_mean())
  params = {'a': jnp.zeros(1), 'b': jnp.zeros(1)}
  u, _ = tx.update(g, tx.init(params), params)
  np.testing.assert_allclose(u['a'], [0.3], rtol=1e-6)


# --- The clipping bias (Koloskova et al.) ----------------------------------


@functools.partial(jax.jit, static_argnums=0)
def _fixed_point(c):
  """Solve E[clip_c(x + xi)] = 0 by bisection, xi = -1 w.p. 0.9, +9 w.p. 0.1."""

  def e(x):
    return 0.9 * jnp.clip(x - 1.0, -c, c) + 0.1 * jnp.clip(x + 9.0, -c, c)

  def body(_, lohi):
    lo, hi = lohi
    mid = 0.5 * (lo + hi)
    pos = e(mid) > 0
    return jnp.where(pos, lo, mid), jnp.where(pos, mid, hi)

  lo, hi = jax.lax.fori_loop(0, 60, body, (jnp.float32(-5), jnp.float32(5)))
  return 0.5 * (lo + hi)


@pytest.mark.parametrize(
  'c,want', [(0.5, 0.944), (1, 0.889), (2, 0.778), (5, 0.444), (10, 0.0)]
)
def test_clipping_bias_fixed_points(c, want):
  """f = x^2/2 with skewed noise: clipped SGD settles at 1 - c/9 (c < 9),
  away from the minimiser 0 of the expected loss, towards -median = 1."""
  np.testing.assert_allclose(float(_fixed_point(float(c))), want, atol=1e-3)


def test_median_estimator_settles_at_the_median_and_mean_at_the_mean():
  rng = np.random.default_rng(0)
  xs = jnp.asarray(np.where(rng.random(4000) < 0.9, -1.0, 9.0), jnp.float32)[
    :, None, None
  ]
  # Median tracking = centered clipping with one member, small threshold.
  tx = R.aggregate_by_centered_clipping(threshold=0.01)
  params = jnp.zeros(1)

  def step(state, x):
    u, state = tx.update(x, state, params)
    return state, u

  _, us = jax.jit(lambda xs: jax.lax.scan(step, tx.init(params), xs))(xs)
  np.testing.assert_allclose(float(us[-1, 0]), -1.0, atol=0.05)  # median
  # The mean estimator (an EMA: SPP on the squared loss) settles near 0.
  ema = jax.lax.scan(
    lambda m, x: (0.99 * m + 0.01 * x[0, 0], None), jnp.float32(0.0), xs
  )[0]
  assert abs(float(ema)) < 0.8


# --- Median tracking and AutoClip (B3, B7) ---------------------------------


def test_median_tracking_first_step_is_clipped_sgd():
  g = {'a': jnp.array([3.0, 4.0]), 'b': jnp.array([12.0])}
  tx = R.scale_by_median_tracking(threshold=2.0)
  u, _ = tx.update(g, tx.init(g))
  ref, _ = optax.clip_by_global_norm(2.0).update(g, optax.EmptyState())
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), u, ref)
  tx = R.scale_by_median_tracking(threshold=0.5, norm='coordinate')
  u, _ = tx.update(g, tx.init(g))
  np.testing.assert_allclose(u['a'], [0.5, 0.5])


def test_median_tracking_equals_centered_clipping_with_one_member():
  rng = np.random.default_rng(1)
  xs = jnp.asarray(rng.normal(size=(20, 3)) * 3, jnp.float32)
  mt = R.scale_by_median_tracking(threshold=1.0)
  cc = R.aggregate_by_centered_clipping(threshold=1.0)
  s1, s2 = mt.init(xs[0]), cc.init(xs[0])
  for x in xs:
    u1, s1 = mt.update(x, s1)
    u2, s2 = cc.update(x[None], s2, x)
    np.testing.assert_allclose(u1, u2, rtol=1e-5, atol=1e-6)


def test_median_tracking_settles_at_the_median_of_a_skewed_stream():
  rng = np.random.default_rng(0)
  xs = jnp.asarray(np.where(rng.random(4000) < 0.9, -1.0, 9.0), jnp.float32)[
    :, None
  ]
  tx = R.scale_by_median_tracking(threshold=0.01)

  def step(state, x):
    u, state = tx.update(x, state)
    return state, u

  _, us = jax.jit(lambda xs: jax.lax.scan(step, tx.init(xs[0]), xs))(xs)
  np.testing.assert_allclose(float(us[-1, 0]), -1.0, atol=0.05)


def _autoclip_run(norms, **kwargs):
  tx = R.clip_by_norm_percentile(**kwargs)
  state = tx.init(jnp.zeros(1))
  outs = []
  for n in norms:
    u, state = tx.update(jnp.array([n], jnp.float32), state)
    outs.append(float(u[0]))
  return outs, state


def test_autoclip_percentiles_match_numpy_and_step_one_never_clips():
  norms = [3.0, 1.0, 4.0, 1.0, 5.0]
  outs, state = _autoclip_run(norms, percentile=10.0)
  assert outs[0] == 3.0  # the current norm is in the history
  np.testing.assert_allclose(outs[-1], np.percentile(norms, 10), rtol=1e-6)
  outs, _ = _autoclip_run(norms, percentile=50.0)
  np.testing.assert_allclose(outs[-1], np.percentile(norms, 50), rtol=1e-6)
  outs, _ = _autoclip_run(norms, percentile=10.0, include_current=False)
  assert outs[0] == 3.0


def test_autoclip_ring_wraps_and_skips_nan():
  outs, state = _autoclip_run(
    [1.0, 2.0, 3.0, 10.0, 20.0], percentile=0.0, history_size=3
  )
  np.testing.assert_allclose(state.norms, [10.0, 20.0, 3.0])
  assert outs[-1] == 3.0  # min of the last three norms (3, 10, 20)
  outs, state = _autoclip_run([2.0, float('nan'), 4.0], percentile=100.0)
  assert int(state.count) == 2
  np.testing.assert_allclose(state.norms[:2], [2.0, 4.0])
  assert np.isnan(outs[1])  # the NaN step propagates (apply_if_finite)


@pytest.mark.parametrize('c,want', [(1.0, 0.889), (5.0, 0.444)])
def test_frozen_threshold_autoclip_has_the_clipping_bias(c, want):
  """With its threshold frozen at c, clip_by_norm_percentile is clip_c, and
  SGD on f = x^2/2 with the skewed noise settles at the same biased point."""
  tx = R.clip_by_norm_percentile(
    percentile=0.0, history_size=1, include_current=False
  )
  _, frozen = tx.update(jnp.array([c]), tx.init(jnp.zeros(1)))
  clip = jax.jit(lambda g: tx.update(g[None], frozen)[0][0])

  def expected_clipped(x):
    return 0.9 * clip(x - 1.0) + 0.1 * clip(x + 9.0)

  lo, hi = -5.0, 5.0
  for _ in range(40):  # bisection on the (increasing) expected update
    mid = 0.5 * (lo + hi)
    lo, hi = (lo, mid) if float(expected_clipped(mid)) > 0 else (mid, hi)
  np.testing.assert_allclose(0.5 * (lo + hi), want, atol=1e-3)


# What happens one corrupted member beyond each configuration's tolerance
# (K = 9, finite sign-flip x10 attack), measured and kept as documentation:
# order statistics, NNA and the geometric median break (the attackers become
# the median / majority), Krum still holds (K = 9 > 2 * 3 + 2 is still met,
# its guarantee is about the true f), centered clipping stays bounded by
# tau * f / K per iteration.
BEYOND = {
  'median': 'broken',
  'trimmed': 'broken',
  'nna': 'broken',
  'geomed': 'broken',
  'krum': 'holds',
  'multi_krum': 'holds',
  'cc': 'holds',
}


@pytest.mark.parametrize('name', sorted(AGGREGATORS))
def test_one_beyond_the_breakdown_point(name):
  f = TOLERATED[name] + 1
  g, honest = _corrupt(_population(9, spread=0.1), f, 'sign_flip')
  tx = AGGREGATORS[name]()
  u, state = _agg(tx, g)
  if name == 'cc':
    params = jax.tree.map(jnp.zeros_like, honest)
    update = jax.jit(tx.update)
    for _ in range(30):
      u, state = update(g, state, params)
  err = max(
    float(jnp.max(jnp.abs(a - b)))
    for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(honest), strict=True)
  )
  if BEYOND[name] == 'broken':
    assert err > 1.0, (name, err)
  else:
    assert err < 0.6, (name, err)


def test_values_whose_norm_overflows_count_as_non_finite():
  """1e30 entries overflow the float32 norm: norm-based rules drop them."""
  g, honest = _corrupt(_population(9, spread=0.1), 5, 'huge')  # a majority
  u, _ = _agg(R.aggregate_by_geometric_median(), g)
  assert float(jnp.max(jnp.abs(u['w'] - honest['w']))) < 0.1


BOTH = {
  'median': lambda ax: R.aggregate_by_coordinate_median(ax),
  'trimmed': lambda ax: R.aggregate_by_trimmed_mean(2, ax),
  'krum': lambda ax: R.aggregate_by_krum(2, axes=ax),
  'multi_krum': lambda ax: R.aggregate_by_krum(2, 5, ax),
  'geomed': lambda ax: R.aggregate_by_geometric_median(ftol=1e-8, axes=ax),
  'nna': lambda ax: R.aggregate_by_nearest_neighbors(2, axes=ax),
  'cc': lambda ax: R.aggregate_by_centered_clipping(0.5, 3, ax),
}


@pytest.mark.parametrize('name', sorted(BOTH))
def test_local_stacks_on_a_named_axis_match_stacked(name, mesh):
  """Both layouts at once: 3 members on each of the 8 devices, K = 24."""
  g = _population(24, seed=5)
  params = jax.tree.map(lambda x: jnp.zeros(x.shape[1:]), g)
  ref = BOTH[name](None)
  want, _ = ref.update(g, ref.init(params), params)
  tx = BOTH[name](pop.PopulationAxes(axis=0, axis_name='data'))
  got = jax.jit(
    jax.shard_map(
      lambda m: tx.update(m, tx.init(params), params)[0],
      mesh=mesh,
      in_specs=P('data'),
      out_specs=P(),
    )
  )(g)
  tol = (
    {'rtol': 1e-4, 'atol': 2e-5}
    if name == 'geomed'
    else {'rtol': 1e-5, 'atol': 1e-6}
  )
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **tol), got, want)


def test_nearest_neighbour_mixing():
  members = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [40.0, -40.0]])
  tx = R.mix_by_nearest_neighbors(num_byzantine=1)
  out, _ = tx.update(members, tx.init(jnp.zeros(2)))
  honest_mean = jnp.mean(members[:3], 0)
  for i in range(3):  # honest members mix only honest ones
    np.testing.assert_allclose(out[i], honest_mean, rtol=1e-6)
  # f = 0: everyone becomes the mean; f = K - 1: the identity.
  zero = R.mix_by_nearest_neighbors(0)
  np.testing.assert_allclose(
    zero.update(members, zero.init(jnp.zeros(2)))[0],
    jnp.broadcast_to(jnp.mean(members, 0), members.shape),
    rtol=1e-6,
  )
  ident = R.mix_by_nearest_neighbors(3)
  np.testing.assert_array_equal(
    ident.update(members, ident.init(jnp.zeros(2)))[0], members
  )
  # A NaN member is never mixed in and is passed through.
  bad = members.at[3, 0].set(jnp.nan)
  out, _ = tx.update(bad, tx.init(jnp.zeros(2)))
  np.testing.assert_allclose(out[:3], jnp.broadcast_to(honest_mean, (3, 2)))
  assert bool(jnp.isnan(out[3, 0]))
  # Chained with a robust aggregator.
  chain = optax.chain(
    R.mix_by_nearest_neighbors(1), R.aggregate_by_coordinate_median()
  )
  agg, _ = chain.update(members, chain.init(jnp.zeros(2)))
  np.testing.assert_allclose(agg, honest_mean, rtol=1e-6)
  with pytest.raises(ValueError, match='`num_byzantine` must be < K=4'):
    R.mix_by_nearest_neighbors(4).update(members, tx.init(jnp.zeros(2)))


def test_nearest_neighbour_mixing_paths(mesh):
  members = jnp.asarray(
    np.random.default_rng(0).normal(size=(8, 5)), jnp.float32
  )
  ref, _ = R.mix_by_nearest_neighbors(2).update(members, optax.EmptyState())
  named = pop.PopulationAxes(axis=None, axis_name='data')
  tx = R.mix_by_nearest_neighbors(2, axes=named)
  out = jax.jit(
    jax.shard_map(
      lambda g: tx.update(g[0], optax.EmptyState())[0][None],
      mesh=mesh,
      in_specs=P('data'),
      out_specs=P('data'),
    )
  )(members)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
  moved = R.mix_by_nearest_neighbors(2, axes=pop.PopulationAxes(axis=1))
  got, _ = moved.update(members.T, optax.EmptyState())
  np.testing.assert_allclose(got.T, ref, rtol=1e-6)


def test_monna_peer_to_peer_with_byzantine_nodes():
  """MoNNA on a named axis: honest nodes agree and reach the honest optimum."""
  k, f = 8, 2
  centres = jnp.asarray(
    np.random.default_rng(0).normal(size=(k, 3)), jnp.float32
  )
  honest = jnp.arange(k) >= f  # nodes 0 and 1 are Byzantine
  nodes = pop.PopulationAxes(axis=None, axis_name='nodes')
  local = optax.chain(optax.ema(0.9, debias=False), optax.scale(-0.2))

  def node_step(carry, _):
    params, state, centre, is_honest = carry
    grads = params - centre  # gradient of |params - centre|^2 / 2
    updates, state = local.update(grads, state)
    params = optax.apply_updates(params, updates)
    params = jnp.where(is_honest, params, 1e3 * jnp.ones_like(params))
    params = R.nna_mix(params, f, nodes)
    return (params, state, centre, is_honest), None

  def run(centre, is_honest):
    params = jnp.zeros(3)
    carry = (params, local.init(params), centre, is_honest)
    (params, *_), _ = jax.lax.scan(node_step, carry, length=200)
    return params

  final = jax.jit(jax.vmap(run, axis_name='nodes'))(centres, honest)
  target = jnp.mean(centres[f:], 0)
  for i in range(f, k):
    np.testing.assert_allclose(final[i], target, atol=0.3)
  spread = jnp.max(jnp.abs(final[f:] - jnp.mean(final[f:], 0)))
  assert float(spread) < 0.3
  # nna_mix on a named axis equals NNM on the stack.
  stack = centres.at[0].set(1e3)
  ref, _ = R.mix_by_nearest_neighbors(f).update(stack, optax.EmptyState())
  got = jax.vmap(lambda m: R.nna_mix(m, f, nodes), axis_name='nodes')(stack)
  np.testing.assert_allclose(got, ref, rtol=1e-6)


def _huber(z, delta):
  n = np.linalg.norm(z)
  return 0.5 * n**2 if n <= delta else delta * (n - 0.5 * delta)


@pytest.mark.parametrize(
  ('loss', 'kwargs', 'psi'),
  [
    ('median', {}, lambda z: np.linalg.norm(z)),
    (
      'mixture',
      {'mixture_mu': 0.7},
      lambda z: np.linalg.norm(z) + 0.35 * np.sum(z**2),
    ),
    ('huber', {'huber_delta': 0.8}, lambda z: _huber(z, 0.8)),
  ],
)
@pytest.mark.parametrize('scale', [0.1, 1.0, 5.0])
def test_median_tracking_losses_are_one_proximal_step(loss, kwargs, psi, scale):
  """m_1 = argmin_m tau psi(m - g) + |m - m_0|^2 / 2, checked numerically."""
  from scipy import optimize  # noqa: PLC0415

  tau = 0.6
  rng = np.random.default_rng(int(scale * 10))
  m0 = rng.normal(size=3)
  g = m0 + scale * rng.normal(size=3)
  tx = R.scale_by_median_tracking(tau, loss=loss, **kwargs)
  state = tx.init(jnp.zeros(3))._replace(median=jnp.asarray(m0, jnp.float32))
  got, _ = tx.update(jnp.asarray(g, jnp.float32), state)
  res = optimize.minimize(
    lambda m: tau * psi(m - g) + 0.5 * np.sum((m - m0) ** 2),
    m0,
    method='Nelder-Mead',
    options={'xatol': 1e-10, 'fatol': 1e-14, 'maxiter': 20000},
  )
  np.testing.assert_allclose(got, res.x, atol=2e-4)


def test_median_tracking_loss_limits_and_errors():
  g = jnp.array([3.0, -4.0])
  state = R.scale_by_median_tracking(1.0).init(jnp.zeros(2))
  median, _ = R.scale_by_median_tracking(1.0).update(g, state)
  mix0, _ = R.scale_by_median_tracking(
    1.0, loss='mixture', mixture_mu=0.0
  ).update(g, state)
  np.testing.assert_allclose(mix0, median, rtol=1e-6)
  # A huge Huber delta is the quadratic loss: the EMA step tau / (1 + tau).
  huber, _ = R.scale_by_median_tracking(
    1.0, loss='huber', huber_delta=1e6
  ).update(g, state)
  np.testing.assert_allclose(huber, 0.5 * g, rtol=1e-6)
  coord, _ = R.scale_by_median_tracking(
    1.0, norm='coordinate', loss='huber', huber_delta=0.5
  ).update(g, state)
  np.testing.assert_allclose(coord, [0.5, -0.5], rtol=1e-6)  # tau*delta
  for kwargs, match in (
    ({'loss': 'huber'}, "`huber_delta` must be given with loss='huber'"),
    ({'mixture_mu': 1.0}, "`mixture_mu` must be given with loss='mixture'"),
    ({'loss': 'huber', 'huber_delta': 0.0}, '`huber_delta` must be > 0'),
    ({'loss': 'mixture', 'mixture_mu': -1.0}, '`mixture_mu` must be >= 0'),
    ({'loss': 'l1'}, '`loss` must be one of'),
  ):
    with pytest.raises(ValueError, match=match):
      R.scale_by_median_tracking(1.0, **kwargs)


def _numpy_trimmed_mean(x, b):
  s = np.sort(x, axis=0)  # NaN last, as the documented order
  kept = s[b : x.shape[0] - b]
  with np.errstate(invalid='ignore'):
    return kept.mean(axis=0)


def _trim_by(path):
  from optax_ext.robust import _order_statistics  # noqa: PLC0415

  if path == 'network':
    return lambda x, b: _order_statistics._trimmed_mean_by_network(x, b)
  if path == 'selection':
    return lambda x, b: _order_statistics._trimmed_mean_by_selection(x, b)
  return lambda x, b: R.aggregate_by_trimmed_mean(b).update(
    x, optax.EmptyState()
  )[0]


# The public rule picks the network (K <= 16; K <= 64 with b >= 4), the
# selection buffers (other K (b + 1) <= 512) or a sort (beyond); each path
# is checked on its own, the public one on a case of each kind.
@pytest.mark.parametrize(
  ('path', 'k', 'b'),
  [
    (path, k, b)
    for k, b in [(3, 1), (5, 0), (8, 1), (8, 3), (17, 1), (17, 4), (40, 3)]
    for path in ('network', 'selection', 'public')
  ]
  + [('public', 70, 8)],  # K (b + 1) > 512: the sort
)
def test_trimmed_mean_selection_matches_sorting_with_faults(path, k, b):
  rng = np.random.default_rng(k * 10 + b)
  x = rng.normal(size=(k, 400)).astype(np.float32)
  x[:, :50] = np.round(x[:, :50])  # ties
  faults = [np.nan, np.inf, -np.inf, 1e30, -1e30]
  for col in range(50, 400):
    for _ in range(rng.integers(0, b + 2)):  # some columns exceed b faults
      x[rng.integers(k), col] = faults[rng.integers(len(faults))]
  # And columns where exactly b + 1 faults of one kind survive the trim.
  x[: b + 1, 300:350] = np.inf
  x[: b + 1, 350:400] = np.nan
  got = jax.jit(_trim_by(path), static_argnums=1)(jnp.asarray(x), b)
  want = _numpy_trimmed_mean(x, b)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert np.isnan(want).any() and np.isinf(want).any()  # faults survived


def test_trimmed_mean_outliers_do_not_swamp_the_kept_values():
  x = jnp.array([[1e30], [1.0], [2.0], [3.0], [-1e30]])
  got, _ = R.aggregate_by_trimmed_mean(1).update(x, optax.EmptyState())
  np.testing.assert_array_equal(got, [2.0])


def _two_steps(tx, inputs, state):
  for x in inputs:
    out, state = tx.update(x, state)
  return out, state


@pytest.mark.parametrize(
  'factory, kwargs, name, inputs',
  [
    (
      R.aggregate_by_centered_clipping,
      {},
      'threshold',
      [jnp.array([[0.5], [1.0], [100.0]])] * 2,
    ),
    (
      R.scale_by_median_tracking,
      {'threshold': 0.5, 'loss': 'huber'},
      'huber_delta',
      [jnp.array([3.0, -2.0]), jnp.array([8.0, -6.0])],
    ),
    (
      R.scale_by_median_tracking,
      {'threshold': 0.5, 'loss': 'mixture'},
      'mixture_mu',
      [jnp.array([3.0, -2.0]), jnp.array([1.0, 0.5])],
    ),
  ],
)
def test_schedules_are_evaluated_at_every_step(factory, kwargs, name, inputs):
  # Regression: centered clipping evaluated a threshold schedule at step 0
  # forever (no count in its state), median tracking its huber_delta and
  # mixture_mu. A schedule a -> b must give, at step 2, what the constant a
  # for step 1 then the constant b for step 2 gives.
  a, b = 1.0, 10.0
  sched = factory(**kwargs, **{name: lambda c: jnp.where(c < 1, a, b)})
  const_a = factory(**kwargs, **{name: a})
  const_b = factory(**kwargs, **{name: b})
  params = jnp.zeros(inputs[0].shape[-1:])
  got, _ = jax.jit(lambda: _two_steps(sched, inputs, sched.init(params)))()
  _, state = const_a.update(inputs[0], const_a.init(params))
  want, _ = const_b.update(inputs[1], state)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  stale, _ = _two_steps(const_a, inputs, const_a.init(params))
  assert not np.allclose(got, stale)  # the inputs tell the two apart


def test_clip_each_rejects_a_schedule():
  # Stateless: a schedule could only be evaluated at step 0.
  with pytest.raises(TypeError, match='max_norm'):
    R.clip_each_by_global_norm(lambda count: 1.0)
