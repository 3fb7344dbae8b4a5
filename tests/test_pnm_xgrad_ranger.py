"""PNM/AdaPNM, XGrad and Ranger21 against hand computations."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_ext import momentum as M

RNG = np.random.default_rng(1)


# -------------------------------------------------------------- PNM / AdaPNM


def _pnm_numpy(p, grads, lr, b1, b0, wd=0.0, ada=None):
  """zeke-xie's pnm.py / adapnm.py (decoupled decay), in NumPy float64."""
  pos, neg = np.zeros_like(p), np.zeros_like(p)
  v, vmax = np.zeros_like(p), np.zeros_like(p)
  for t, g in enumerate(grads, start=1):
    p = p * (1 - lr * wd)
    a, b = (pos, neg) if t % 2 == 1 else (neg, pos)
    a = b1**2 * a + (1 - b1**2) * g
    if t % 2 == 1:
      pos = a
    else:
      neg = a
    delta = ((1 + b0) * a - b0 * b) / np.sqrt((1 + b0) ** 2 + b0**2)
    if ada is None:
      p = p - lr * delta
    else:
      b2, eps = ada
      v = b2 * v + (1 - b2) * g * g
      vmax = np.maximum(vmax, v)
      denom = np.sqrt(vmax) / np.sqrt(1 - b2**t) + eps
      p = p - lr / (1 - b1**t) * delta / denom
  return p


def _run(tx, grads, params):
  state = tx.init(params)
  for g in grads:
    u, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
    params = optax.apply_updates(params, u)
  return params, state


@pytest.mark.parametrize('b0', [1.0, 0.5])
@pytest.mark.parametrize('wd', [0.0, 0.1])
def test_pnm_matches_reference(b0, wd):
  p0 = RNG.normal(size=(3, 2))
  grads = [RNG.normal(size=(3, 2)) for _ in range(9)]
  want = _pnm_numpy(p0, grads, 0.05, 0.9, b0, wd)
  got, _ = _run(M.pnm(0.05, b0=b0, weight_decay=wd), grads, jnp.asarray(p0))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('wd', [0.0, 0.1])
def test_adapnm_matches_reference(wd):
  p0 = RNG.normal(size=(4,))
  grads = [RNG.normal(size=(4,)) for _ in range(9)]
  want = _pnm_numpy(p0, grads, 0.01, 0.9, 1.0, wd, ada=(0.999, 1e-8))
  got, _ = _run(M.adapnm(0.01, weight_decay=wd), grads, jnp.asarray(p0))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_pnm_constant_gradient_limit():
  g = jnp.array([1.0, -2.0])
  tx = M.scale_by_pnm(b0=1.0)
  state = tx.init(g)
  for _ in range(200):
    u, state = tx.update(g, state)
  np.testing.assert_allclose(u, g / np.sqrt(5.0), rtol=1e-5)


def test_pnm_b0_zero_is_the_current_parity_buffer():
  tx = M.scale_by_pnm(b0=0.0)
  state = tx.init(jnp.zeros(2))
  for i in range(5):
    g = jnp.asarray(RNG.normal(size=2), jnp.float32)
    u, state = tx.update(g, state)
    buffer = state.mu_odd if i % 2 == 0 else state.mu_even
    np.testing.assert_array_equal(u, buffer)


def test_adapnm_softplus_smooths_the_denominator():
  g = jnp.array([1e-6, 1.0])
  plain = M.scale_by_adapnm(amsgrad=False)
  smooth = M.scale_by_adapnm(amsgrad=False, softplus_beta=50.0)
  u1, _ = plain.update(g, plain.init(g))
  u2, _ = smooth.update(g, smooth.init(g))
  # A tiny denominator x becomes softplus(50 x) / 50 >= log(2) / 50.
  d1 = 2 * 0.19 / np.sqrt(5) / 0.1 * np.asarray(g) / np.asarray(u1)
  np.testing.assert_allclose(
    np.asarray(u2),
    np.asarray(u1) * d1 / (np.logaddexp(0, 50 * d1) / 50),
    rtol=1e-4,
  )
  assert abs(float(u2[0])) < abs(float(u1[0])) / 10


# --------------------------------------------------------------------- XGrad


def _quadratic_grad(x):
  a = np.diag([1.0, 3.0, 0.5])
  return a @ x - np.array([1.0, -1.0, 0.5])


def _xgrad_sgd_numpy(x, steps, lr, mu, s, wd=0.0):
  """guanleics/XGrad SGD.py with load_predicted_weights, in NumPy."""
  buf = None
  for _ in range(steps):
    at = x if buf is None else x - s * lr * buf  # no prediction at step 1
    g = _quadratic_grad(at) + wd * x
    buf = (1 - 0.0) * g if buf is None else mu * buf + g
    x = x - lr * buf
  predicted = x - s * lr * buf
  return x, predicted


