"""GSNR family: the statistic, the factor, the aliases (spec part C)."""

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
import pytest

import optax_ext
from optax_ext import population as pop
from optax_ext import variance


def _population(k, seed=0, dtype=jnp.float32, signal=0.5):
  k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
  mean = {'w': jax.random.normal(k1, (4, 3)), 'b': jax.random.normal(k2, (3,))}
  keys = jax.random.split(k3, 2)
  return {
    name: (
      signal * mean[name][None] + jax.random.normal(key, (k, *mean[name].shape))
    ).astype(dtype)
    for key, name in zip(keys, sorted(mean), strict=True)
  }


def _numpy_gsnr(members, eps_rel=1e-8):
  x = np.asarray(members, np.float64)
  m, v = x.mean(0), x.var(0)
  return m * m / (v + eps_rel * v.mean() + 1e-30)


def _close(a, b, rtol=1e-5, atol=1e-6):
  jax.tree.map(
    lambda x, y: np.testing.assert_allclose(
      np.asarray(x, np.float64),
      np.asarray(y, np.float64),
      rtol=rtol,
      atol=atol,
    ),
    a,
    b,
  )


SPEC_VECTOR = jnp.array([[1.0, 1.0], [2.0, -1.0], [3.0, 1.0], [2.0, -1.0]])


def test_spec_test_vector():
  """k=4, A=(1,2,3,2), B=(1,-1,1,-1): the spec's worked example."""
  mean, var = pop.mean_and_var(SPEC_VECTOR)
  np.testing.assert_allclose(mean, [2.0, 0.0])
  np.testing.assert_allclose(var, [0.5, 1.0])
  r = variance.gsnr(SPEC_VECTOR)
  np.testing.assert_allclose(r, [4.0 / (0.5 + 1e-8 * 0.75 + 1e-30), 0.0])
  tx = variance.scale_by_gsnr()
  u, state = tx.update(mean, tx.init(mean), group_grads=SPEC_VECTOR)
  np.testing.assert_allclose(state.gsnr, [2.0, 0.1], rtol=1e-6)
  np.testing.assert_allclose(u, [4.0, 0.0], rtol=1e-6)


@pytest.mark.parametrize('k', [2, 5, 16])
def test_gsnr_matches_numpy(k):
  g = _population(k, seed=k)
  r = variance.gsnr(g)
  for name in g:
    np.testing.assert_allclose(r[name], _numpy_gsnr(g[name]), rtol=2e-5)
  by_leaf = variance.gsnr_by_leaf(g)
  for name in g:
    np.testing.assert_allclose(
      by_leaf[name], _numpy_gsnr(g[name]).mean(), rtol=2e-5
    )


@pytest.mark.parametrize('c', [-3.0, 0.01, 1e3])
def test_gsnr_is_scale_invariant(c):
  g = _population(8)
  scaled = jax.tree.map(lambda x: c * x, g)
  _close(variance.gsnr(scaled), variance.gsnr(g), rtol=1e-5, atol=0)


def _agg_update(tx, g, params=None, state=None):
  params = (
    jax.tree.map(lambda x: jnp.zeros(x.shape[1:], x.dtype), g)
    if (params is None)
    else params
  )
  state = tx.init(params) if state is None else state
  return tx.update(g, state, params)


def test_identical_members_give_the_plain_mean():
  member = _population(1)
  g = jax.tree.map(lambda x: jnp.repeat(x, 6, axis=0), member)
  u, state = _agg_update(variance.aggregate_by_gsnr(), g)
  _close(u, jax.tree.map(lambda x: x[0], member), rtol=1e-6)
  for f in jax.tree.leaves(state.gsnr):
    np.testing.assert_array_equal(f, 1.0)


def test_all_zero_members_give_factor_one_and_zero_update():
  g = jax.tree.map(jnp.zeros_like, _population(4))
  u, state = _agg_update(variance.aggregate_by_gsnr(), g)
  for x in jax.tree.leaves(u):
    np.testing.assert_array_equal(x, 0.0)
  for f in jax.tree.leaves(state.gsnr):
    np.testing.assert_array_equal(f, 1.0)


