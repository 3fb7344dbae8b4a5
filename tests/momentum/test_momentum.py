"""Momentum family (spec part A): golden values, reductions, validation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_ext import momentum as M

SHAPES = {'w': (4, 3), 'b': (3,)}


def _grads(n, seed=0, scale=0.5):
  rng = np.random.default_rng(seed)
  return [
    {
      k: jnp.asarray(scale * rng.normal(size=s), jnp.float32)
      for k, s in SHAPES.items()
    }
    for _ in range(n)
  ]


def _updates(tx, grads, params=None, **extra):
  params = grads[0] if params is None else params
  state, out = tx.init(params), []
  for g in grads:
    u, state = tx.update(g, state, params, **extra)
    out.append(u)
  return out, state


def _same(a_list, b_list, rtol=1e-5, atol=1e-6):
  for a, b in zip(a_list, b_list, strict=True):
    jax.tree.map(
      lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol),
      a,
      b,
    )


# --- A1: the mixture core and its special cases (20 random steps each) ----

G20 = _grads(20)


def test_mixture_one_undampened_buffer_is_trace():
  tx = M.scale_by_momentum_mixture((0.9,), (1.0,), dampening=False)
  _same(_updates(tx, G20)[0], _updates(optax.trace(0.9), G20)[0])


def test_momentum_mixture_alias_is_sgd_with_momentum():
  params = _grads(1, seed=9)[0]
  for nesterov in (False, True):
    tx = M.momentum_mixture(
      0.1, (0.9,), (1.0,), dampening=False, nesterov=nesterov
    )
    ref = optax.sgd(0.1, momentum=0.9, nesterov=nesterov)
    _same(_updates(tx, G20, params)[0], _updates(ref, G20, params)[0])


def test_mixture_nesterov_is_trace_nesterov():
  tx = M.scale_by_momentum_mixture(
    (0.9,), (1.0,), dampening=False, nesterov=True
  )
  _same(_updates(tx, G20)[0], _updates(optax.trace(0.9, nesterov=True), G20)[0])


def test_mixture_coefficients_beta_grad_one_is_trace_nesterov():
  # The spec's table: (beta,), coefficients (beta,), gradient 1, undampened.
  tx = M.scale_by_momentum_mixture(
    (0.9,), (0.9,), grad_coefficient=1.0, dampening=False
  )
  _same(_updates(tx, G20)[0], _updates(optax.trace(0.9, nesterov=True), G20)[0])


def test_mixture_dampened_one_buffer_is_ema():
  tx = M.scale_by_momentum_mixture((0.8,), (1.0,))
  _same(_updates(tx, G20)[0], _updates(optax.ema(0.8, debias=False), G20)[0])
  tx = M.scale_by_momentum_mixture((0.8,), (1.0,), debias=True)
  with jax.numpy_dtype_promotion('standard'):  # optax.ema's bias correction
    ref = _updates(optax.ema(0.8, debias=True), G20)[0]
  _same(_updates(tx, G20)[0], ref)


def _manual_mixture(grads, decays, weights, grad_weight, damp, debias):
  """Plain NumPy loop over the spec's equations."""
  ms = [jax.tree.map(np.zeros_like, grads[0]) for _ in decays]
  out = []
  for t, g in enumerate(grads, start=1):
    u = jax.tree.map(lambda x: grad_weight * np.asarray(x, np.float64), g)
    for i, (beta, w) in enumerate(zip(decays, weights, strict=True)):
      c = 1 - beta if damp[i] else 1.0
      ms[i] = jax.tree.map(
        lambda m, x, beta=beta, c=c: beta * m + c * x, ms[i], g
      )
      corr = 1 - beta**t if debias[i] else 1.0
      u = jax.tree.map(lambda a, m, w=w, corr=corr: a + w * m / corr, u, ms[i])
    out.append(u)
  return out


@pytest.mark.parametrize(
  'decays,weights,grad_weight,damp,debias',
  [
    ((0.9,), (0.7,), 0.3, (True,), (False,)),  # QHM
    ((0.0, 0.9, 0.99), (1 / 3,) * 3, 0.0, (False,) * 3, (False,) * 3),  # AggMo
    ((0.9, 0.9999), (1.0, 5.0), 0.0, (True, True), (True, False)),  # AdEMAMix
  ],
  ids=['qhm', 'aggmo', 'ademamix_numerator'],
)
def test_mixture_matches_the_equations(
  decays, weights, grad_weight, damp, debias
):
  tx = M.scale_by_momentum_mixture(decays, weights, grad_weight, damp, debias)
  want = _manual_mixture(G20, decays, weights, grad_weight, damp, debias)
  _same(_updates(tx, G20)[0], want, rtol=2e-5)


