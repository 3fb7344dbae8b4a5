"""PNM and AdaPNM against a NumPy transcription of the authors' code."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_ext import momentum as M

RNG = np.random.default_rng(1)


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