def _xgrad_adam_numpy(x, steps, lr, s, b1=0.9, b2=0.999, eps=1e-8):
  """guanleics/XGrad Adam.py with load_predicted_weights, in NumPy."""
  m, v, direction = np.zeros_like(x), np.zeros_like(x), None
  for t in range(1, steps + 1):
    at = x if direction is None else x - s * lr * direction
    g = _quadratic_grad(at)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    direction = (m / (1 - b1**t)) / (np.sqrt(v) / np.sqrt(1 - b2**t) + eps)
    x = x - lr * direction
  return x, x - s * lr * direction


def _loop(tx, x0, steps):
  params = jnp.asarray(x0, jnp.float32)  # the predicted point
  state = tx.init(params)
  for _ in range(steps):
    g = jnp.asarray(_quadratic_grad(np.asarray(params, np.float64)))
    u, state = tx.update(g.astype(jnp.float32), state, params)
    params = optax.apply_updates(params, u)
  return M.xgrad_true_params(state), params


@pytest.mark.parametrize('s', [1.0, 2.0])
@pytest.mark.parametrize('wd', [0.0, 0.05])
def test_xgrad_sgd_matches_reference(s, wd):
  x0 = np.array([2.0, -1.0, 0.5])
  want_true, want_pred = _xgrad_sgd_numpy(x0, 15, 0.1, 0.9, s, wd)
  got_true, got_pred = _loop(
    M.xgrad_sgd(0.1, momentum=0.9, weight_decay=wd, steps_ahead=s), x0, 15
  )
  np.testing.assert_allclose(got_true, want_true, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got_pred, want_pred, rtol=1e-5, atol=1e-6)


@pytest.mark.standard_promotion  # optax.scale_by_adam
def test_xgrad_adam_matches_reference():
  x0 = np.array([2.0, -1.0, 0.5])
  want_true, want_pred = _xgrad_adam_numpy(x0, 15, 0.05, 1.0)
  got_true, got_pred = _loop(M.xgrad_adam(0.05), x0, 15)
  np.testing.assert_allclose(got_true, want_true, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got_pred, want_pred, rtol=1e-5, atol=1e-6)


@pytest.mark.standard_promotion
def test_xgrad_zero_steps_ahead_is_the_base_optimizer():
  x0 = jnp.array([2.0, -1.0, 0.5])
  for ours, base in (
    (M.xgrad_sgd(0.1, steps_ahead=0.0), optax.sgd(0.1, momentum=0.9)),
    (M.xgrad_adamw(0.05, steps_ahead=0.0), optax.adamw(0.05)),
  ):
    p1, p2 = x0, x0
    s1, s2 = ours.init(p1), base.init(p2)
    for _ in range(10):
      g1 = jnp.asarray(_quadratic_grad(np.asarray(p1)), jnp.float32)
      g2 = jnp.asarray(_quadratic_grad(np.asarray(p2)), jnp.float32)
      u1, s1 = ours.update(g1, s1, p1)
      u2, s2 = base.update(g2, s2, p2)
      p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    np.testing.assert_allclose(p1, p2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(M.xgrad_true_params(s1), p2, rtol=1e-5)


def test_xgrad_first_gradient_is_at_the_initial_point_and_params_shift():
  tx = M.xgrad_sgd(0.1)
  params = jnp.array([1.0, 2.0])
  state = tx.init(params)
  np.testing.assert_array_equal(M.xgrad_true_params(state), params)
  u, state = tx.update(jnp.ones(2), state, params)
  # The model now holds the predicted point, not the true iterate.
  assert not np.allclose(
    optax.apply_updates(params, u), M.xgrad_true_params(state)
  )


def test_xgrad_uses_the_next_learning_rate_for_the_prediction():
  rates = lambda count: 0.1 * (jnp.asarray(count, jnp.float32) + 1.0)  # noqa: E731
  tx = M.xgrad(optax.trace(0.5), rates)
  params = jnp.array([0.0])
  u, state = tx.update(jnp.array([1.0]), tx.init(params), params)
  # true: 0 - 0.1 * 1; predicted: true - 1 * 0.2 * 1.
  np.testing.assert_allclose(M.xgrad_true_params(state), [-0.1])
  np.testing.assert_allclose(u, [-0.3], rtol=1e-6)


def test_xgrad_requires_params_and_validates():
  tx = M.xgrad_sgd(0.1)
  with pytest.raises(ValueError, match='xgrad: `params`'):
    tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
  with pytest.raises(ValueError, match='`momentum` must be in'):
    M.xgrad_sgd(0.1, momentum=0.0)
  with pytest.raises(ValueError, match='`steps_ahead` must be >= 0'):
    M.xgrad_adam(0.1, steps_ahead=-1.0)
  with pytest.raises(ValueError, match='expected exactly one XgradState'):
    M.xgrad_true_params(optax.sgd(0.1).init(jnp.ones(2)))


# ------------------------------------------------------------------ Ranger21


def _reference_schedule(lr, t, total, warmup, start, min_lr=3e-5):
  """Ranger21's warmup_dampening then get_warm_down at 1-based step t."""
  if t <= warmup:
    lr = lr * min(1.0, t / warmup)
  if t < start:
    return lr
  pct = min(max(t + 1 - start, 1) / (total - start + 1), 1.0)
  return max(lr - (lr - min_lr) * pct, min_lr)


@pytest.mark.parametrize(
  'total,warmup_arg,warmup',
  [(100, 10, 10), (100, None, 22), (20000, None, 2000)],
)
def test_ranger21_schedule_matches_reference(total, warmup_arg, warmup):
  sched = M.ranger21_schedule(1e-3, total, num_warmup_iterations=warmup_arg)
  start = int(0.72 * total)
  counts = np.unique(np.linspace(0, total - 1, 60).astype(int))
  got = np.array([float(sched(c)) for c in counts])
  want = [
    _reference_schedule(1e-3, c + 1, total, warmup, start) for c in counts
  ]
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_ranger21_reduces_to_adapnm_when_extras_are_off():
  params = {
    'w': jnp.asarray(RNG.normal(size=(3, 4)), jnp.float32),
    'b': jnp.asarray(RNG.normal(size=4), jnp.float32),
  }
  grads = [
    jax.tree.map(
      lambda p: jnp.asarray(RNG.normal(size=p.shape), jnp.float32), params
    )
    for _ in range(6)
  ]
  sched = M.ranger21_schedule(0.01, 10, num_warmup_iterations=3)
  ours = M.ranger21(
    sched,
    weight_decay=0.0,
    norm_loss_factor=0.0,
    agc_clipping=1e9,
    centralize=False,
    normalize=False,
    softplus_beta=None,
    lookahead_sync_period=1,
    lookahead_slow_step_size=1.0,
  )
  want = optax.chain(M.scale_by_adapnm(), optax.scale_by_learning_rate(sched))
  p1, p2 = params, params
  s1, s2 = ours.init(p1), want.init(p2)
  for g in grads:
    u1, s1 = ours.update(g, s1, p1)
    u2, s2 = want.update(g, s2, p2)
    p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), p1, p2)