def test_mixture_with_scheduled_decay_and_weight():
  decay = lambda s: 0.5 + 0.4 * jnp.minimum(s, 10).astype(jnp.float32) / 10
  weight = lambda s: jnp.ones([], jnp.float32)
  tx = M.scale_by_momentum_mixture((decay,), (weight,), dampening=False)
  m = jax.tree.map(np.zeros_like, G20[0])
  for s, (g, (u, _)) in enumerate(
    zip(G20, [tx.update(g, st) for g, st in _states(tx, G20)], strict=True)
  ):
    beta = 0.5 + 0.4 * min(s, 10) / 10
    m = jax.tree.map(lambda m, x, beta=beta: beta * m + x, m, g)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), u, m
    )


def _states(tx, grads):
  """Pairs (g, state before g)."""
  state = tx.init(grads[0])
  for g in grads:
    yield g, state
    _, state = tx.update(g, state)


def test_static_zero_decay_is_not_stored_and_buffers_are_float32():
  params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), G20[0])
  tx = M.scale_by_momentum_mixture((0.0, 0.9, 0.9999), (1.0, 1.0, 1.0))
  state = tx.init(params)
  assert state.mus[0] is None
  assert jax.tree.leaves(state.mus[1])[0].dtype == jnp.float32
  assert jax.tree.leaves(state.mus[2])[0].dtype == jnp.float32
  tx = M.scale_by_momentum_mixture((0.9,), (1.0,), mu_dtype=jnp.bfloat16)
  assert jax.tree.leaves(tx.init(params).mus[0])[0].dtype == jnp.bfloat16


def test_mixture_components_readable_with_tree_get():
  tx = M.scale_by_momentum_mixture((0.5, 0.9), (1.0, 1.0))
  _, state = _updates(tx, G20[:2])
  mus = optax.tree.get(state, 'mus')
  assert len(mus) == 2 and int(optax.tree.get(state, 'count')) == 2


@pytest.mark.parametrize(
  'kwargs,exc,match',
  [
    (
      {'decays': (1.0,), 'coefficients': (1.0,)},
      ValueError,
      r'`decays\[0\]` must be in \[0.0, 1.0\), got 1.0',
    ),
    (
      {'decays': (-0.1,), 'coefficients': (1.0,)},
      ValueError,
      r'`decays\[0\]` must be in \[0.0, 1.0\), got -0.1',
    ),
    (
      {'decays': (0.9, 0.5), 'coefficients': (1.0,)},
      ValueError,
      r'`decays`, `coefficients` must have the same length, got: `decays` '
      r'has 2, `coefficients` has 1',
    ),
    (
      {'decays': (), 'coefficients': ()},
      ValueError,
      r'`decays` must be a non-empty sequence',
    ),
    (
      {'decays': (0.9,), 'coefficients': (1.0,), 'debias': (True, False)},
      ValueError,
      r'`debias` must be a bool or a sequence of 1 bools',
    ),
    (
      {'decays': (lambda s: 0.9,), 'coefficients': (1.0,), 'debias': True},
      ValueError,
      r'`debias\[0\]` cannot be used with a scheduled',
    ),
    (
      {'decays': (0.9,), 'coefficients': (float('nan'),)},
      ValueError,
      r'`coefficients\[0\]` must be a number',
    ),
    (
      {'decays': (0.9,), 'coefficients': ('a',)},
      TypeError,
      r'`coefficients\[0\]` must be a real number',
    ),
  ],
)
def test_mixture_validation(kwargs, exc, match):
  with pytest.raises(exc, match='scale_by_momentum_mixture: ' + match):
    M.scale_by_momentum_mixture(**kwargs)


# --- A2: AdEMAMix ----------------------------------------------------------


def test_beta3_schedule_spec_values_and_identity():
  f = M.ademamix_beta3_schedule(0.9999, 1000, beta_start=0.9)
  want = [0.9, 0.9499637, 0.9909002, 0.9998002, 0.9998999, 0.9999]
  got = [float(f(s)) for s in (0, 1, 10, 500, 999, 1000)]
  np.testing.assert_allclose(got, want, atol=2e-7)
  # The spec's closed form min(exp(ln b0 ln b3 / ((1-x) ln b3 + x ln b0)), b3)
  for s in (0, 3, 250, 999):
    x = s / 1000
    closed = min(
      math.exp(
        math.log(0.9)
        * math.log(0.9999)
        / ((1 - x) * math.log(0.9999) + x * math.log(0.9))
      ),
      0.9999,
    )
    np.testing.assert_allclose(float(f(s)), closed, rtol=2e-7)


