"""GradAlign and FedGA: the implicit regulariser, paths, weights, FedGA."""

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
import pytest

import optax_ext
from optax_ext import alignment

M, D = 8, 5


def _quadratic_workers(seed=0, m=M):
  """Worker i: f_i(x) = 0.5 x^T A_i x - b_i^T x, A_i symmetric PSD."""
  rng = np.random.default_rng(seed)
  r = rng.normal(size=(m, D, D)) / np.sqrt(D)
  a = np.einsum('mij,mkj->mik', r, r) + 0.5 * np.eye(D)
  b = rng.normal(size=(m, D))
  return {'a': jnp.asarray(a, jnp.float32), 'b': jnp.asarray(b, jnp.float32)}


def _quadratic_loss(x, batch):
  return 0.5 * x @ batch['a'] @ x - batch['b'] @ x


def _logistic_workers(seed=0, m=M, n=16):
  rng = np.random.default_rng(seed)
  xs = rng.normal(size=(m, n, D)) + rng.normal(size=(m, 1, D))  # skewed
  truth = np.linspace(-1.0, 1.0, D)
  ys = (xs @ truth + rng.normal(size=(m, n)) > 0).astype(np.float32)
  return {'x': jnp.asarray(xs, jnp.float32), 'y': jnp.asarray(ys)}


def _logistic_loss(w, batch):
  logits = batch['x'] @ w
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, batch['y']))


def _regularised(loss_fn, batch, beta, weights=None):
  """f + beta/2 * V, with V the variance of the workers' gradients."""

  def objective(x):
    per_worker = jax.vmap(loss_fn, in_axes=(None, 0))(x, batch)
    grads = jax.vmap(jax.grad(loss_fn), in_axes=(None, 0))(x, batch)
    w = (
      jnp.full((M,), 1.0 / M)
      if weights is None
      else jnp.asarray(weights) / jnp.sum(weights)
    )
    variance = alignment.gradient_variance(grads, weights=weights)
    return w @ per_worker + 0.5 * beta * variance

  return objective


