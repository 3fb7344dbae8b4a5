"""diffGrad, AdamP/SGDP, SGD-SaI and Gravity against hand computations."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_ext import adaptive

RNG = np.random.default_rng(0)


def _run(tx, grads, params):
  state = tx.init(params)
  for g in grads:
    u, state = tx.update(g, state, params)
    params = optax.apply_updates(params, u)
  return params, state


# --------------------------------------------------------------- diffGrad


def _diffgrad_v2_numpy(p, grads, lr, b1, b2, eps, wd):
  """The authors' diffGrad_v2 step, written out in NumPy (float64)."""
  m, v, prev = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
  for t, g in enumerate(grads, start=1):
    g = g + wd * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    xi = 1.0 / (1.0 + np.exp(-np.abs(prev - g)))
    prev = g
    step = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
    p = p - step * xi * m / (np.sqrt(v) + eps)
  return p


@pytest.mark.parametrize('wd', [0.0, 0.1])
def test_diffgrad_matches_reference_v2(wd):
  p0 = RNG.normal(size=(3, 4))
  grads = [RNG.normal(size=(3, 4)) for _ in range(12)]
  want = _diffgrad_v2_numpy(p0, grads, 0.01, 0.9, 0.999, 1e-8, wd)
  got, _ = _run(
    adaptive.diffgrad(0.01, weight_decay=wd),
    [jnp.asarray(g, jnp.float32) for g in grads],
    jnp.asarray(p0, jnp.float32),
  )
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_diffgrad_constant_gradient_is_half_adam():
  g = jnp.array([0.3, -1.2, 4.0])
  ours, adam = adaptive.scale_by_diffgrad(eps=0.0), optax.scale_by_adam(eps=0.0)
  s1, s2 = ours.init(g), adam.init(g)
  for step in range(1, 6):
    u1, s1 = ours.update(g, s1)
    with jax.numpy_dtype_promotion('standard'):
      u2, s2 = adam.update(g, s2)
    # Step 1: xi = sigmoid(|g|) (g_prev = 0); then xi = sigmoid(0) = 1/2.
    xi = jax.nn.sigmoid(jnp.abs(g)) if step == 1 else 0.5
    np.testing.assert_allclose(u1, xi * u2, rtol=2e-5)


# ------------------------------------------------------------ AdamP / SGDP


def _orthogonal_rows(w, r, axis):
  """``r`` minus its projection on each slice of ``w`` along ``axis``."""
  w_, r_ = np.moveaxis(w, axis, 0), np.moveaxis(r, axis, 0)
  w2, r2 = w_.reshape(len(w_), -1), r_.reshape(len(r_), -1)
  unit = w2 / np.linalg.norm(w2, axis=1, keepdims=True)
  out = r2 - unit * np.sum(unit * r2, axis=1, keepdims=True)
  return np.moveaxis(out.reshape(r_.shape), 0, axis)


@pytest.mark.parametrize('channel_axis', [0, -1])
def test_adamp_scale_invariant_weight_gets_no_radial_step(channel_axis):
  w = jnp.asarray(RNG.normal(size=(4, 3)), jnp.float32)
  tx = adaptive.adamp(0.01, channel_axis=channel_axis)
  state = tx.init(w)
  for _ in range(5):
    g = _orthogonal_rows(np.asarray(w), RNG.normal(size=(4, 3)), channel_axis)
    u, state = tx.update(jnp.asarray(g, jnp.float32), state, w)
    # Each channel's step is orthogonal to that channel of w.
    dots = np.sum(
      np.moveaxis(np.asarray(u), channel_axis, 0)
      * np.moveaxis(np.asarray(w), channel_axis, 0),
      axis=1,
    )
    np.testing.assert_allclose(dots, 0.0, atol=1e-7)
    w = optax.apply_updates(w, u)