def test_beta3_schedule_from_zero():
  f = M.ademamix_beta3_schedule(0.999, 10, beta_start=0.0)
  assert float(f(0)) == 0.0 and math.isfinite(float(f(1)))


def test_alpha_schedule():
  f = M.ademamix_alpha_schedule(8.0, 10, alpha_start=2.0)
  np.testing.assert_allclose(
    [float(f(s)) for s in (0, 5, 10, 99)], [2.0, 5.0, 8.0, 8.0]
  )


def _numpy_ademamix(grads, lr, b1, b2, b3_fn, alpha_fn, eps, wd, params):
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
  m1 = jax.tree.map(np.zeros_like, p)
  m2 = jax.tree.map(np.zeros_like, p)
  nu = jax.tree.map(np.zeros_like, p)
  for s, g in enumerate(grads):
    t = s + 1
    b3, alpha = float(b3_fn(s)), float(alpha_fn(s))
    m1 = jax.tree.map(lambda m, x: b1 * m + (1 - b1) * x, m1, g)
    m2 = jax.tree.map(lambda m, x, b3=b3: b3 * m + (1 - b3) * x, m2, g)
    nu = jax.tree.map(lambda v, x: b2 * v + (1 - b2) * x * x, nu, g)
    p = jax.tree.map(
      lambda p, a, b, v, t=t, alpha=alpha: (
        p
        - lr
        * (
          (a / (1 - b1**t) + alpha * b) / (np.sqrt(v / (1 - b2**t)) + eps)
          + wd * p
        )
      ),
      p,
      m1,
      m2,
      nu,
    )
  return p


@pytest.mark.standard_promotion  # optax.contrib.ademamix
def test_ademamix_with_warmup_matches_the_paper_equations():
  grads = _grads(20, seed=3)
  params = _grads(1, seed=4)[0]
  tx = M.ademamix_with_warmup(
    1e-2, alpha_warmup_steps=10, beta3_warmup_steps=15, weight_decay=0.1
  )
  p = params
  state = tx.init(p)
  for g in grads:
    u, state = tx.update(g, state, p)
    p = optax.apply_updates(p, u)
  want = _numpy_ademamix(
    grads,
    1e-2,
    0.9,
    0.999,
    M.ademamix_beta3_schedule(0.9999, 15, 0.9),
    M.ademamix_alpha_schedule(5.0, 10),
    1e-8,
    0.1,
    params,
  )
  jax.tree.map(
    # float32 vs float64 over 20 steps: a few ulps of the parameters.
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=5e-6),
    p,
    want,
  )
  # Diagnostics: the values used at the last step (s = 19).
  np.testing.assert_allclose(optax.tree.get(state, 'alpha'), 5.0)
  np.testing.assert_allclose(optax.tree.get(state, 'b3'), 0.9999, rtol=1e-7)


@pytest.mark.standard_promotion
def test_ademamix_first_update_is_adam():
  g = _grads(1)[0]
  tx = M.ademamix_with_warmup(0.1, alpha_warmup_steps=5, beta3_warmup_steps=5)
  u, _ = tx.update(g, tx.init(g), g)
  u_adam, _ = optax.adam(0.1).update(g, optax.adam(0.1).init(g), g)
  _same([u], [u_adam])


def test_ademamix_validation():
  with pytest.raises(ValueError, match=r'`b3` must be in \[0.9, 1.0\)'):
    M.ademamix_with_warmup(
      0.1, alpha_warmup_steps=1, beta3_warmup_steps=1, b3=0.5
    )
  with pytest.raises(ValueError, match=r'`warmup_steps` must be an integer'):
    M.ademamix_alpha_schedule(5.0, 0)
  with pytest.raises(TypeError, match=r'`warmup_steps` must be an integer'):
    M.ademamix_beta3_schedule(0.999, 10.5)
  with pytest.raises(ValueError, match=r'`beta_start` must be in \[0.0'):
    M.ademamix_beta3_schedule(0.99, 10, beta_start=0.999)


# --- A4: QHM and QHAdam ----------------------------------------------------


def test_qhm_reductions():
  _same(
    _updates(M.scale_by_qhm(0.9, 1.0), G20)[0],
    _updates(optax.ema(0.9, debias=False), G20)[0],
  )
  _same(_updates(M.scale_by_qhm(0.9, 0.0), G20)[0], G20)
  # nu = beta: dampened Nesterov, u = beta * b_new + (1 - beta) g.
  b = jax.tree.map(np.zeros_like, G20[0])
  for g, u in zip(G20, _updates(M.scale_by_qhm(0.9, 0.9), G20)[0], strict=True):
    b = jax.tree.map(lambda b, x: 0.9 * b + 0.1 * x, b, g)
    want = jax.tree.map(lambda b, x: 0.9 * b + 0.1 * x, b, g)
    _same([u], [want])