def test_zero_variance_coordinates_stay_finite():
  g = _population(4)
  # Column 0 of 'w' identical across members (zero variance, non-zero mean).
  g['w'] = g['w'].at[:, :, 0].set(g['w'][0, :, 0] + 1e4)
  r = variance.gsnr(g)
  assert bool(jnp.all(jnp.isfinite(r['w'])))
  u, state = _agg_update(variance.aggregate_by_gsnr(), g)
  for x in jax.tree.leaves((u, state.gsnr)):
    assert bool(jnp.all(jnp.isfinite(x)))
  # Capped before normalising: the zero-variance column gets the upper bound
  # at most, and does not push every other coordinate to the lower bound.
  assert float(jnp.max(state.gsnr['w'])) <= 10.0
  assert float(jnp.median(state.gsnr['w'][:, 1:])) > 0.1


def test_factor_has_mean_one_per_leaf_when_unclipped():
  # A population whose ratios all sit well inside the bounds and the cap.
  base = jnp.linspace(1.0, 2.0, 12).reshape(4, 3)
  offsets = jnp.array([1.0, -1.0, 1.0, -1.0])[:, None, None]
  g = {'w': base[None] + offsets * jnp.ones((4, 3))}
  tx = variance.scale_by_gsnr(cap=1e6)
  _, state = tx.update(base, tx.init(base), group_grads=g['w'])
  f = state.gsnr
  assert float(f.min()) > 0.1 and float(f.max()) < 10.0
  np.testing.assert_allclose(jnp.mean(f), 1.0, rtol=1e-6)
  np.testing.assert_allclose(f, base**2 / jnp.mean(base**2), rtol=1e-5)


def test_global_normalisation():
  g = _population(8, signal=1.0)
  tx = variance.aggregate_by_gsnr(
    normalize='global', gamma_min=1e-6, gamma_max=1e6, cap=1e9
  )
  _, state = _agg_update(tx, g)
  r = variance.gsnr(g)
  total = sum(float(jnp.sum(x)) for x in jax.tree.leaves(r))
  size = sum(x.size for x in jax.tree.leaves(r))
  _close(state.gsnr, jax.tree.map(lambda x: x / (total / size), r), rtol=1e-5)


def test_ema_of_the_factor():
  tx = variance.aggregate_by_gsnr(ema_decay=0.5)
  g1, g2 = _population(6, seed=1), _population(6, seed=2)
  _, s1 = _agg_update(tx, g1)
  _, s2 = _agg_update(tx, g2, state=s1)
  plain = variance.aggregate_by_gsnr()
  _, f1 = _agg_update(plain, g1)
  _, f2 = _agg_update(plain, g2)
  expected1 = jax.tree.map(lambda f: 0.5 + 0.5 * f, f1.gsnr)
  _close(s1.gsnr, expected1, rtol=1e-6)
  _close(
    s2.gsnr,
    jax.tree.map(lambda a, b: 0.5 * a + 0.5 * b, expected1, f2.gsnr),
    rtol=1e-6,
  )
  assert int(s2.count) == 2


@pytest.mark.standard_promotion  # optax.adam / lamb bias corrections
@pytest.mark.parametrize(
  'vr,ref',
  [
    (
      lambda **kw: variance.vr_sgd(0.1, momentum=0.9, **kw),
      lambda: optax.sgd(0.1, momentum=0.9),
    ),
    (
      lambda **kw: variance.vr_adam(0.1, weight_decay=0.01, **kw),
      lambda: optax.adamw(0.1, weight_decay=0.01),
    ),
    (
      lambda **kw: variance.vr_lamb(0.1, weight_decay=0.01, **kw),
      lambda: optax.lamb(0.1, weight_decay=0.01),
    ),
    (
      lambda **kw: variance.vr_lars(0.1, weight_decay=0.01, **kw),
      lambda: optax.lars(0.1, weight_decay=0.01),
    ),
  ],
  ids=['sgd', 'adam', 'lamb', 'lars'],
)
def test_aliases_reduce_to_optax_with_unit_bounds(vr, ref):
  tx, ref_tx = vr(gamma_min=1.0, gamma_max=1.0), ref()
  params = jax.tree.map(lambda x: x[0] + 1.0, _population(1))
  p1 = p2 = params
  s1, s2 = tx.init(p1), ref_tx.init(p2)
  for seed in range(4):
    g = _population(8, seed=seed)
    u1, s1 = tx.update(g, s1, p1)
    u2, s2 = ref_tx.update(pop.mean(g), s2, p2)
    p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
  _close(p1, p2, rtol=1e-6, atol=1e-7)


