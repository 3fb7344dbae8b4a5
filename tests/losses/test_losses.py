"""CFG losses: the baseline, gradients, the analytic minimiser, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_ext import losses

B = 6


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  cond, uncond, target = (
    jnp.asarray(rng.normal(size=(B, 2, 3)), jnp.float32) for _ in range(3)
  )
  drop = jnp.array([False, True, False, False, True, False])
  return cond, uncond, target, drop


def _baseline(cond, uncond, target, drop):
  pred = jnp.where(drop[:, None, None], uncond, cond)
  return jnp.sum((target - pred) ** 2, axis=(1, 2))


def test_standard_loss_and_the_two_reductions_to_it():
  cond, uncond, target, drop = _batch()
  want = _baseline(cond, uncond, target, drop)
  got = losses.cfg_standard_loss(cond, uncond, target, drop_mask=drop)
  assert got.shape == (B,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=1e-6)
  no_align = losses.cfg_aligned_loss(
    cond, uncond, target, 3.0, drop_mask=drop, align_weight=0.0
  )
  np.testing.assert_allclose(no_align, want, rtol=1e-6)
  no_guidance = losses.cfg_aligned_loss(
    cond, uncond, target, 0.0, drop_mask=drop
  )
  np.testing.assert_allclose(no_guidance, want, rtol=1e-6)
  aligned = losses.cfg_aligned_loss(cond, uncond, target, 2.0, drop_mask=drop)
  assert not np.allclose(aligned, want)  # the guidance matters
  np.testing.assert_allclose(aligned[drop], want[drop], rtol=1e-6)


def test_gradients_match_the_closed_form():
  cond, uncond, target, drop = _batch(1)
  w = jnp.array([0.5, 1.0, 2.0, 3.0, 0.0, 1.5])
  rho, lam = 0.7, jnp.arange(1.0, B + 1.0)

  def total(c, u):
    return jnp.sum(
      losses.cfg_aligned_loss(
        c, u, target, w, drop_mask=drop, align_weight=rho, weights=lam
      )
    )

  g_cond, g_uncond = jax.grad(total, argnums=(0, 1))(cond, uncond)
  wb = w[:, None, None]
  guided = (1 + wb) * cond - wb * uncond
  want = (
    -2
    * lam[:, None, None]
    * ((1 - rho) * (target - cond) + rho * (1 + wb) * (target - guided))
  )
  kept = ~drop
  np.testing.assert_allclose(g_cond[kept], want[kept], rtol=1e-5, atol=1e-6)
  # Dropped examples use only the unconditional prediction ...
  np.testing.assert_array_equal(g_cond[drop], 0.0)
  want_u = -2 * lam[:, None, None] * (target - uncond)
  np.testing.assert_allclose(g_uncond[drop], want_u[drop], rtol=1e-5)
  # ... and the stop-gradient keeps kept examples out of the null branch.
  np.testing.assert_array_equal(g_uncond[kept], 0.0)


def test_without_stop_gradient_the_null_branch_is_trained_on_kept_examples():
  cond, uncond, target, drop = _batch(2)

  def total(u):
    return jnp.sum(
      losses.cfg_aligned_loss(
        cond, u, target, 2.0, drop_mask=drop, stop_grad_uncond=False
      )
    )

  g = jax.grad(total)(uncond)
  guided = 3.0 * cond - 2.0 * uncond
  np.testing.assert_allclose(
    g[~drop], (2 * 2.0 * (target - guided))[~drop], rtol=1e-5
  )


@pytest.mark.parametrize('rho', [1.0, 0.4])
def test_least_squares_fit_recovers_the_minimiser(rho):
  """Scalar predictors per class fitted to exact-mean data.

  Targets given class c are m_c +- 1 (so E[eps | c] = m_c exactly); the
  null branch, trained on dropped examples only, learns the marginal mean.
  """
  means = jnp.array([1.0, -2.0, 0.5])
  w = 2.0
  classes = jnp.repeat(jnp.arange(3), 20)
  signs = jnp.tile(jnp.array([1.0, -1.0]), 30)
  drop = jnp.tile(
    jnp.array([True, True] + [False] * 8), 6
  )  # 20% dropped, balanced over classes and signs
  target = (means[classes] + signs)[:, None]

  def loss(p):
    cond = p['cond'][classes][:, None]
    uncond = jnp.broadcast_to(p['uncond'], cond.shape)
    return jnp.mean(
      losses.cfg_aligned_loss(
        cond, uncond, target, w, drop_mask=drop, align_weight=rho
      )
    )

  # Alternate exactly: the null branch's optimum does not depend on cond.
  params = {'cond': jnp.zeros(3), 'uncond': jnp.zeros(())}
  opt = optax.sgd(0.05)
  state = opt.init(params)
  step = jax.jit(
    lambda p, s: (lambda u_s: (optax.apply_updates(p, u_s[0]), u_s[1]))(
      opt.update(jax.grad(loss)(p), s)
    )
  )
  for _ in range(3000):
    params, state = step(params, state)
  eps_u = float(jnp.mean(means))
  np.testing.assert_allclose(params['uncond'], eps_u, atol=1e-4)
  want = ((1 - rho) * means + rho * (1 + w) * (means + w * eps_u)) / (
    (1 - rho) + rho * (1 + w) ** 2
  )
  np.testing.assert_allclose(params['cond'], want, atol=1e-4)
  if rho == 1.0:  # CFG at the training w gives back the true means
    guided = losses.cfg_guided_prediction(
      params['cond'], jnp.full(3, params['uncond']), w
    )
    np.testing.assert_allclose(guided, means, atol=1e-3)


def test_guided_prediction_per_example_guidance_and_dtype():
  cond = jnp.ones((3, 2), jnp.bfloat16)
  uncond = jnp.zeros((3, 2), jnp.bfloat16)
  out = losses.cfg_guided_prediction(cond, uncond, jnp.array([0.0, 1.0, 2.0]))
  assert out.dtype == jnp.bfloat16
  np.testing.assert_array_equal(out[:, 0], [1.0, 2.0, 3.0])


def test_jit_with_traced_guidance():
  cond, uncond, target, drop = _batch(3)
  f = jax.jit(
    lambda w: losses.cfg_aligned_loss(cond, uncond, target, w, drop_mask=drop)
  )
  np.testing.assert_allclose(
    f(jnp.float32(1.5)),
    losses.cfg_aligned_loss(cond, uncond, target, 1.5, drop_mask=drop),
    rtol=1e-6,
  )


@pytest.mark.parametrize(
  ('kwargs', 'match'),
  [
    ({'guidance': -1.0}, '`guidance` must be >= 0.0, got -1.0'),
    ({'align_weight': 1.5}, r'`align_weight` must be in \[0.0, 1.0\]'),
    ({'guidance': jnp.ones(4)}, r'`guidance` must be a scalar or .*\(6,\)'),
    ({'drop_mask': jnp.zeros(5, bool)}, r'`drop_mask` must have shape \(6,\)'),
    ({'weights': jnp.ones((6, 1))}, '`weights` must be a scalar'),
    ({'target': jnp.zeros((6, 2))}, r'`target` \(6, 2\)'),
  ],
)
def test_bad_input_raises(kwargs, match):
  cond, uncond, target, drop = _batch()
  args = {
    'target': target,
    'guidance': 1.0,
    'drop_mask': drop,
    **kwargs,
  }
  with pytest.raises(ValueError, match=match):
    losses.cfg_aligned_loss(
      cond,
      uncond,
      args.pop('target'),
      args.pop('guidance'),
      **args,
    )


def _apg_reference(cond, uncond, w, eta, beta, r, running):
  """NumPy transcription of the paper's Algorithm (normalized_guidance)."""
  cond, uncond = np.asarray(cond, np.float64), np.asarray(uncond, np.float64)
  diff = cond - uncond
  if running is not None:
    diff = diff + beta * running
  running = diff.copy()
  axes = tuple(range(1, diff.ndim))
  if r > 0:
    norm = np.sqrt(np.sum(diff**2, axis=axes, keepdims=True))
    diff = diff * np.minimum(1.0, r / norm)
  unit = cond / np.sqrt(np.sum(cond**2, axis=axes, keepdims=True))
  parallel = np.sum(diff * unit, axis=axes, keepdims=True) * unit
  return cond + w * ((diff - parallel) + eta * parallel), running