def test_qhm_coupled_and_decoupled_weight_decay():
  p = _grads(1, seed=5)[0]
  g = G20[0]
  u_grad, _ = _updates(M.qhm(0.1, 0.9, 0.5, weight_decay=0.1), [g], p)
  g_l2 = jax.tree.map(lambda x, p: x + 0.1 * p, g, p)
  u_ref, _ = _updates(M.scale_by_qhm(0.9, 0.5), [g_l2], p)
  _same(u_grad, [jax.tree.map(lambda x: -0.1 * x, u_ref[0])])
  u_direct, _ = _updates(
    M.qhm(0.1, 0.9, 0.5, weight_decay=0.1, decouple_weight_decay=True),
    [g],
    p,
  )
  u_plain, _ = _updates(M.scale_by_qhm(0.9, 0.5), [g], p)
  _same(
    u_direct, [jax.tree.map(lambda u, p: -0.1 * (u + 0.1 * p), u_plain[0], p)]
  )


def test_qhadam_with_unit_nus_is_adam():
  tx = M.scale_by_qhadam(b1=0.9, b2=0.999, nu1=1.0, nu2=1.0, eps=1e-8)
  with jax.numpy_dtype_promotion('standard'):
    ref = _updates(optax.scale_by_adam(0.9, 0.999, 1e-8), G20)[0]
  _same(_updates(tx, G20)[0], ref)


def test_qhadam_matches_the_paper_equations_with_fractional_nus():
  """Ma & Yarats (2019), Algorithm 2, transcribed in NumPy: the nu1 = nu2 =
  1 test above cannot tell nu from 1 - nu."""
  b1, b2, nu1, nu2, eps = 0.9, 0.99, 0.7, 0.4, 1e-8
  tx = M.scale_by_qhadam(b1=b1, b2=b2, nu1=nu1, nu2=nu2, eps=eps)
  ours, _ = _updates(tx, G20)
  m = jax.tree.map(lambda g: np.zeros(g.shape), G20[0])
  v = jax.tree.map(lambda g: np.zeros(g.shape), G20[0])
  for t, (g, u) in enumerate(zip(G20, ours, strict=True), start=1):
    g = jax.tree.map(lambda x: np.asarray(x, np.float64), g)
    m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
    v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
    expected = jax.tree.map(
      lambda m, v, g, t=t: (
        ((1 - nu1) * g + nu1 * m / (1 - b1**t))
        / (np.sqrt((1 - nu2) * g * g + nu2 * v / (1 - b2**t)) + eps)
      ),
      m,
      v,
      g,
    )
    _same([u], [expected], rtol=2e-5, atol=1e-6)


# --- A5: AggMo -------------------------------------------------------------


def test_aggmo_reductions():
  _same(_updates(M.scale_by_aggmo((0.0,)), G20)[0], G20)
  # Constant gradient: gain (1/K) sum 1/(1 - beta_i) in the limit.
  g = {'w': jnp.ones((2,)), 'b': jnp.ones(())}
  u, _ = _updates(M.scale_by_aggmo((0.0, 0.5, 0.9)), [g] * 400)
  np.testing.assert_allclose(u[-1]['w'], (1 + 2 + 10) / 3, rtol=1e-5)
  assert M.aggmo_decays(0.1, 3) == (0.0, 0.9, 0.99)


def test_aggmo_duplicate_decays_warn_and_are_kept():
  with pytest.warns(UserWarning, match='duplicates'):
    tx = M.scale_by_aggmo((0.9, 0.9))
  assert len(tx.init(G20[0]).mus) == 2


# --- A7: MARS --------------------------------------------------------------


def _small(grads, norm=0.5):
  """Rescale each tensor to a norm below 1 (so the clipping is inactive)."""
  return [
    jax.tree.map(lambda x: norm * x / jnp.linalg.norm(x), g) for g in grads
  ]


def test_mars_without_correction_is_adam_on_small_gradients():
  grads = _small(G20)
  tx = M.scale_by_mars(b1=0.9, b2=0.99, gamma=0.0)
  with jax.numpy_dtype_promotion('standard'):
    ref = _updates(optax.scale_by_adam(0.9, 0.99, 1e-8), grads)[0]
  _same(_updates(tx, grads)[0], ref)


def test_mars_exact_equals_approx_for_deterministic_gradients():
  grads = _small(G20, 0.3)
  approx, _ = _updates(M.scale_by_mars(), grads)
  tx = M.scale_by_mars(exact=True)
  state, exact = tx.init(grads[0]), []
  prev = jax.tree.map(jnp.zeros_like, grads[0])
  for g in grads:
    u, state = tx.update(g, state, grad_at_prev_params=prev)
    exact.append(u)
    prev = g
  _same(exact, approx)
  assert tx.init(grads[0]).prev_grad is None