@pytest.mark.standard_promotion
def test_vr_adam_scales_adams_output():
  g = _population(8)
  params = jax.tree.map(lambda x: jnp.zeros(x.shape[1:]), g)
  u, _ = variance.vr_adam(1.0).update(
    g, variance.vr_adam(1.0).init(params), params
  )
  adam_dir, _ = optax.scale_by_adam().update(
    pop.mean(g), optax.scale_by_adam().init(params)
  )
  _, factor = _agg_update(variance.aggregate_by_gsnr(), g)
  _close(u, jax.tree.map(lambda f, d: -f * d, factor.gsnr, adam_dir), rtol=1e-5)


# --- The three population paths agree ---------------------------------------


def test_gsnr_named_paths_match_stacked(mesh):
  g = _population(8)
  want = variance.gsnr(g)
  axes_v = pop.PopulationAxes(axis=None, axis_name='m')
  got_v = jax.vmap(lambda m: variance.gsnr(m, axes_v), axis_name='m')(g)
  _close(jax.tree.map(lambda x: x[0], got_v), want, rtol=2e-5)
  axes_d = pop.PopulationAxes(axis=None, axis_name='data')
  got_d = jax.jit(
    jax.shard_map(
      lambda m: variance.gsnr(jax.tree.map(lambda x: x[0], m), axes_d),
      mesh=mesh,
      in_specs=P('data'),
      out_specs=P(),
    )
  )(g)
  _close(got_d, want, rtol=2e-5)


@pytest.mark.parametrize('local', [1, 3])
def test_aggregate_by_gsnr_under_shard_map_matches_stacked(mesh, local):
  n = 8 * local
  g = _population(n, seed=3)
  axes = pop.PopulationAxes(axis=None if local == 1 else 0, axis_name='data')
  named = optax.chain(variance.aggregate_by_gsnr(axes=axes), optax.sgd(0.1))
  stacked = optax.chain(variance.aggregate_by_gsnr(), optax.sgd(0.1))
  params = jax.tree.map(lambda x: jnp.zeros(x.shape[1:]), g)

  def step(p, s, members):
    if local == 1:
      members = jax.tree.map(lambda x: x[0], members)
    return named.update(members, s, p)

  u1, s1 = jax.jit(
    jax.shard_map(
      step, mesh=mesh, in_specs=(P(), P(), P('data')), out_specs=(P(), P())
    )
  )(params, named.init(params), g)
  u2, s2 = stacked.update(g, stacked.init(params), params)
  _close(u1, u2, rtol=2e-5, atol=1e-7)
  _close(s1[0].gsnr, s2[0].gsnr, rtol=2e-5)


# --- Degenerate and bad input -----------------------------------------------


def test_single_member_is_a_trace_time_error():
  g = _population(1)
  with pytest.raises(ValueError, match=r'gsnr: the population has K=1'):
    variance.gsnr(g)
  with pytest.raises(ValueError, match=r'K=1 member'):
    jax.jit(lambda x: _agg_update(variance.vr_sgd(0.1), x))(g)


def test_nan_member_propagates_and_apply_if_finite_skips():
  g = _population(6)
  g['w'] = g['w'].at[2, 0, 0].set(jnp.nan)
  r = variance.gsnr(g)
  assert bool(jnp.isnan(r['w'][0, 0]))
  assert bool(jnp.all(jnp.isfinite(r['b'])))
  u, _ = _agg_update(variance.aggregate_by_gsnr(), g)
  assert bool(jnp.any(jnp.isnan(u['w'])))
  tx = optax.chain(
    variance.aggregate_by_gsnr(), optax.apply_if_finite(optax.sgd(0.1), 5)
  )
  u, state = _agg_update(tx, g)
  for x in jax.tree.leaves(u):
    np.testing.assert_array_equal(x, 0.0)
  assert int(state[1].notfinite_count) == 1


def test_bf16_population():
  g = _population(8, dtype=jnp.bfloat16)
  g['b'] = jnp.repeat(g['b'][:1], 8, axis=0)  # zero variance in bf16
  u, state = _agg_update(variance.aggregate_by_gsnr(), g)
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(u))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.gsnr))
  assert all(
    bool(jnp.all(jnp.isfinite(x.astype(jnp.float32))))
    for x in jax.tree.leaves(u)
  )
  np.testing.assert_array_equal(state.gsnr['b'], 1.0)


def test_scale_by_gsnr_needs_group_grads():
  tx = variance.scale_by_gsnr()
  with pytest.raises(ValueError, match='`group_grads=`'):
    tx.update(jnp.zeros(2), tx.init(jnp.zeros(2)))


