"""Ranger21 against its reference schedule and hand computations."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_ext import momentum as M

RNG = np.random.default_rng(1)


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