def test_mars_first_step_and_clipping():
  g = {'w': jnp.full((2, 2), 0.01), 'b': jnp.full((2,), 10.0)}
  tx = M.scale_by_mars(b1=0.95, gamma=0.025)
  _, state = tx.update(g, tx.init(g))
  factor = 1 + 0.025 * 0.95 / 0.05  # c_1 = (1 + gamma b1 / (1 - b1)) g_1
  np.testing.assert_allclose(state.mu['w'], 0.05 * factor * 0.01, rtol=1e-6)
  # 'b' has norm > 1 after correction: clipped to unit norm per tensor.
  c_b = factor * np.full(2, 10.0)
  np.testing.assert_allclose(
    state.mu['b'], 0.05 * c_b / np.linalg.norm(c_b), rtol=1e-6
  )
  np.testing.assert_array_equal(state.prev_grad['b'], g['b'])


def test_mars_lion_and_shampoo():
  grads = _small(G20)
  u, state = _updates(M.scale_by_mars(variant='lion'), grads)
  for x in jax.tree.leaves(u[-1]):
    assert set(np.unique(np.asarray(x))) <= {-1.0, 0.0, 1.0}
  assert state.nu is None
  u, _ = _updates(M.scale_by_mars(variant='shampoo'), grads)
  w = np.asarray(u[-1]['w'], np.float64)  # 4 x 3: tall, factor sqrt(4/3)
  s = np.linalg.svd(w / math.sqrt(4 / 3), compute_uv=False)
  # Newton-Schulz (bf16, 5 steps) pushes singular values near 1 (~0.7-1.2).
  assert np.all(s > 0.6) and np.all(s < 1.3), s
  # Non-2-D tensors take the MARS-AdamW step (on the corrected gradient).
  b_ref = _updates(
    M.scale_by_mars(variant='adamw'), [{'b': g['b']} for g in grads]
  )[0][-1]['b']
  np.testing.assert_allclose(u[-1]['b'], b_ref, rtol=1e-5, atol=1e-6)


def test_mars_exact_needs_the_extra_argument():
  tx = M.scale_by_mars(exact=True)
  with pytest.raises(ValueError, match='`grad_at_prev_params=`'):
    tx.update(G20[0], tx.init(G20[0]))


@pytest.mark.standard_promotion  # optax.adamw in the non-MARS partition
def test_mars_alias_partitions_by_ndim():
  params = _grads(1, seed=7)[0]
  u, _ = _updates(M.mars(1e-3, weight_decay=0.1), G20[:3], params)
  u_m, _ = _updates(
    optax.chain(
      M.scale_by_mars(),
      optax.add_decayed_weights(0.1),
      optax.scale_by_learning_rate(1e-3),
    ),
    [{'w': g['w']} for g in G20[:3]],
    {'w': params['w']},
  )
  u_o, _ = _updates(
    optax.adamw(1e-3, b1=0.9, b2=0.95, weight_decay=0.1),
    [{'b': g['b']} for g in G20[:3]],
    {'b': params['b']},
  )
  np.testing.assert_allclose(u[-1]['w'], u_m[-1]['w'], rtol=1e-6)
  np.testing.assert_allclose(u[-1]['b'], u_o[-1]['b'], rtol=1e-6)


# --- A8: Grams -------------------------------------------------------------


def test_grams_equals_adam_with_eps_hat_when_signs_agree():
  g = {'w': jnp.full((3,), 0.2), 'b': jnp.full((2,), -0.4)}
  grads = [g] * 5  # constant gradient: sign(g) = sign(m)
  b1, b2, eps = 0.9, 0.999, 1e-6
  u, _ = _updates(M.scale_by_grams(b1, b2, eps), grads)
  for t, ut in enumerate(u, start=1):
    # sqrt(1-b2^t)/(1-b1^t) |m|/(sqrt(v)+eps) = |m_hat|/(sqrt(v_hat)+eps_hat)
    eps_hat = eps / math.sqrt(1 - b2**t)
    with jax.numpy_dtype_promotion('standard'):
      ref = _updates(optax.scale_by_adam(b1, b2, eps_hat), grads[:t])[0][-1]
    _same([ut], [ref], rtol=1e-5)


def test_grams_zero_gradient_does_not_move():
  g = {'w': jnp.array([1.0, 0.0, -1.0]), 'b': jnp.zeros(2)}
  u, _ = _updates(
    M.grams(0.1),
    [g, jax.tree.map(jnp.zeros_like, g)],
    jax.tree.map(jnp.ones_like, g),
  )
  np.testing.assert_array_equal(u[-1]['b'], 0.0)
  np.testing.assert_array_equal(u[-1]['w'], 0.0)


