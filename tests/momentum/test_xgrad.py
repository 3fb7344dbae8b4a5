"""XGrad weight prediction against NumPy transcriptions of the authors' code."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_ext import momentum as M


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