def test_adamp_vector_and_aligned_matrix_are_adam():
  """1-D weights are never projected; g parallel to w is not invariant."""
  params = {
    'b': jnp.asarray(RNG.normal(size=5), jnp.float32),
    'w': jnp.asarray(RNG.normal(size=(3, 2)), jnp.float32),
  }
  grads = [jax.tree.map(lambda p: 0.5 * p + 0.01, params) for _ in range(4)]
  with jax.numpy_dtype_promotion('standard'):
    want, _ = _run(optax.adam(0.01), grads, params)
  got, _ = _run(adaptive.adamp(0.01), grads, params)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    got,
    want,
  )


def test_adamp_decay_shrinks_only_when_projected():
  w = jnp.array([[1.0], [0.0]])
  lam, ratio = 0.5, 0.1
  tx = adaptive.scale_by_adamp(weight_decay=lam, wd_ratio=ratio)
  g_inv = jnp.array([[0.0], [1.0]])  # orthogonal: projected
  g_par = jnp.array([[1.0], [0.0]])  # parallel: not projected
  u_inv, _ = tx.update(g_inv, tx.init(w), w)
  u_par, _ = tx.update(g_par, tx.init(w), w)
  np.testing.assert_allclose(u_inv, [[lam * ratio], [1.0]], atol=1e-6)
  np.testing.assert_allclose(u_par, [[1.0 + lam], [0.0]], atol=1e-6)


def test_sgdp_decay_is_divided_by_one_minus_momentum():
  w = jnp.array([[2.0, 0.0]])  # one row: parallel gradient, not projected
  tx = adaptive.scale_by_sgdp(momentum=0.5, weight_decay=0.1)
  u, _ = tx.update(jnp.array([[1.0, 0.0]]), tx.init(w), w)
  np.testing.assert_allclose(u, [[1.0 + 0.1 * 2.0 / 0.5, 0.0]], atol=1e-6)


def test_adamp_requires_params():
  tx = adaptive.scale_by_adamp()
  with pytest.raises(ValueError, match='scale_by_adamp: `params`'):
    tx.update(jnp.ones(2), tx.init(jnp.ones(2)))


# ---------------------------------------------------------------- SGD-SaI


def _sgd_sai_numpy(params, grads, lr, momentum, eps, wd):
  """The authors' SGD_sai (v1.0.4) step, in NumPy float64."""
  gsnr = {}
  for k, g in grads[0].items():
    gsnr[k] = np.linalg.norm(g) / (np.std(g, ddof=1) + eps)
  top = max(gsnr.values())
  buf = {}
  for g_t in grads:
    for k, g in g_t.items():
      buf[k] = (
        g.copy() if k not in buf else momentum * buf[k] + (1 - momentum) * g
      )
      params[k] = params[k] * (1 - wd * lr) - lr * gsnr[k] / top * buf[k]
  return params


def test_sgd_sai_matches_reference():
  params = {'a': RNG.normal(size=(4, 3)), 'b': RNG.normal(size=6)}
  grads = [
    {'a': RNG.normal(size=(4, 3)), 'b': 0.2 + 0.1 * RNG.normal(size=6)}
    for _ in range(6)
  ]
  want = _sgd_sai_numpy(dict(params), grads, 0.05, 0.9, 1e-8, 0.01)
  got, state = _run(
    adaptive.sgd_sai(0.05),
    [jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g) for g in grads],
    jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params),
  )
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    got,
    want,
  )
  # 'b' has a consistent sign: the larger ratio, scale 1.
  assert float(state[0].gsnr['b']) == 1.0
  assert 0.0 < float(state[0].gsnr['a']) < 1.0


def test_sgd_sai_scalar_leaf_does_not_freeze_the_rest():
  tx = adaptive.scale_by_sgd_sai()
  g = {'scale': jnp.array(3.0), 'w': jnp.array([1.0, 1.1, 0.9])}
  u, state = tx.update(g, tx.init(g))
  assert float(state.gsnr['scale']) == 1.0
  assert float(state.gsnr['w']) == 1.0  # the only leaf with a ratio
  np.testing.assert_allclose(u['w'], g['w'])