@pytest.mark.parametrize(
  'factory,kwargs,match',
  [
    (M.scale_by_qhm, {'decay': 1.0}, r'scale_by_qhm: `decay` must be in'),
    (
      M.scale_by_qhm,
      {'nu': 1.5},
      r'scale_by_qhm: `nu` must be in \[0.0, 1.0\]',
    ),
    (M.qhm, {'learning_rate': -1.0}, r'qhm: `learning_rate` must be >= 0.0'),
    (M.scale_by_qhadam, {'b2': -0.5}, r'scale_by_qhadam: `b2` must be in'),
    (M.scale_by_qhadam, {'eps': -1.0}, r'`eps` must be >= 0.0, got -1.0'),
    (M.aggmo_decays, {'a': 1.0}, r'aggmo_decays: `a` must be in \(0.0, 1.0\)'),
    (M.scale_by_aggmo, {'decays': (0.9, 1.1)}, r'`decays\[1\]` must be in'),
    (M.scale_by_grams, {'b1': 1.0}, r'scale_by_grams: `b1` must be in'),
    (M.scale_by_mars, {'variant': 'muon'}, r'`variant` must be one of'),
    (M.scale_by_mars, {'gamma': -0.1}, r'`gamma` must be >= 0.0'),
    (M.mars, {'learning_rate': 0.1, 'b1_1d': 1.0}, r'mars: `b1_1d` must be'),
    (
      M.grams,
      {'learning_rate': 0.1, 'weight_decay': -1.0},
      r'grams: `weight_decay` must be >= 0.0',
    ),
  ],
)
def test_validation_messages(factory, kwargs, match):
  with pytest.raises(ValueError, match=match):
    factory(**kwargs)


# --- A6: IGT ----------------------------------------------------------------


@pytest.mark.standard_promotion  # optax.adam inside igt_adam
@pytest.mark.parametrize(
  'make',
  [
    lambda: M.igt_sgd(0.05),
    lambda: M.igt_sgd(0.05, momentum=0.9),
    lambda: M.igt_adam(0.05),
  ],
  ids=['sgd', 'heavy_ball', 'adam'],
)
def test_igt_transports_exactly_on_a_quadratic(make):
  """f = 1/2 x^T A x, exact gradients at the shifted point, delta = 1:
  the transported average equals the gradient at the true iterate."""
  a = jnp.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.5]])
  tx = make()
  params = jnp.array([1.0, -2.0, 0.5])
  state = tx.init(params)
  for n in range(8):
    true = M.igt_true_params(state)
    u, state = tx.update(a @ params, state, params)
    np.testing.assert_allclose(state.v, a @ true, rtol=1e-4, atol=1e-5)
    params = optax.apply_updates(params, u)
    if n == 0:
      assert not np.allclose(params, M.igt_true_params(state))


def test_igt_needs_params():
  tx = M.igt(optax.sgd(0.1))
  with pytest.raises(ValueError, match='`params` \\(the shifted point\\)'):
    tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
  with pytest.raises(ValueError, match='igt: `delta` must be > 0.0, got 0.0'):
    M.igt(optax.sgd(0.1), delta=0.0)


# --- A3: cluster-wise multi-momentum -----------------------------------------


def _cluster_setup(k=4, seed=0):
  rng = np.random.default_rng(seed)
  cg = jnp.asarray(rng.normal(size=(k, 3)), jnp.float32)
  return cg, jnp.full((k,), 5)


def test_cluster_momentum_beta0_all_present_is_the_mean():
  cg, counts = _cluster_setup()
  tx = M.scale_by_cluster_momentum(4, decay=0.0)
  mean = cg.mean(0)
  u, _ = tx.update(mean, tx.init(mean), cluster_grads=cg, cluster_counts=counts)
  np.testing.assert_allclose(u, mean, rtol=1e-6)


def test_cluster_momentum_absent_clusters_and_priors():
  cg, _ = _cluster_setup()
  tx = M.scale_by_cluster_momentum(4, decay=0.5, priors=[1.0, 1.0, 2.0, 4.0])
  g = cg.mean(0)
  _, s1 = tx.update(
    g, tx.init(g), cluster_grads=cg, cluster_counts=jnp.array([1, 1, 0, 1])
  )
  np.testing.assert_array_equal(s1.momenta[2], 0.0)  # never visited
  np.testing.assert_array_equal(s1.momenta[0], cg[0])  # first visit: = G
  cg2 = cg + 1.0
  u, s2 = tx.update(
    g, s1, cluster_grads=cg2, cluster_counts=jnp.array([0, 2, 3, 0])
  )
  np.testing.assert_array_equal(s2.momenta[0], s1.momenta[0])  # absent
  np.testing.assert_array_equal(s2.momenta[3], s1.momenta[3])
  np.testing.assert_allclose(s2.momenta[1], 0.5 * cg[1] + 0.5 * cg2[1])
  np.testing.assert_array_equal(s2.momenta[2], cg2[2])  # first visit
  w = np.array([1.0, 1.0, 2.0, 4.0]) / 8.0  # all seen now; sums to 1
  np.testing.assert_allclose(u, np.tensordot(w, s2.momenta, axes=1), rtol=1e-6)