def test_aggregator_rejects_a_second_population():
  tx = variance.aggregate_by_gsnr()
  g = _population(4)
  params = jax.tree.map(lambda x: x[0], g)
  with pytest.raises(ValueError, match='do not also pass `group_grads=`'):
    tx.update(g, tx.init(params), params, group_grads=g)


def test_population_must_match_updates():
  tx = variance.scale_by_gsnr()
  with pytest.raises(ValueError, match=r'must have shape \(K, 3\)'):
    tx.update(
      jnp.zeros(3), tx.init(jnp.zeros(3)), group_grads=jnp.zeros((4, 2))
    )


@pytest.mark.parametrize(
  'kwargs,match',
  [
    ({'gamma_min': 0.0}, r'`gamma_min` must be > 0.0, got 0.0'),
    (
      {'gamma_min': 2.0, 'gamma_max': 1.0},
      r'`gamma_max` must be >= `gamma_min`=2.0, got 1.0',
    ),
    ({'cap': -1.0}, r'`cap` must be > 0.0, got -1.0'),
    ({'eps_rel': -1e-8}, r'`eps_rel` must be >= 0.0, got -1e-08'),
    ({'ema_decay': 1.0}, r'`ema_decay` must be in \[0.0, 1.0\), got 1.0'),
    (
      {'normalize': 'layer'},
      r"`normalize` must be one of \('per_leaf', "
      r"'global'\), got 'layer'",
    ),
    ({'gamma_max': float('nan')}, r'`gamma_max` must be a number > 0.0'),
  ],
)
def test_scale_by_gsnr_validation(kwargs, match):
  with pytest.raises(ValueError, match=r'scale_by_gsnr: ' + match):
    variance.scale_by_gsnr(**kwargs)
  with pytest.raises(ValueError, match=match):
    variance.aggregate_by_gsnr(**kwargs)


def test_scale_by_gsnr_type_errors():
  with pytest.raises(TypeError, match=r'`cap` must be a real number'):
    variance.scale_by_gsnr(cap='big')
  with pytest.raises(TypeError, match=r'`gamma_min` must be a number'):
    variance.scale_by_gsnr(gamma_min=lambda count: 0.1)


@pytest.mark.parametrize(
  'factory,kwargs,match',
  [
    (
      variance.vr_sgd,
      {'learning_rate': -0.1},
      r'vr_sgd: `learning_rate` must be >= 0.0, got -0.1',
    ),
    (
      variance.vr_sgd,
      {'learning_rate': 0.1, 'momentum': 1.5},
      r'vr_sgd: `momentum` must be in \[0.0, 1.0\], got 1.5',
    ),
    (
      variance.vr_adam,
      {'learning_rate': 0.1, 'b1': 1.0},
      r'vr_adam: `b1` must be in \[0.0, 1.0\), got 1.0',
    ),
    (
      variance.vr_adam,
      {'learning_rate': 0.1, 'eps': -1.0},
      r'vr_adam: `eps` must be >= 0.0, got -1.0',
    ),
    (
      variance.vr_lamb,
      {'learning_rate': 0.1, 'weight_decay': -1.0},
      r'vr_lamb: `weight_decay` must be >= 0.0, got -1.0',
    ),
    (
      variance.vr_lars,
      {'learning_rate': 0.1, 'trust_coefficient': 0.0},
      r'vr_lars: `trust_coefficient` must be > 0.0, got 0.0',
    ),
    (
      variance.vr_lars,
      {'learning_rate': 0.1, 'gamma_max': 0.01},
      r'vr_lars: `gamma_max` must be >= `gamma_min`',
    ),
  ],
)
def test_alias_validation(factory, kwargs, match):
  with pytest.raises(ValueError, match=match):
    factory(**kwargs)


def test_schedules_and_traced_values_are_not_validated():
  variance.vr_adam(optax.linear_schedule(0.1, 0.0, 10))
  jax.jit(lambda lr: jax.tree.leaves(variance.vr_sgd(lr).init(jnp.zeros(2))))(
    0.1
  )