def test_apg_matches_the_paper_over_sampling_steps():
  rng = np.random.default_rng(0)
  running_ref = running = None
  for _ in range(3):  # momentum carries across steps
    cond = rng.normal(size=(3, 2, 4, 4))
    uncond = cond + 0.5 * rng.normal(size=cond.shape)
    want, running_ref = _apg_reference(cond, uncond, 6.0, 0.2, -0.5, 1.5,
                                       running_ref)  # fmt: skip
    got, running = losses.apg_guided_prediction(
      jnp.asarray(cond, jnp.float32), jnp.asarray(uncond, jnp.float32), 6.0,
      eta=0.2, momentum=-0.5, norm_threshold=1.5, running=running,
    )  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(running, running_ref, rtol=2e-5, atol=2e-6)


def test_apg_reduces_to_cfg_and_drops_the_parallel_part():
  rng = np.random.default_rng(1)
  cond = jnp.asarray(rng.normal(size=(4, 8)), jnp.float32)
  uncond = jnp.asarray(rng.normal(size=(4, 8)), jnp.float32)
  w = jnp.array([0.5, 1.0, 3.0, 7.0])
  plain, _ = losses.apg_guided_prediction(
    cond, uncond, w, eta=1.0, momentum=0.0
  )
  np.testing.assert_allclose(
    plain, losses.cfg_guided_prediction(cond, uncond, w), rtol=1e-5, atol=1e-6
  )
  guided, _ = losses.apg_guided_prediction(cond, uncond, w, momentum=0.0)
  inner = jnp.sum((guided - cond) * cond, axis=1)  # eta = 0: orthogonal
  np.testing.assert_allclose(inner, 0.0, atol=1e-4)
  with pytest.raises(ValueError, match='momentum'):
    losses.apg_guided_prediction(cond, uncond, 1.0, momentum=1.0)