def test_cluster_momentum_qhm_variant():
  cg, counts = _cluster_setup()
  tx = M.scale_by_cluster_momentum(4, decay=0.0, nu=0.7)
  g = jnp.array([10.0, 0.0, -10.0])
  u, _ = tx.update(g, tx.init(g), cluster_grads=cg, cluster_counts=counts)
  np.testing.assert_allclose(u, 0.3 * g + 0.7 * cg.mean(0), rtol=1e-6)


def test_cluster_momentum_named_axis_matches_stacked(mesh):
  from jax.sharding import PartitionSpec as P

  from optax_ext import population as pop

  cg, _ = _cluster_setup(8, seed=1)
  counts = jnp.array([1, 0, 2, 3, 0, 1, 1, 4])
  stacked = M.scale_by_cluster_momentum(8, decay=0.5)
  axes = pop.PopulationAxes(axis=None, axis_name='data')
  named = M.scale_by_cluster_momentum(8, decay=0.5, axes=axes)
  g = cg.mean(0)
  u_s, s_s = stacked.update(
    g, stacked.init(g), cluster_grads=cg, cluster_counts=counts
  )

  def step(g, members, c):
    state = named.init(g)
    u, _ = named.update(g, state, cluster_grads=members[0], cluster_counts=c[0])
    return u

  u_n = jax.jit(
    jax.shard_map(
      step, mesh=mesh, in_specs=(P(), P('data'), P('data')), out_specs=P()
    )
  )(g, cg, counts)
  np.testing.assert_allclose(u_n, u_s, rtol=1e-6, atol=1e-7)


def test_cluster_momentum_validation():
  with pytest.raises(ValueError, match=r'`priors` must have shape \(3,\)'):
    M.scale_by_cluster_momentum(3, priors=[1.0, 1.0])
  with pytest.raises(ValueError, match='non-negative with a positive entry'):
    M.scale_by_cluster_momentum(2, priors=[0.0, 0.0])
  tx = M.scale_by_cluster_momentum(3)
  with pytest.raises(ValueError, match='`cluster_grads=`'):
    tx.update(jnp.zeros(2), tx.init(jnp.zeros(2)))
  with pytest.raises(ValueError, match='K=2 clusters, but num_clusters=3'):
    tx.update(
      jnp.zeros(2),
      tx.init(jnp.zeros(2)),
      cluster_grads=jnp.zeros((2, 2)),
      cluster_counts=jnp.ones(2),
    )


def test_igt_state_does_not_alias_the_params():
  """Donating params and state together must not donate a buffer twice."""
  tx = M.igt_sgd(0.1)

  def step(p, s, g):
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  params = jnp.ones((4,))
  out, _ = jax.jit(step, donate_argnums=(0, 1))(
    params, tx.init(params), jnp.ones((4,))
  )
  assert out.shape == (4,)


def test_cluster_igt_with_all_clusters_present_is_igt_on_the_weighted_mean():
  rng = np.random.default_rng(3)
  priors = jnp.array([1.0, 2.0, 1.0])
  tx = M.cluster_igt(optax.sgd(0.1), 3, priors=priors)
  ref = M.igt(optax.sgd(0.1))
  p1 = p2 = jnp.array([0.5, -1.0])
  s1, s2 = tx.init(p1), ref.init(p2)
  for _ in range(6):
    cg = jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)
    weighted = jnp.tensordot(priors / priors.sum(), cg, axes=1)
    u1, s1 = tx.update(
      weighted, s1, p1, cluster_grads=cg, cluster_counts=jnp.ones(3, jnp.int32)
    )
    u2, s2 = ref.update(weighted, s2, p2)
    p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
  np.testing.assert_allclose(p1, p2, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    M.igt_true_params(s1), M.igt_true_params(s2), rtol=1e-5, atol=1e-6
  )


