"""DGA: mixture controller and alignment scores."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optax_ext
from optax_ext import alignment


def _domains(seed=0, k=5, d=12):
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.normal(size=(k, d)), jnp.float32)


def test_aligned_domains_gain_and_anti_aligned_lose():
  target = jnp.ones(4)
  domains = jnp.stack([target, 0.5 * target, -target, jnp.zeros(4)])
  mixer = alignment.dga_mixture(domain_lr=50.0, ema=0.5)
  state = mixer.init(4)
  for _ in range(5):
    scores = alignment.dga_alignment_scores(domains, target)
    state = mixer.update(scores, state, lr=0.1)
  w = np.asarray(state.weights)
  assert w[0] > 0.25 > w[2]
  assert w[0] > w[1] > w[2]
  # Anti-aligned and orthogonal scores both clip to 0 (DoGE's dw_min).
  np.testing.assert_allclose(w[2], w[3], rtol=1e-5)
  np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)
  assert int(state.count) == 5


def test_weights_stay_on_the_simplex_above_the_floor():
  mixer = alignment.dga_mixture(domain_lr=1e4, ema=1.0, floor=0.05)
  state = mixer.init(4)
  for _ in range(20):
    state = mixer.update(jnp.array([5.0, -5.0, -5.0, -5.0]), state, lr=1.0)
  w = np.asarray(state.weights)
  np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)
  assert w.min() >= 0.05 / 4 * (1 - 1e-6)
  assert np.isfinite(np.asarray(state.log_alpha)).all()


def test_ema_one_without_clipping_is_the_pure_mirror_step():
  mixer = alignment.dga_mixture(
    domain_lr=3.0, ema=1.0, floor=0.0, score_clip=(-1e9, 1e9)
  )
  init = jnp.array([0.1, 0.2, 0.3, 0.4])
  state = mixer.init(4, initial_weights=init)
  scores = jnp.array([1.0, -2.0, 0.5, 0.0])
  state = mixer.update(scores, state, lr=0.2)
  want = init * jnp.exp(3.0 * 0.2 * scores)
  np.testing.assert_allclose(state.weights, want / want.sum(), rtol=1e-5)


def test_clip_bounds_the_step():
  mixer = alignment.dga_mixture(domain_lr=1.0, ema=1.0, floor=0.0)
  state = mixer.init(2)
  # Scores 100 and -100 clip to 5 * lr and 0.
  state = mixer.update(jnp.array([100.0, -100.0]), state, lr=0.1)
  want = jnp.exp(jnp.array([0.5, 0.0]))
  np.testing.assert_allclose(state.weights, want / want.sum(), rtol=1e-6)


def test_scores_invariant_to_a_common_rescaling_of_domain_gradients():
  domains, target = _domains(), _domains(1, k=1)[0]
  s1 = alignment.dga_alignment_scores(domains, target)
  s2 = alignment.dga_alignment_scores(7.5 * domains, target)
  np.testing.assert_allclose(s1, s2, rtol=1e-5)
  raw = alignment.dga_alignment_scores(domains, target, normalize=False)
  np.testing.assert_allclose(raw, domains @ target, rtol=1e-5)


def test_score_paths_agree_and_from_losses(mesh):
  domains, target = _domains(2, k=8), _domains(3, k=1)[0]
  ref = alignment.dga_alignment_scores(domains, target)
  named = optax_ext.PopulationAxes(axis=None, axis_name='domains')
  vm = jax.vmap(
    lambda g: alignment.dga_alignment_scores(g, target, axes=named),
    axis_name='domains',
  )(domains)
  np.testing.assert_allclose(vm[0], ref, rtol=1e-5)
  on_devices = optax_ext.PopulationAxes(axis=None, axis_name='data')
  shard = jax.jit(
    jax.shard_map(
      lambda g: alignment.dga_alignment_scores(g[0], target, axes=on_devices),
      mesh=mesh,
      in_specs=jax.sharding.PartitionSpec('data'),
      out_specs=jax.sharding.PartitionSpec(),
    )
  )(domains)
  np.testing.assert_allclose(shard, ref, rtol=1e-5)
  # From a loss whose gradient at 0 is -c (optimum c): g_i = -c_i.
  loss = lambda w, c: 0.5 * jnp.sum((w - c) ** 2)
  got = jax.jit(alignment.domain_alignment_scores, static_argnums=0)(
    loss, jnp.zeros(12), -domains, -target
  )
  np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_errors():
  with pytest.raises(ValueError, match='`domain_lr` must be > 0'):
    alignment.dga_mixture(domain_lr=0.0)
  with pytest.raises(ValueError, match='`ema`'):
    alignment.dga_mixture(ema=0.0)
  with pytest.raises(ValueError, match='`floor`'):
    alignment.dga_mixture(floor=1.0)
  with pytest.raises(ValueError, match='`score_clip`'):
    alignment.dga_mixture(score_clip=(1.0, 0.0))
  mixer = alignment.dga_mixture()
  with pytest.raises(ValueError, match='`num_domains`'):
    mixer.init(0)
  with pytest.raises(ValueError, match=r'`initial_weights` must have shape'):
    mixer.init(3, initial_weights=jnp.ones(2))
  with pytest.raises(ValueError, match=r'`scores` must have shape \(3,\)'):
    mixer.update(jnp.ones(2), mixer.init(3), lr=0.1)