def test_quadratic_equals_the_gradient_of_the_regularised_loss():
  batch = _quadratic_workers()
  x = jnp.linspace(-1.0, 1.0, D)
  for beta in (0.05, 0.3):
    got = alignment.gradalign_grad(_quadratic_loss, x, batch, beta=beta)
    want = jax.grad(_regularised(_quadratic_loss, batch, beta))(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    plain = jnp.mean(
      jax.vmap(jax.grad(_quadratic_loss), in_axes=(None, 0))(x, batch), 0
    )
    assert float(jnp.max(jnp.abs(got - plain))) > 1e-2  # beta matters


def test_quadratic_with_weights_uses_the_same_weights_twice():
  batch = _quadratic_workers(1)
  x = jnp.linspace(-1.0, 1.0, D)
  weights = jnp.arange(1.0, M + 1.0)
  got = alignment.gradalign_grad(
    _quadratic_loss, x, batch, beta=0.2, weights=weights
  )
  want = jax.grad(_regularised(_quadratic_loss, batch, 0.2, weights))(x)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_non_quadratic_residual_is_second_order_in_beta():
  batch = _logistic_workers()
  w = jnp.linspace(-0.5, 0.5, D)
  residual = []
  for beta in (0.4, 0.04):
    got = alignment.gradalign_grad(_logistic_loss, w, batch, beta=beta)
    want = jax.grad(_regularised(_logistic_loss, batch, beta))(w)
    residual.append(float(jnp.linalg.norm(got - want)))
  ratio = residual[0] / residual[1]
  assert 50.0 < ratio < 200.0, residual  # ~100x for 10x smaller beta


@pytest.mark.parametrize('vectorize', [True, False])
def test_beta_zero_or_one_worker_is_the_mean_gradient(vectorize):
  batch = _logistic_workers()
  w = jnp.linspace(-0.5, 0.5, D)
  mean = jnp.mean(
    jax.vmap(jax.grad(_logistic_loss), in_axes=(None, 0))(w, batch), 0
  )
  got = alignment.gradalign_grad(
    _logistic_loss, w, batch, beta=0.0, vectorize=vectorize
  )
  np.testing.assert_allclose(got, mean, rtol=1e-6, atol=1e-7)
  one = jax.tree.map(lambda x: x[:1], batch)
  got = alignment.gradalign_grad(
    _logistic_loss, w, one, beta=0.5, vectorize=vectorize
  )
  np.testing.assert_allclose(
    got, jax.grad(_logistic_loss)(w, jax.tree.map(lambda x: x[0], one)),
    rtol=1e-6,
  )  # fmt: skip


def test_linear_losses_with_weights_give_the_weighted_mean_exactly():
  c = jnp.asarray(np.random.default_rng(2).normal(size=(M, D)), jnp.float32)
  weights = jnp.array([3.0, 1.0, 0.0, 2.0, 5.0, 1.0, 1.0, 4.0])
  got = alignment.gradalign_grad(
    lambda x, ci: ci @ x, jnp.ones(D), c, beta=0.7, weights=weights
  )
  np.testing.assert_allclose(got, weights @ c / jnp.sum(weights), rtol=1e-6)


def test_all_population_paths_agree(mesh):
  batch = _logistic_workers(3)
  w = jnp.linspace(-0.5, 0.5, D)
  weights = jnp.arange(1.0, M + 1.0)
  kwargs = {'beta': 0.3, 'weights': weights, 'has_aux': False}
  (v_ref, _), g_ref = alignment.gradalign_value_and_grad(
    _logistic_loss, w, batch, **kwargs
  )
  (v_loop, _), g_loop = alignment.gradalign_value_and_grad(
    _logistic_loss, w, batch, vectorize=False, **kwargs
  )
  named = optax_ext.PopulationAxes(axis=None, axis_name='workers')
  (v_vmap, _), g_vmap = jax.vmap(
    lambda b: alignment.gradalign_value_and_grad(
      _logistic_loss, w, b, axes=named, **kwargs
    ),
    axis_name='workers',
  )(batch)
  on_devices = optax_ext.PopulationAxes(axis=None, axis_name='data')
  g_shard = jax.jit(
    jax.shard_map(
      lambda b: alignment.gradalign_grad(
        _logistic_loss,
        w,
        jax.tree.map(lambda x: x[0], b),
        axes=on_devices,
        **kwargs,
      ),
      mesh=mesh,
      in_specs=P('data'),
      out_specs=P(),
    )
  )(batch)
  both = optax_ext.PopulationAxes(axis=0, axis_name='data')
  batch16 = _logistic_workers(4, m=16)
  weights16 = jnp.arange(1.0, 17.0)

  def local_both(b, vectorize):
    return alignment.gradalign_grad(
      _logistic_loss,
      w,
      b,
      beta=0.3,
      weights=weights16,
      axes=both,
      vectorize=vectorize,
    )

  for g in (g_loop, g_vmap[0], g_vmap[-1], g_shard):
    np.testing.assert_allclose(g, g_ref, rtol=2e-6, atol=1e-7)
  for v in (v_loop, v_vmap[0]):
    np.testing.assert_allclose(v, v_ref, rtol=2e-6)
  ref16 = alignment.gradalign_grad(
    _logistic_loss, w, batch16, beta=0.3, weights=weights16
  )
  for vectorize in (True, False):
    got = jax.jit(
      jax.shard_map(
        lambda b, v=vectorize: local_both(b, v),
        mesh=mesh,
        in_specs=P('data'),
        out_specs=P(),
      )
    )(batch16)
    np.testing.assert_allclose(got, ref16, rtol=2e-6, atol=1e-7)


def test_has_aux_returns_per_worker_aux():
  batch = _logistic_workers()
  w = jnp.zeros(D)

  def loss(w, b):
    value = _logistic_loss(w, b)
    return value, {'loss': value}

  (value, aux), _ = alignment.gradalign_value_and_grad(
    loss, w, batch, has_aux=True
  )
  assert aux['loss'].shape == (M,)
  np.testing.assert_allclose(jnp.mean(aux['loss']), value, rtol=1e-6)
  (_, aux_loop), _ = alignment.gradalign_value_and_grad(
    loss, w, batch, has_aux=True, vectorize=False
  )
  np.testing.assert_allclose(aux_loop['loss'], aux['loss'], rtol=1e-6)


def test_jit_traced_beta_and_bfloat16_params():
  batch = _quadratic_workers()
  step = jax.jit(
    lambda x, beta: alignment.gradalign_grad(
      _quadratic_loss, x, batch, beta=beta
    )
  )
  x = jnp.linspace(-1.0, 1.0, D)
  np.testing.assert_allclose(
    step(x, jnp.float32(0.3)),
    alignment.gradalign_grad(_quadratic_loss, x, batch, beta=0.3),
    rtol=1e-6,
  )
  bf16 = {k: v.astype(jnp.bfloat16) for k, v in batch.items()}
  g = alignment.gradalign_grad(
    _quadratic_loss, x.astype(jnp.bfloat16), bf16, beta=0.3
  )
  assert g.dtype == jnp.bfloat16
  np.testing.assert_allclose(
    g.astype(jnp.float32), step(x, jnp.float32(0.3)), rtol=0.05, atol=0.05
  )


def test_training_with_gradalign_reduces_the_loss():
  batch = _logistic_workers()
  opt = optax.sgd(0.5)
  w = jnp.zeros(D)
  state = opt.init(w)

  @jax.jit
  def step(w, state):
    (value, _), g = alignment.gradalign_value_and_grad(_logistic_loss, w, batch)
    u, state = opt.update(g, state)
    return optax.apply_updates(w, u), state, value

  first = None
  for _ in range(50):
    w, state, value = step(w, state)
    first = value if first is None else first
  assert float(value) < 0.9 * float(first)


def test_fedga_one_local_sgd_step_is_lr_times_gradalign():
  batch = _logistic_workers()
  w = jnp.linspace(-0.5, 0.5, D)
  lr = 0.3
  local = jax.tree.map(lambda x: x[:, None], batch)  # K = 1 local step
  delta = alignment.fedga_grad(
    _logistic_loss, w, local, optax.sgd(lr), beta=0.2, anchor_batch=batch
  )
  g = alignment.gradalign_grad(_logistic_loss, w, batch, beta=0.2)
  np.testing.assert_allclose(delta, lr * g, rtol=1e-5, atol=1e-7)


def test_fedga_beta_zero_is_fedavg_and_paths_agree(mesh):
  batch = _logistic_workers(5)
  w = jnp.linspace(-0.5, 0.5, D)
  steps = 4
  local = jax.tree.map(
    lambda x: jnp.stack([jnp.roll(x, s, axis=1) for s in range(steps)], 1),
    batch,
  )
  opt = optax.sgd(0.2, momentum=0.5)

  def fedavg_client(b):
    y, s = w, opt.init(w)
    for k in range(steps):
      bk = jax.tree.map(lambda x, k=k: x[k], b)
      u, s = opt.update(jax.grad(_logistic_loss)(y, bk), s, y)
      y = optax.apply_updates(y, u)
    return y

  ys = [
    fedavg_client(jax.tree.map(lambda x, i=i: x[i], local)) for i in range(M)
  ]
  want = w - jnp.mean(jnp.stack(ys), 0)
  got = alignment.fedga_grad(
    _logistic_loss, w, local, opt, beta=0.0, anchor_batch=batch
  )
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  # FedGA with precomputed anchors, stacked vs one client per device.
  anchors = jax.vmap(jax.grad(_logistic_loss), in_axes=(None, 0))(w, batch)
  ref = alignment.fedga_grad(
    _logistic_loss, w, local, opt, beta=0.3, anchor_grads=anchors
  )
  axes = optax_ext.PopulationAxes(axis=None, axis_name='data')
  shard = jax.jit(
    jax.shard_map(
      lambda lb, a: alignment.fedga_grad(
        _logistic_loss,
        w,
        jax.tree.map(lambda x: x[0], lb),
        opt,
        beta=0.3,
        anchor_grads=a[0],
        axes=axes,
      ),
      mesh=mesh,
      in_specs=(P('data'), P('data')),
      out_specs=P(),
    )
  )(local, anchors)
  np.testing.assert_allclose(shard, ref, rtol=1e-5, atol=1e-7)
  assert float(jnp.max(jnp.abs(ref - want))) > 1e-4  # beta matters


def test_gradient_variance_matches_numpy_and_paths():
  g = np.random.default_rng(0).normal(size=(M, 3, 2)).astype(np.float32)
  w = np.arange(1.0, M + 1.0)
  wn = w / w.sum()
  mean = np.tensordot(wn, g, axes=(0, 0))
  want = float(np.sum(wn[:, None, None] * (g - mean) ** 2))
  got = alignment.gradient_variance({'g': jnp.asarray(g)}, weights=w)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  named = optax_ext.PopulationAxes(axis=None, axis_name='i')
  vm = jax.vmap(
    lambda x: alignment.gradient_variance(x, axes=named, weights=w),
    axis_name='i',
  )(jnp.asarray(g))
  np.testing.assert_allclose(vm, want, rtol=1e-5)
  moved = jnp.moveaxis(jnp.asarray(g), 0, 2)
  np.testing.assert_allclose(
    alignment.gradient_variance(
      moved, axes=optax_ext.PopulationAxes(axis=2), weights=w
    ),
    want,
    rtol=1e-5,
  )


@pytest.mark.parametrize('beta', [-0.1, float('nan')])
def test_bad_beta_raises(beta):
  batch = _quadratic_workers()
  with pytest.raises(ValueError, match='gradalign_grad: `beta` must be'):
    alignment.gradalign_grad(_quadratic_loss, jnp.zeros(D), batch, beta=beta)
  with pytest.raises(ValueError, match='fedga_grad: `beta`'):
    alignment.fedga_grad(
      _quadratic_loss,
      jnp.zeros(D),
      jax.tree.map(lambda x: x[:, None], batch),
      optax.sgd(0.1),
      beta=beta,
      anchor_batch=batch,
    )


def test_bad_shapes_and_arguments_raise():
  batch = _quadratic_workers()
  x = jnp.zeros(D)
  with pytest.raises(ValueError, match=r'`weights` must have shape \(8,\)'):
    alignment.gradalign_grad(_quadratic_loss, x, batch, weights=jnp.ones(3))
  ragged = {'a': batch['a'], 'b': batch['b'][:3]}
  with pytest.raises(ValueError, match='disagree on the number of members'):
    alignment.gradalign_grad(_quadratic_loss, x, ragged)
  with pytest.raises(ValueError, match='leading axis'):
    alignment.gradalign_grad(
      _quadratic_loss, x, batch, axes=optax_ext.PopulationAxes(axis=1)
    )
  local = jax.tree.map(lambda v: v[:, None], batch)
  with pytest.raises(ValueError, match='exactly one of `anchor_batch`'):
    alignment.fedga_grad(_quadratic_loss, x, local, optax.sgd(0.1))
  with pytest.raises(ValueError, match='`anchor_batch` has 3 clients'):
    alignment.fedga_grad(
      _quadratic_loss,
      x,
      local,
      optax.sgd(0.1),
      anchor_batch=jax.tree.map(lambda v: v[:3], batch),
    )