def test_sgd_sai_ratio_is_fixed_after_the_first_step():
  tx = adaptive.scale_by_sgd_sai()
  g1 = {'a': jnp.array([1.0, -1.0, 1.0]), 'b': jnp.array([1.0, 1.0, 1.1])}
  state = tx.init(g1)
  _, state = tx.update(g1, state)
  first = state.gsnr
  _, state = tx.update(jax.tree.map(lambda x: -3.0 * x[::-1], g1), state)
  jax.tree.map(np.testing.assert_array_equal, state.gsnr, first)


# ---------------------------------------------------------------- Gravity


def test_gravity_first_steps_by_hand():
  beta = 0.9
  tx = adaptive.scale_by_gravity(init_std=0.0, beta=beta)
  g = jnp.array([0.5, -2.0, 1.0])
  state = tx.init(g)
  v = np.zeros(3)
  for t in range(1, 4):
    u, state = tx.update(g, state)
    big = 2.0
    zeta = np.asarray(g) / (1 + (np.asarray(g) * big) ** 2)
    b_hat = (beta * t + 1) / (t + 2)
    v = b_hat * v + (1 - b_hat) * zeta
    np.testing.assert_allclose(u, v, rtol=1e-6)
  assert np.isclose((beta * 1 + 1) / 3, 1.9 / 3)


def test_gravity_seeded_initial_velocity():
  params = {'a': jnp.zeros((50,)), 'b': jnp.zeros((40,))}
  s1 = adaptive.scale_by_gravity(init_std=2.0, seed=3).init(params)
  s2 = adaptive.scale_by_gravity(init_std=2.0, seed=3).init(params)
  s3 = adaptive.scale_by_gravity(init_std=2.0, seed=4).init(params)
  jax.tree.map(np.testing.assert_array_equal, s1.velocity, s2.velocity)
  assert not np.allclose(s1.velocity['a'], s3.velocity['a'])
  assert not np.allclose(s1.velocity['a'][:40], s1.velocity['b'])
  assert 1.5 < float(jnp.std(s1.velocity['a'])) < 2.5
  # gravity(): init_std = alpha / learning_rate.
  s4 = adaptive.gravity(0.1, alpha=0.2, seed=3).init(params)
  np.testing.assert_allclose(s4[0].velocity['a'], s1.velocity['a'], rtol=1e-6)


def test_gravity_zero_gradient_is_finite():
  tx = adaptive.scale_by_gravity(init_std=0.0)
  for dtype in (jnp.float32, jnp.bfloat16):
    g = jnp.zeros(4, dtype)
    u, _ = tx.update(g, tx.init(g))
    assert u.dtype == dtype
    np.testing.assert_array_equal(u, 0.0)


# ------------------------------------------------------------- validation


@pytest.mark.parametrize(
  'factory,kwargs,match',
  [
    (adaptive.scale_by_diffgrad, {'b1': 1.0}, r'`b1` must be in \[0.0, 1.0\)'),
    (
      adaptive.diffgrad,
      {'learning_rate': -1.0},
      '`learning_rate` must be >= 0',
    ),
    (adaptive.scale_by_adamp, {'wd_ratio': 2.0}, '`wd_ratio` must be in'),
    (adaptive.scale_by_adamp, {'delta': -0.1}, '`delta` must be >= 0'),
    (adaptive.scale_by_sgdp, {'momentum': 1.0}, '`momentum` must be in'),
    (adaptive.scale_by_sgdp, {'dampening': 1.5}, '`dampening` must be in'),
    (adaptive.scale_by_sgd_sai, {'eps': 0.0}, '`eps` must be > 0'),
    (adaptive.scale_by_gravity, {'init_std': -1.0}, '`init_std` must be >= 0'),
    (
      adaptive.gravity,
      {'learning_rate': 0.0},
      '`learning_rate` must be > 0',
    ),
    (adaptive.scale_by_gravity, {'init_std': 1.0, 'beta': 1.5}, '`beta`'),
  ],
)
def test_validation(factory, kwargs, match):
  with pytest.raises(ValueError, match=match):
    factory(**kwargs)
