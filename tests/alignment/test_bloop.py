"""Bloop: the projection, its limits, the EMA, options and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_ext import alignment


def _trees(seed):
  rng = np.random.default_rng(seed)
  make = lambda: {
    'w': jnp.asarray(rng.normal(size=(3, 2)), jnp.float32),
    'b': jnp.asarray(rng.normal(size=(2,)), jnp.float32),
  }
  return make(), make()


def _dot(a, b):
  return sum(
    jnp.vdot(x, y)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )


def test_without_ema_the_aux_part_is_orthogonal_to_the_main_gradient():
  g, a = _trees(0)
  tx = alignment.bloop(aux_weight=0.7, ema_decay=0.0, eps=0.0)
  d, _ = tx.update(g, tx.init(g), aux_grads=a)
  extra = jax.tree.map(lambda x, y: x - y, d, g)
  np.testing.assert_allclose(_dot(extra, g), 0.0, atol=1e-5)
  assert float(_dot(extra, extra)) > 1e-3


def test_zero_weight_is_the_identity_and_parallel_aux_is_removed():
  g, a = _trees(1)
  tx = alignment.bloop(aux_weight=0.0)
  d, _ = tx.update(g, tx.init(g), aux_grads=a)
  jax.tree.map(np.testing.assert_array_equal, d, g)
  tx = alignment.bloop(aux_weight=0.5, ema_decay=0.0, eps=0.0)
  parallel = jax.tree.map(lambda x: -3.0 * x, g)
  d, _ = tx.update(g, tx.init(g), aux_grads=parallel)
  jax.tree.map(
    lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), d, g
  )


def test_ema_and_hand_computation_over_steps():
  beta, lam, eps = 0.8, 0.3, 1e-7
  tx = alignment.bloop(aux_weight=lam, ema_decay=beta, eps=eps)
  g0, a0 = _trees(2)
  state = tx.init(g0)
  m = jax.tree.map(jnp.zeros_like, g0)
  for step in range(4):
    g, a = _trees(10 + step)
    d, state = tx.update(g, state, aux_grads=a)
    m = jax.tree.map(lambda mm, x: beta * mm + (1 - beta) * x, m, g)
    r = _dot(m, a) / (_dot(m, m) + eps)
    want = jax.tree.map(lambda x, y, mm, r=r: x + lam * (y - r * mm), g, a, m)
    jax.tree.map(
      lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6),
      d,
      want,
    )
  jax.tree.map(
    lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6),
    state.main_ema,
    m,
  )


def test_zero_init_matches_the_bias_corrected_ema_as_eps_vanishes():
  beta = 0.9
  zero = alignment.bloop(aux_weight=0.5, ema_decay=beta, eps=0.0)
  s = zero.init(_trees(0)[0])
  hats = None
  for step in range(3):
    g, a = _trees(20 + step)
    d, s = zero.update(g, s, aux_grads=a)
    hats = jax.tree.map(lambda m, t=step + 1: m / (1 - beta**t), s.main_ema)
    r = _dot(hats, a) / _dot(hats, hats)
    want = jax.tree.map(lambda x, y, h, r=r: x + 0.5 * (y - r * h), g, a, hats)
    jax.tree.map(
      lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5),
      d,
      want,
    )


def test_first_grad_init_starts_the_ema_at_the_first_gradient():
  g, a = _trees(3)
  tx = alignment.bloop(ema_decay=0.9, init='first_grad')
  _, state = tx.update(g, tx.init(g), aux_grads=a)
  jax.tree.map(
    lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6), state.main_ema, g
  )


def test_barrier_caps_the_ratio_and_rescale_divides():
  g = jnp.array([1.0, 0.0])
  a = jnp.array([10.0, 1.0])  # r = 10 without the barrier
  lam = 0.5
  plain = alignment.bloop(aux_weight=lam, ema_decay=0.0, eps=0.0)
  capped = alignment.bloop(aux_weight=lam, ema_decay=0.0, eps=0.0, barrier=True)
  d_plain, _ = plain.update(g, plain.init(g), aux_grads=a)
  d_cap, _ = capped.update(g, capped.init(g), aux_grads=a)
  np.testing.assert_allclose(d_plain, [1.0, 0.5], rtol=1e-6)
  # r capped at 1/lam = 2: d = g + lam * (a - 2 g).
  np.testing.assert_allclose(d_cap, [1.0 + 0.5 * 8.0, 0.5], rtol=1e-6)
  scaled = alignment.bloop(aux_weight=lam, ema_decay=0.0, eps=0.0, rescale=True)
  d_s, _ = scaled.update(g, scaled.init(g), aux_grads=a)
  np.testing.assert_allclose(d_s, np.asarray(d_plain) / 1.5, rtol=1e-6)


def test_chain_jit_and_bfloat16():
  tx = optax.chain(alignment.bloop(), optax.sgd(0.1, momentum=0.9))
  params = jnp.ones(4, jnp.bfloat16)
  state = tx.init(params)
  step = jax.jit(lambda g, s, a: tx.update(g, s, params, aux_grads=a))
  u, state = step(jnp.ones(4, jnp.bfloat16), state, jnp.ones(4, jnp.bfloat16))
  assert u.dtype == jnp.bfloat16
  assert state[0].main_ema.dtype == jnp.float32


def test_errors():
  tx = alignment.bloop()
  g = jnp.ones(2)
  with pytest.raises(ValueError, match='needs the auxiliary gradients'):
    tx.update(g, tx.init(g))
  with pytest.raises(ValueError, match='structure of the main gradient'):
    tx.update(g, tx.init(g), aux_grads={'a': g})
  for kwargs, match in (
    ({'aux_weight': -1.0}, '`aux_weight` must be >= 0.0'),
    ({'ema_decay': 1.0}, r'`ema_decay` must be in \[0.0, 1.0\)'),
    ({'eps': -1.0}, '`eps`'),
    ({'init': 'params'}, '`init` must be one of'),
  ):
    with pytest.raises(ValueError, match=match):
      alignment.bloop(**kwargs)