@pytest.mark.standard_promotion
def test_microbatch_population_trains_a_regression():
  """End to end: grad_population -> vr_adam reduces a least-squares loss."""
  x = jax.random.normal(jax.random.key(0), (256, 5))
  w_true = jnp.arange(1.0, 6.0)
  y = x @ w_true + 0.1 * jax.random.normal(jax.random.key(1), (256,))

  def loss(w, batch):
    return jnp.mean((batch['x'] @ w - batch['y']) ** 2)

  grads_fn = optax_ext.grad_population(loss, 8)
  tx = variance.vr_adam(0.05)
  w = jnp.zeros(5)
  state = tx.init(w)

  @jax.jit
  def step(w, state):
    value, g = grads_fn(w, {'x': x, 'y': y})
    u, state = tx.update(g, state, w)
    return optax.apply_updates(w, u), state, value

  first = None
  for _ in range(300):
    w, state, value = step(w, state)
    first = value if first is None else first
  assert float(value) < 0.05 * float(first)
  np.testing.assert_allclose(w, w_true, atol=0.1)


def _noise_reference(pop, b):
  """NumPy transcription of McCandlish et al. (2018), Appendix A.1."""
  pop = np.asarray(pop, np.float64)
  k = pop.shape[0]
  g_small = np.mean(np.sum(pop**2, axis=1))  # |G_B_small|^2, B_small = b
  g_big = np.sum(pop.mean(axis=0) ** 2)  # |G_B_big|^2, B_big = K b
  b_small, b_big = b, k * b
  grad_sq = (b_big * g_big - b_small * g_small) / (b_big - b_small)
  trace = (g_small - g_big) / (1 / b_small - 1 / b_big)
  return grad_sq, trace


@pytest.mark.parametrize('k, b', [(2, 1), (6, 4), (16, 32)])
def test_noise_scale_matches_the_papers_estimator(k, b):
  rng = np.random.default_rng(k)
  pop = rng.normal(size=(k, 7)) + 0.5
  est = variance.gradient_noise_scale(
    {'a': jnp.asarray(pop[:, :3], jnp.float32),
     'b': jnp.asarray(pop[:, 3:], jnp.float32)},
    microbatch_size=b,
  )  # fmt: skip
  grad_sq, trace = _noise_reference(pop, b)
  np.testing.assert_allclose(est.grad_sq, grad_sq, rtol=1e-5)
  np.testing.assert_allclose(est.trace, trace, rtol=1e-5)
  np.testing.assert_allclose(est.b_simple, trace / grad_sq, rtol=1e-5)


def test_noise_scale_is_unbiased_and_finds_the_critical_batch():
  # Members are means of b draws from N(G, Sigma): E[estimates] = |G|^2 and
  # tr(Sigma), so their averages over many steps recover B_simple.
  rng = np.random.default_rng(0)
  d, k, b, steps = 20, 8, 4, 4000
  g = rng.normal(size=d)
  scales = rng.uniform(0.5, 2.0, size=d)  # Sigma = diag(scales^2)
  noise = rng.normal(size=(steps, k, d)) * scales / np.sqrt(b)
  pops = jnp.asarray(g + noise, jnp.float32)
  est = jax.vmap(lambda p: variance.gradient_noise_scale(p, microbatch_size=b))(
    pops
  )
  true_g, true_trace = np.sum(g**2), np.sum(scales**2)
  np.testing.assert_allclose(np.mean(est.grad_sq), true_g, rtol=0.02)
  np.testing.assert_allclose(np.mean(est.trace), true_trace, rtol=0.02)
  ratio = np.mean(est.trace) / np.mean(est.grad_sq)
  np.testing.assert_allclose(ratio, true_trace / true_g, rtol=0.04)


def test_noise_scale_state_is_the_ratio_of_emas():
  rng = np.random.default_rng(1)
  beta = 0.8
  tx = variance.aggregate_by_mean_with_noise_scale(
    microbatch_size=2, ema_decay=beta
  )
  params = jnp.zeros(5)
  state = tx.init(params)
  g_ema = t_ema = 0.0
  for _ in range(3):
    pop = rng.normal(size=(6, 5)) + 1.0
    u, state = tx.update(jnp.asarray(pop, jnp.float32), state, params)
    grad_sq, trace = _noise_reference(pop, 2)
    g_ema = beta * g_ema + (1 - beta) * grad_sq
    t_ema = beta * t_ema + (1 - beta) * trace
    np.testing.assert_allclose(u, pop.mean(axis=0), rtol=1e-5)
  np.testing.assert_allclose(
    optax.tree.get(state, 'b_simple'), t_ema / g_ema, rtol=1e-4
  )
  assert int(state.count) == 3


def test_noise_scale_needs_two_members():
  with pytest.raises(ValueError, match='K >= 2'):
    variance.gradient_noise_scale(jnp.ones((1, 3)))