def _direction(g, params, **kwargs):
  """Ranger21's (lr = 1) step without Lookahead, for one gradient."""
  defaults = dict(
    learning_rate=lambda c: jnp.float32(1.0),
    agc_clipping=1e9,
    centralize=False,
    normalize=False,
    softplus_beta=None,
    lookahead_sync_period=1,
    lookahead_slow_step_size=1.0,
    weight_decay=0.0,
    norm_loss_factor=0.0,
  )
  tx = M.ranger21(**{**defaults, **kwargs})
  u, _ = tx.update(g, tx.init(params), params)
  return u


def test_ranger21_stable_decay_and_norm_loss():
  params = {'w': jnp.array([[3.0, 0.0], [4.0, 1.0]])}  # column norms 5, 1
  g = {'w': jnp.array([[1.0, 2.0], [-1.0, 0.5]])}
  base = _direction(g, params)['w']
  decayed = _direction(g, params, weight_decay=0.1)['w']
  # sigma = sqrt(mean(v / (1 - b2))) = sqrt(mean(g^2)) at the first step.
  sigma = np.sqrt(np.mean(np.square(g['w'])))
  np.testing.assert_allclose(
    decayed - base, -0.1 / sigma * params['w'], rtol=1e-5
  )
  normed = _direction(g, params, norm_loss_factor=0.01)['w']
  unit = np.array([5.0, 1.0])  # per output column (channel_axis=-1)
  want = -2 * 0.01 * (1 - 1 / (unit + 1e-8)) * params['w']
  np.testing.assert_allclose(normed - base, want, rtol=1e-5, atol=1e-7)


def test_ranger21_centralises_and_normalises_per_output_channel():
  params = {'w': jnp.ones((4, 3))}
  g = {'w': jnp.asarray(RNG.normal(size=(4, 3)), jnp.float32)}
  tx = M.ranger21(
    lambda c: jnp.float32(1.0),
    agc_clipping=1e9,
    softplus_beta=None,
    weight_decay=0.0,
    norm_loss_factor=0.0,
    lookahead_sync_period=1,
    lookahead_slow_step_size=1.0,
  )
  state = tx.init(params)
  _, state = tx.update(g, state, params)
  # The second moment saw the centralised, normalised gradient.
  gc = np.asarray(g['w']) - np.asarray(g['w']).mean(axis=0, keepdims=True)
  gn = gc / (gc.std(ddof=1) + 1e-8)
  nu = optax.tree.get(state, 'nu')['w']
  np.testing.assert_allclose(nu, 0.001 * gn**2, rtol=1e-4)


def test_ranger21_needs_num_iterations_with_a_constant_rate():
  with pytest.raises(ValueError, match='`num_iterations` is required'):
    M.ranger21(1e-3)
  with pytest.raises(ValueError, match='`num_iterations` must be an integer'):
    M.ranger21_schedule(1e-3, 0)