def test_cluster_igt_absent_cluster_is_unchanged():
  tx = M.cluster_igt(optax.sgd(0.1), 3)
  p = jnp.zeros(2)
  cg = jnp.ones((3, 2))
  _, s = tx.update(
    cg[0], tx.init(p), p, cluster_grads=cg, cluster_counts=jnp.array([1, 0, 1])
  )
  np.testing.assert_array_equal(s.transported[1], 0.0)
  np.testing.assert_array_equal(s.visits, [1, 0, 1])
  with pytest.raises(ValueError, match='cluster_igt: `delta` must be > 0.0'):
    M.cluster_igt(optax.sgd(0.1), 3, delta=-1.0)


@pytest.mark.standard_promotion  # optax.scale_by_adam
def test_cautious_masks_disagreeing_coordinates_per_leaf():
  # A NumPy transcription of the paper's rule (per tensor, dim / (nnz + 1))
  # on a direction before the learning rate (updates agree with g).
  rng = np.random.default_rng(0)
  inner = optax.scale_by_adam()
  tx = M.cautious(inner, updates_oppose_gradient=False)
  params = {'a': jnp.zeros((3, 4)), 'b': jnp.zeros(5)}
  s_in, s_tx = inner.init(params), tx.init(params)
  for _ in range(4):
    g = jax.tree.map(
      lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params
    )
    u, s_in = inner.update(g, s_in, params)
    got, s_tx = tx.update(g, s_tx, params)
    for x, gx, y in zip(
      jax.tree.leaves(u), jax.tree.leaves(g), jax.tree.leaves(got), strict=True
    ):
      x, gx = np.asarray(x), np.asarray(gx)
      phi = (x * gx > 0).astype(np.float32)
      want = x * phi * (phi.size / (phi.sum() + 1))
      np.testing.assert_allclose(y, want, rtol=1e-6)
  with pytest.raises(TypeError, match='inner'):
    M.cautious(lambda g: g)


@pytest.mark.standard_promotion  # optax.adamw
@pytest.mark.parametrize('schedule', [False, True])
def test_cautious_adamw_with_decay_matches_the_papers_c_adamw(schedule):
  """A NumPy transcription of C-AdamW (Liang et al. 2024, Algorithm 1 with
  the authors' decoupled decay ``p <- p (1 - lr wd)`` outside the mask),
  over several steps, with exactly-zero gradient coordinates (a dead unit:
  ``m g = 0`` is masked, the comparison is strict) and both signs.

  Regression: the decay was masked and rescaled with the step
  (``cautious(lion(0.1, wd=0.5))`` from p = [1, 1], g = [1, -1] gave
  [0.9, 1.0333] where pytorch_optimizer gives [0.88333, 1.01667]).
  """
  lr0, wd, b1, b2, eps = 0.05, 0.3, 0.9, 0.999, 1e-8
  lr = (lambda c: lr0 / (1.0 + c)) if schedule else lr0
  tx = M.cautious(
    optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=0.0),
    weight_decay=wd,
    learning_rate=lr,
  )
  rng = np.random.default_rng(3)
  p = rng.normal(size=(4, 5)).astype(np.float32)
  params = jnp.asarray(p)
  state = tx.init(params)
  m = np.zeros_like(p, np.float64)
  v = np.zeros_like(p, np.float64)
  p = p.astype(np.float64)
  for t in range(1, 6):
    g = rng.normal(size=p.shape).astype(np.float32)
    g[0] = 0.0  # a dead unit: exact zeros
    g[1, :2] = -g[1, :2]
    u, state = tx.update(jnp.asarray(g), state, params)
    params = optax.apply_updates(params, u)
    rate = lr(t - 1) if schedule else lr0
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g.astype(np.float64) ** 2
    mhat, vhat = m / (1 - b1**t), v / (1 - b2**t)
    phi = (m * g > 0).astype(np.float64)
    step = mhat / (np.sqrt(vhat) + eps) * phi * (phi.size / (phi.sum() + 1))
    p = p * (1 - rate * wd) - rate * step
    np.testing.assert_allclose(params, p, rtol=2e-5, atol=2e-6, err_msg=t)
  # mask=False everywhere: no decay at all.
  plain = M.cautious(optax.sgd(0.1))
  masked = M.cautious(
    optax.sgd(0.1), weight_decay=0.5, learning_rate=0.1, mask=lambda p: False
  )
  g, w = jnp.array([1.0, -2.0]), jnp.array([3.0, 4.0])
  np.testing.assert_array_equal(
    masked.update(g, masked.init(w), w)[0], plain.update(g, plain.init(w), w)[0]
  )
  with pytest.raises(ValueError, match='`learning_rate` is required'):
    M.cautious(optax.sgd(0.1), weight_decay=0.1)
  with pytest.raises(ValueError, match='`weight_decay` must be'):
    M.cautious(optax.sgd(0.1), weight_decay=-0.1, learning_rate=0.1)
