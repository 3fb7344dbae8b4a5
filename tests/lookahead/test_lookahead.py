"""Lookahead and Multilayer Lookahead against references and hand algebra."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_ext import lookahead

_A = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 0.5]])
_B = np.array([1.0, -2.0, 0.5])


def _grad(w):
  """Gradient of a convex quadratic (the same in NumPy and JAX)."""
  return _A @ w - _B


def _numpy_multilayer(w0, ks, alphas, lr, steps):
  """Multilayer Lookahead as the paper describes it, one layer at a time.

  A layer counts the synchronisations of the layer below; when its count
  reaches k it moves towards the layer below, then every faster layer (and
  the fast weights) restarts from it. Stops at the first layer that does not
  synchronise.
  """
  n = len(ks)
  fast = np.array(w0, np.float64)
  slows = [fast.copy() for _ in range(n)]
  counts = [0] * n
  for _ in range(steps):
    fast = fast - lr * _grad(fast)
    below = fast
    counts[0] += 1
    i = 0
    while i < n and counts[i] == ks[i]:
      counts[i] = 0
      slows[i] = slows[i] + alphas[i] * (below - slows[i])
      below = slows[i]
      for j in range(i):
        slows[j] = slows[i].copy()
      fast = slows[i].copy()
      i += 1
      if i < n:
        counts[i] += 1
  return fast, slows


def _run(tx, w0, steps, grad=_grad):
  params = jnp.asarray(w0, jnp.float32)
  state = tx.init(params)
  step = jax.jit(tx.update)
  for _ in range(steps):
    u, state = step(jnp.asarray(grad(np.asarray(params)), jnp.float32), state,
                    params)  # fmt: skip
    params = optax.apply_updates(params, u)
  return params, state


def test_three_layers_equal_the_numpy_recursion():
  ks, alphas, lr = (2, 3, 2), (0.5, 0.7, 0.3), 0.1
  w0 = np.array([1.0, -1.0, 2.0])
  tx = lookahead.multilayer_lookahead(optax.sgd(lr), ks, alphas)
  for steps in (1, 2, 6, 12, 13, 40):
    params, state = _run(tx, w0, steps)
    fast, slows = _numpy_multilayer(w0, ks, alphas, lr, steps)
    np.testing.assert_allclose(params, fast, rtol=1e-5, atol=1e-6)
    for layer in range(3):
      np.testing.assert_allclose(
        lookahead.multilayer_lookahead_slow_params(state, layer),
        slows[layer],
        rtol=1e-5,
        atol=1e-6,
      )


@pytest.mark.standard_promotion  # optax.lookahead is not strict-clean
def test_lookahead_matches_optax_lookahead_step_for_step():
  inner = optax.sgd(0.05, momentum=0.9)
  ours = lookahead.lookahead(inner, sync_period=3, slow_step_size=0.6)
  ref = optax.lookahead(inner, sync_period=3, slow_step_size=0.6)
  w = jnp.array([1.0, -1.0, 2.0])
  ref_params = optax.LookaheadParams.init_synced(w)
  s_ours, s_ref = ours.init(w), ref.init(ref_params)
  for _ in range(20):
    u, s_ours = ours.update(_grad(np.asarray(w)).astype(np.float32), s_ours, w)
    w = optax.apply_updates(w, u)
    g_ref = _grad(np.asarray(ref_params.fast)).astype(np.float32)
    u_ref, s_ref = ref.update(g_ref, s_ref, ref_params)
    ref_params = optax.apply_updates(ref_params, u_ref)
    np.testing.assert_allclose(w, ref_params.fast, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
      lookahead.lookahead_slow_params(s_ours),
      ref_params.slow,
      rtol=1e-6,
      atol=1e-6,
    )


def test_one_layer_multilayer_equals_lookahead_bitwise():
  inner = optax.sgd(0.05, momentum=0.9, nesterov=True)
  one = lookahead.multilayer_lookahead(inner, (4,), (0.3,), reset_state=True)
  single = lookahead.lookahead(inner, 4, 0.3, reset_state=True)
  w0 = np.array([1.0, -1.0, 2.0])
  p1, s1 = _run(one, w0, 17)
  p2, s2 = _run(single, w0, 17)
  np.testing.assert_array_equal(p1, p2)
  np.testing.assert_array_equal(
    lookahead.multilayer_lookahead_slow_params(s1),
    lookahead.lookahead_slow_params(s2),
  )


@pytest.mark.standard_promotion  # optax.lookahead is not strict-clean
def test_two_layers_equal_nested_optax_lookahead():
  k1, k2, a1, a2, lr = 3, 2, 0.5, 0.4, 0.1
  ours = lookahead.multilayer_lookahead(optax.sgd(lr), (k1, k2), (a1, a2))
  # The outer optax.lookahead counts base steps: its period is k1 * k2.
  nested = optax.lookahead(optax.lookahead(optax.sgd(lr), k1, a1), k1 * k2, a2)
  w = jnp.array([1.0, -1.0, 2.0])
  synced = optax.LookaheadParams.init_synced(w)
  ref_params = optax.LookaheadParams(fast=synced, slow=synced)
  s_ours, s_ref = ours.init(w), nested.init(ref_params)
  for _ in range(25):
    u, s_ours = ours.update(_grad(np.asarray(w)).astype(np.float32), s_ours, w)
    w = optax.apply_updates(w, u)
    g = _grad(np.asarray(ref_params.fast.fast)).astype(np.float32)
    u_ref, s_ref = nested.update(g, s_ref, ref_params)
    ref_params = optax.apply_updates(ref_params, u_ref)
    np.testing.assert_allclose(w, ref_params.fast.fast, rtol=1e-5, atol=1e-6)
    slow1, slow2 = s_ours.slow_params
    np.testing.assert_allclose(slow1, ref_params.fast.slow, atol=1e-6)
    np.testing.assert_allclose(slow2, ref_params.slow.fast, atol=1e-6)


def test_constant_gradient_drift_is_the_product_of_step_sizes():
  lr, alphas, ks = 0.01, (0.5, 0.6), (2, 3)
  tx = lookahead.multilayer_lookahead(optax.sgd(lr), ks, alphas)
  steps = 6 * 200
  params, state = _run(tx, np.zeros(1), steps, grad=lambda w: np.ones(1))
  slow = lookahead.multilayer_lookahead_slow_params(state)
  drift = -float(slow[0]) / steps
  np.testing.assert_allclose(drift, alphas[0] * alphas[1] * lr, rtol=1e-2)
  # The long-run rate (rel 1e-3) once the start-up transient is removed.
  _, late = _run(tx, np.zeros(1), 2 * steps, grad=lambda w: np.ones(1))
  late_slow = lookahead.multilayer_lookahead_slow_params(late)
  rate = -float(late_slow[0] - slow[0]) / steps
  np.testing.assert_allclose(rate, alphas[0] * alphas[1] * lr, rtol=1e-3)


def test_reset_state_reinitialises_momentum_at_layer_one_syncs():
  tx = lookahead.multilayer_lookahead(
    optax.sgd(0.1, momentum=0.9), (2, 2), (0.5, 0.5), reset_state=True
  )
  params = jnp.ones(2)
  state = tx.init(params)
  for step in range(1, 9):
    u, state = tx.update(jnp.ones(2), state, params)
    params = optax.apply_updates(params, u)
    trace = optax.tree.get(state.inner_state, 'trace')
    if step % 2 == 0:
      np.testing.assert_array_equal(trace, 0.0)
    else:  # one step after a reset: the trace is the gradient itself
      np.testing.assert_array_equal(trace, 1.0)


def test_without_reset_the_momentum_survives_syncs():
  tx = lookahead.lookahead(optax.sgd(0.1, momentum=0.9), 2, 0.5)
  params = jnp.ones(2)
  state = tx.init(params)
  for _ in range(2):
    u, state = tx.update(jnp.ones(2), state, params)
    params = optax.apply_updates(params, u)
  np.testing.assert_allclose(optax.tree.get(state, 'trace'), 1.9)


def test_non_sync_steps_return_the_inner_update_unchanged():
  inner = optax.sgd(0.1, momentum=0.5)
  tx = lookahead.multilayer_lookahead(inner, (3, 2), (0.5, 0.5))
  params = jnp.array([1.0, 2.0])
  s, s_in = tx.init(params), inner.init(params)
  for step in range(1, 3):
    g = jnp.array([0.3, -0.7]) * step
    u, s = tx.update(g, s, params)
    u_in, s_in = inner.update(g, s_in, params)
    np.testing.assert_array_equal(u, u_in)
    params = optax.apply_updates(params, u)


def test_count_wraps_at_the_outermost_period():
  tx = lookahead.multilayer_lookahead(optax.sgd(0.1), (2, 3), (0.5, 0.5))
  params = jnp.zeros(1)
  state = tx.init(params)
  counts = []
  for _ in range(7):
    u, state = tx.update(jnp.ones(1), state, params)
    params = optax.apply_updates(params, u)
    counts.append(int(state.count))
  assert counts == [1, 2, 3, 4, 5, 0, 1]


def test_chained_after_clipping_and_slow_params_found_in_the_chain():
  tx = optax.chain(
    optax.clip_by_global_norm(0.5),
    lookahead.multilayer_lookahead(optax.sgd(0.1), (2, 2), (0.5, 0.5)),
  )
  params = jnp.array([3.0, 4.0])
  state = tx.init(params)
  for _ in range(4):
    u, state = tx.update(params, state, params)  # gradient of |w|^2 / 2
    params = optax.apply_updates(params, u)
  slow = lookahead.multilayer_lookahead_slow_params(state)
  assert slow.shape == (2,) and bool(jnp.all(slow < jnp.array([3.0, 4.0])))
  np.testing.assert_array_equal(
    lookahead.multilayer_lookahead_slow_params(state, 0), slow
  )


def test_bfloat16_params_with_float32_slow_weights():
  tx = lookahead.lookahead(optax.sgd(0.01), 2, 0.5, slow_dtype=jnp.float32)
  params = jnp.ones(3, jnp.bfloat16)
  state = tx.init(params)
  assert state.slow_weights.dtype == jnp.float32
  for _ in range(4):
    u, state = tx.update(jnp.ones(3, jnp.bfloat16), state, params)
    assert u.dtype == jnp.bfloat16
    params = optax.apply_updates(params, u)
  # Two syncs of 1 - 0.5 * 0.02 each, up to the bfloat16 rounding of the
  # fast steps (spacing 2**-8 below 1).
  np.testing.assert_allclose(state.slow_weights, 0.98, atol=4e-3)


def test_slow_params_helper_needs_exactly_one_state():
  with pytest.raises(ValueError, match='exactly one LookaheadState.*found 0'):
    lookahead.lookahead_slow_params(optax.sgd(0.1).init(jnp.zeros(1)))
  tx = lookahead.lookahead(optax.sgd(0.1))
  two = (tx.init(jnp.zeros(1)), tx.init(jnp.zeros(1)))
  with pytest.raises(ValueError, match='found 2'):
    lookahead.lookahead_slow_params(two)


@pytest.mark.parametrize(
  ('kwargs', 'exc', 'match'),
  [
    ({'sync_periods': (0, 2)}, ValueError, r'`sync_periods\[0\]`.*>= 1.*0'),
    ({'sync_periods': (2.5, 2)}, TypeError, r'`sync_periods\[0\]`.*integer'),
    (
      {'slow_step_sizes': (0.5, 1.5)},
      ValueError,
      r'`slow_step_sizes\[1\]`.*\(0.0, 1.0\].*1.5',
    ),
    (
      {'slow_step_sizes': (0.0, 0.5)},
      ValueError,
      r'`slow_step_sizes\[0\]`.*\(0.0, 1.0\].*0.0',
    ),
    ({'slow_step_sizes': (float('nan'), 0.5)}, ValueError, 'nan'),
    ({'sync_periods': (2,)}, ValueError, 'same length'),
    ({'sync_periods': ()}, TypeError, 'non-empty tuple'),
    ({'sync_periods': 5}, TypeError, 'non-empty tuple'),
  ],
)
def test_multilayer_validation(kwargs, exc, match):
  with pytest.raises(exc, match=match):
    lookahead.multilayer_lookahead(optax.sgd(0.1), **kwargs)


@pytest.mark.parametrize(
  ('kwargs', 'match'),
  [
    ({'sync_period': 0}, r'lookahead: `sync_period` must be.*>= 1.*got 0'),
    ({'slow_step_size': -0.1}, r'`slow_step_size` must be.*\(0.0, 1.0\]'),
    ({'slow_step_size': 1.01}, r'`slow_step_size`.*got 1.01'),
  ],
)
def test_lookahead_validation(kwargs, match):
  with pytest.raises(ValueError, match=match):
    lookahead.lookahead(optax.sgd(0.1), **kwargs)


def test_update_without_params_raises():
  tx = lookahead.lookahead(optax.sgd(0.1))
  state = tx.init(jnp.zeros(2))
  with pytest.raises(ValueError, match='`params`'):
    tx.update(jnp.zeros(2), state)


@pytest.mark.parametrize(
  'make, where',
  [
    (lambda: lookahead.lookahead(optax.sgd(0.1), sync_period=2), 'lookahead'),
    (
      lambda: lookahead.multilayer_lookahead(
        optax.sgd(0.1), sync_periods=(2, 4), slow_step_sizes=(0.5, 0.5)
      ),
      'multilayer_lookahead',
    ),
  ],
)
def test_not_outermost_raises_at_the_next_period(make, where):
  """Regression: a transform chained after Lookahead (its docstring says it
  must be outermost) changed the applied update and drifted silently."""
  params = jnp.array([1.0, -2.0, 3.0])
  grads = jnp.array([0.5, 0.25, -1.0])

  def run(tx, steps):
    state = tx.init(params)
    p = params
    step = jax.jit(tx.update)
    for _ in range(steps):
      u, state = step(grads, state, p)
      p = optax.apply_updates(p, u)
    return jax.block_until_ready(p)

  run(make(), 8)  # outermost: fine over several periods
  run(optax.chain(optax.clip_by_global_norm(1.0), make()), 8)  # before: fine
  with pytest.raises(Exception, match=rf'{where}: .*not the slow weights'):
    run(optax.chain(make(), optax.scale(0.5)), 4)
