# Copyright 2026 The optax_ext Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
# ==============================================================================
"""Loss scalarizers: against TorchJD's ``scalarization`` module (values and
gradients), their defining properties, and their errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optax_ext import scalarization

RNG = np.random.default_rng(0)
LOSSES = RNG.uniform(0.2, 3.0, size=5).astype(np.float32)
PARAMS = RNG.normal(size=5).astype(np.float32) * 0.5


def _torch_value_and_grads(module, losses, param_name=None):
  """TorchJD's value and its gradients w.r.t. the losses (and the module's
  learned parameter, overwritten with ``PARAMS`` when named)."""
  torch = pytest.importorskip('torch')
  if param_name is not None:
    with torch.no_grad():
      getattr(module, param_name).copy_(torch.tensor(PARAMS))
  t = torch.tensor(losses, requires_grad=True)
  value = module(t)
  value.backward()
  grads = [t.grad.numpy()]
  if param_name is not None:
    grads.append(getattr(module, param_name).grad.numpy())
  return value.item(), grads


def _close(ours, theirs):
  np.testing.assert_allclose(ours, theirs, rtol=2e-6, atol=1e-6)


def test_geometric_mean_matches_torchjd():
  tjd = pytest.importorskip('torchjd.scalarization')
  value, (g,) = _torch_value_and_grads(tjd.GeometricMean(), LOSSES)
  ours, our_g = jax.value_and_grad(scalarization.scalarize_by_geometric_mean)(
    jnp.asarray(LOSSES)
  )
  _close(ours, value)
  _close(our_g, g)


@pytest.mark.parametrize(
  ('fn', 'cls', 'name'),
  [
    (scalarization.scalarize_by_uncertainty, 'UW', 'log_var'),
    (scalarization.scalarize_by_imtl_l, 'IMTLL', 'log_scale'),
  ],
)
def test_learned_weightings_match_torchjd(fn, cls, name):
  tjd = pytest.importorskip('torchjd.scalarization')
  module = getattr(tjd, cls)(len(LOSSES))
  value, (g, g_param) = _torch_value_and_grads(module, LOSSES, name)
  ours, (our_g, our_g_param) = jax.value_and_grad(fn, argnums=(0, 1))(
    jnp.asarray(LOSSES), jnp.asarray(PARAMS)
  )
  _close(ours, value)
  _close(our_g, g)
  _close(our_g_param, g_param)


@pytest.mark.parametrize('mu', [0.01, 0.5, 1.0])
@pytest.mark.parametrize('with_options', [False, True])
def test_stch_matches_torchjd(mu, with_options):
  torch = pytest.importorskip('torch')
  tjd = pytest.importorskip('torchjd.scalarization')
  kwargs = {}
  if with_options:
    kwargs = {
      'weights': RNG.dirichlet(np.ones(5)).astype(np.float32),
      'reference': (LOSSES * 0.3).astype(np.float32),
    }
  module = tjd.STCH(mu, **{k: torch.tensor(v) for k, v in kwargs.items()})
  value, (g,) = _torch_value_and_grads(module, LOSSES)
  ours, our_g = jax.value_and_grad(
    lambda x: scalarization.scalarize_by_stch(
      x, mu, **{k: jnp.asarray(v) for k, v in kwargs.items()}
    )
  )(jnp.asarray(LOSSES))
  _close(ours, value)
  _close(our_g, g)


def test_dwa_matches_torchjd_over_epochs():
  tjd = pytest.importorskip('torchjd.scalarization')
  rng = np.random.default_rng(3)
  theirs = tjd.DWA(temperature=1.5)
  state = scalarization.dwa_init(4)
  step = jax.jit(
    jax.value_and_grad(
      lambda x, s: scalarization.scalarize_by_dwa(x, s, temperature=1.5),
      has_aux=True,
    )
  )
  for _epoch in range(5):
    for _ in range(3):
      losses = rng.uniform(0.1, 2.0, size=4).astype(np.float32)
      value, (g,) = _torch_value_and_grads(theirs, losses)
      (ours, state), our_g = step(jnp.asarray(losses), state)
      _close(ours, value)
      _close(our_g, g)
    theirs.step()
    state = jax.jit(scalarization.dwa_end_epoch)(state)
  assert int(state.num_epochs) == 5


def test_dwa_is_uniform_for_two_epochs_and_ignores_empty_epochs():
  state = scalarization.dwa_init(2)
  x = jnp.array([1.0, 2.0])
  for _ in range(2):
    loss, state = scalarization.scalarize_by_dwa(x, state)
    assert float(loss) == 3.0
    state = scalarization.dwa_end_epoch(state)
  again = scalarization.dwa_end_epoch(state)  # no batch since: unchanged
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(again), strict=True):
    np.testing.assert_array_equal(a, b)


def test_properties():
  x = jnp.asarray(LOSSES)
  # STCH tends to the weighted maximum as mu -> 0, and stays above it.
  for mu in (1.0, 0.1, 0.001):
    v = scalarization.scalarize_by_stch(x, mu)
    top = jnp.max(x) / x.shape[0]
    assert top <= v <= top + mu * np.log(x.shape[0]) + 1e-6
  # The learned weightings' optima: s = log L (UW), e^s L = 1 (IMTL-L).
  g_uw = jax.grad(scalarization.scalarize_by_uncertainty, argnums=1)(
    x, jnp.log(x)
  )
  g_imtl = jax.grad(scalarization.scalarize_by_imtl_l, argnums=1)(
    x, -jnp.log(x)
  )
  np.testing.assert_allclose(g_uw, 0.0, atol=1e-6)
  np.testing.assert_allclose(g_imtl, 0.0, atol=1e-6)
  # The geometric mean of equal losses is that loss, and scale-equivariant.
  np.testing.assert_allclose(
    scalarization.scalarize_by_geometric_mean(jnp.full(3, 2.5)), 2.5
  )
  scaled = x.at[0].multiply(8.0)
  np.testing.assert_allclose(
    scalarization.scalarize_by_geometric_mean(scaled),
    scalarization.scalarize_by_geometric_mean(x) * 8.0 ** (1 / 5),
    rtol=1e-6,
  )


@pytest.mark.parametrize(
  ('call', 'match'),
  [
    (
      lambda: scalarization.scalarize_by_geometric_mean(jnp.array([1.0, -1])),
      r'scalarize_by_geometric_mean: .*losses >= 0',
    ),
    (
      lambda: scalarization.scalarize_by_stch(jnp.ones(3), 0.0),
      r'scalarize_by_stch: `mu` .*> 0.* got 0.0',
    ),
    (
      lambda: scalarization.scalarize_by_stch(
        jnp.ones(3), 0.1, weights=jnp.ones(2)
      ),
      r'scalarize_by_stch: `weights` must have the shape .*\(3,\).*\(2,\)',
    ),
    (
      lambda: scalarization.scalarize_by_uncertainty(jnp.ones(3), jnp.ones(4)),
      r'scalarize_by_uncertainty: `log_variances`',
    ),
    (
      lambda: scalarization.scalarize_by_imtl_l(jnp.ones((2, 2)), jnp.ones(2)),
      r'scalarize_by_imtl_l: `losses` must be a vector',
    ),
    (
      lambda: scalarization.scalarize_by_dwa(
        jnp.ones(3), scalarization.dwa_init(2)
      ),
      r'scalarize_by_dwa: the state is for 2 tasks',
    ),
    (
      lambda: scalarization.scalarize_by_dwa(
        jnp.ones(2), scalarization.dwa_init(2), temperature=-1.0
      ),
      r'scalarize_by_dwa: `temperature`',
    ),
    (lambda: scalarization.dwa_init(0), r'dwa_init: `num_tasks`'),
  ],
)
def test_errors_name_the_function_and_parameter(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_stch_small_mu_does_not_overflow():
  v = scalarization.scalarize_by_stch(jnp.array([1e3, 2e3]), 1e-4)
  assert np.isfinite(float(v)) and abs(float(v) - 1e3) < 1e-2


def _two_task_problem():
  rng = np.random.default_rng(7)
  return {
    'x': rng.normal(size=(16, 3)).astype(np.float32),
    'y': rng.normal(size=(2, 16)).astype(np.float32) * [[1.0], [5.0]],
    'W': rng.normal(size=(3, 4)).astype(np.float32) * 0.5,
    'heads': rng.normal(size=(2, 4)).astype(np.float32) * 0.5,
  }


def test_gradnorm_matches_the_papers_algorithm_in_torch_autograd():
  # The paper's Algorithm 1 written with torch autograd: G_i from
  # autograd.grad(w_i L_i, W, create_graph=True), L_grad with the target
  # detached, a gradient step on w, renormalisation to sum K; the network
  # (shared W and two heads) steps on sum_i w_i L_i with the weights of the
  # step. Ten steps, weights compared after each.
  torch = pytest.importorskip('torch')
  prob = _two_task_problem()
  lr_net, lr_w, alpha = 0.05, 0.02, 1.5

  # torch
  x, y = torch.tensor(prob['x']), torch.tensor(prob['y'])
  w_shared = torch.tensor(prob['W'], requires_grad=True)
  heads = torch.tensor(prob['heads'], requires_grad=True)
  w = torch.ones(2, requires_grad=True)
  l0 = None
  torch_weights = []
  for _ in range(10):
    feats = torch.tanh(x @ w_shared)
    losses = torch.stack(
      [torch.mean((feats @ heads[i] - y[i]) ** 2) for i in range(2)]
    )
    if l0 is None:
      l0 = losses.detach()
    norms = torch.stack(
      [
        torch.linalg.norm(
          torch.autograd.grad(w[i] * losses[i], w_shared, create_graph=True)[0]
        )
        for i in range(2)
      ]
    )
    ratios = losses.detach() / l0
    r = ratios / ratios.mean()
    target = (norms.mean() * r**alpha).detach()
    l_grad = torch.sum(torch.abs(norms - target))
    (g_w,) = torch.autograd.grad(l_grad, w, retain_graph=True)
    total = torch.sum(w.detach() * losses)
    g_net = torch.autograd.grad(total, (w_shared, heads))
    with torch.no_grad():
      w_shared -= lr_net * g_net[0]
      heads -= lr_net * g_net[1]
      new_w = torch.clamp(w - lr_w * g_w, min=0.0)
      w.copy_(2 * new_w / new_w.sum())
    torch_weights.append(w.detach().numpy().copy())

  # ours
  def task_losses(params):
    feats = jnp.tanh(prob['x'] @ params['W'])
    preds = feats @ params['heads'].T  # [16, 2]
    return jnp.mean((preds.T - prob['y']) ** 2, axis=1)

  params = {'W': jnp.asarray(prob['W']), 'heads': jnp.asarray(prob['heads'])}
  state = scalarization.gradnorm_init(2)

  @jax.jit
  def step(params, state):
    losses, vjp = jax.vjp(task_losses, params)
    shared = jax.jacrev(lambda m: task_losses({**params, 'W': m}))(params['W'])
    (grads,) = vjp(scalarization.gradnorm_weights(state))
    state = scalarization.gradnorm_update(
      state, losses, shared, lr_w, alpha=alpha
    )
    params = jax.tree.map(lambda p, g: p - lr_net * g, params, grads)
    return params, state

  for expected in torch_weights:
    params, state = step(params, state)
    np.testing.assert_allclose(state.weights, expected, rtol=1e-5, atol=1e-6)
  # The weights moved (the test would be vacuous otherwise).
  assert abs(float(state.weights[0]) - 1.0) > 1e-2


def test_gradnorm_properties():
  state = scalarization.gradnorm_init(3)
  equal = {'w': jnp.eye(3)}  # three unit-norm task gradients
  # Equal norms and equal loss ratios: already balanced, nothing moves.
  out = scalarization.gradnorm_update(state, jnp.ones(3), equal, 0.5)
  np.testing.assert_allclose(out.weights, 1.0)
  np.testing.assert_allclose(out.initial_losses, 1.0)
  # A task whose loss fell less (ratio above the mean) gains weight, the
  # weights keep summing to K, and L(0) stays the first step's.
  out = scalarization.gradnorm_update(
    out, jnp.array([1.0, 0.5, 0.5]), equal, 0.1
  )
  assert out.weights[0] > 1.0 > out.weights[1]
  np.testing.assert_allclose(jnp.sum(out.weights), 3.0, rtol=1e-6)
  np.testing.assert_allclose(out.initial_losses, 1.0)
  # A step that would make every weight negative leaves them uniform.
  big = scalarization.gradnorm_update(
    state, jnp.ones(3), {'w': jnp.diag(jnp.array([1.0, 2.0, 3.0]))}, 1e6
  )
  assert np.all(np.isfinite(big.weights))
  np.testing.assert_allclose(jnp.sum(big.weights), 3.0, rtol=1e-6)


@pytest.mark.parametrize(
  ('kwargs', 'match'),
  [
    ({'learning_rate': 0.0}, r'gradnorm_update: `learning_rate`'),
    ({'alpha': -1.0}, r'gradnorm_update: `alpha`'),
    ({'losses': jnp.ones(3)}, r'gradnorm_update: the state is for 2 tasks'),
    (
      {'shared_grads': {'w': jnp.ones((3, 4))}},
      r'gradnorm_update: `shared_grads` must hold one gradient per task',
    ),
  ],
)
def test_gradnorm_errors(kwargs, match):
  args = {
    'state': scalarization.gradnorm_init(2),
    'losses': jnp.ones(2),
    'shared_grads': {'w': jnp.ones((2, 4))},
    'learning_rate': 0.1,
    **kwargs,
  }
  with pytest.raises((ValueError, TypeError), match=match):
    scalarization.gradnorm_update(**args)


@pytest.mark.parametrize('with_bounds', [False, True])
def test_famo_matches_torchjd_over_steps(with_bounds):
  # A model steps on FAMO's loss; both scalarizers see the same losses
  # before and after every step: values, the losses' gradients and the
  # learned weights are compared after each of eight steps.
  torch = pytest.importorskip('torch')
  tjd = pytest.importorskip('torchjd.scalarization')
  rng = np.random.default_rng(11)
  k = 3
  bounds = rng.uniform(0.0, 0.1, size=k) if with_bounds else np.zeros(k)
  bounds = bounds.astype(np.float32)
  theirs = tjd.FAMO(k, min_losses=torch.tensor(bounds), lr=0.1)
  state = scalarization.famo_init(k, min_losses=jnp.asarray(bounds))
  value_and_grad = jax.jit(
    jax.value_and_grad(scalarization.scalarize_by_famo, has_aux=True)
  )
  update = jax.jit(
    lambda s, x: scalarization.famo_update(s, x, learning_rate=0.1)
  )
  losses = rng.uniform(0.5, 3.0, size=k).astype(np.float32)
  for _ in range(8):
    value, (g,) = _torch_value_and_grads(theirs, losses)
    (ours, state), our_g = value_and_grad(jnp.asarray(losses), state)
    _close(ours, value)
    _close(our_g, g)
    # Unequal rates of decrease, so the weights move.
    after = (losses * rng.uniform(0.6, 1.0, size=k)).astype(np.float32)
    theirs.update(torch.tensor(after))
    state = update(state, jnp.asarray(after))
    np.testing.assert_allclose(
      state.logits, theirs._w.detach().numpy(), rtol=1e-5, atol=1e-6
    )
    losses = after
  assert float(jnp.max(jnp.abs(state.logits))) > 1e-2


def test_famo_properties():
  state = scalarization.famo_init(3)
  losses = jnp.array([0.5, 1.0, 2.0])
  # The gradient is a convex combination: weights c z_k / L_k sum to one.
  g = jax.grad(lambda x: scalarization.scalarize_by_famo(x, state)[0])(losses)
  np.testing.assert_allclose(jnp.sum(g), 1.0, rtol=1e-6)
  _, state = scalarization.scalarize_by_famo(losses, state)
  # Equal log-loss decreases: the softmax's gradient vanishes, and only the
  # (zero) logits' L2 term is left, so nothing moves.
  same = scalarization.famo_update(state, losses * 0.5)
  np.testing.assert_allclose(same.logits, 0.0, atol=1e-7)
  # The task whose loss fell least gains weight.
  out = scalarization.famo_update(state, losses * jnp.array([0.5, 0.5, 0.9]))
  assert jnp.argmax(out.logits) == 2


def test_famo_bounds_enter_every_term():
  """With bounds ``b``, the gradient is ``c z_k / (L_k - b_k)`` (a convex
  combination) and the logit update sees ``log(L - b)`` decreases: a task
  whose loss fell by the same ratio *above its bound* gains no weight.

  Regression: a FAMO without the bounds passed the suite (the module
  skipped without torch, as the README's test command runs).
  """
  bounds = jnp.array([0.4, 0.0, 1.5])
  state = scalarization.famo_init(3, min_losses=bounds)
  losses = jnp.array([0.5, 1.0, 2.0])
  g = jax.grad(lambda x: scalarization.scalarize_by_famo(x, state)[0])(losses)
  z = jax.nn.softmax(state.logits)
  gap = losses - bounds
  want = (z / gap) / jnp.sum(z / gap)
  np.testing.assert_allclose(g, want, rtol=1e-4)
  _, state = scalarization.scalarize_by_famo(losses, state)
  # The same relative decrease of L - b everywhere: nothing moves.
  same = scalarization.famo_update(state, bounds + 0.5 * gap)
  np.testing.assert_allclose(same.logits, 0.0, atol=1e-7)
  # The same ratio of the raw losses (nothing would move without bounds)
  # is a larger drop of L - b above a bound: those tasks lose weight.
  out = scalarization.famo_update(state, 0.9 * losses)
  assert out.logits[1] > 1e-3, out.logits
  assert out.logits[0] < -1e-3 and out.logits[2] < -1e-3, out.logits


@pytest.mark.parametrize(
  ('call', 'match'),
  [
    (lambda: scalarization.famo_init(0), r'famo_init: `num_tasks`'),
    (
      lambda: scalarization.famo_init(2, min_losses=jnp.ones(3)),
      r'famo_init: `min_losses` must have the shape .*\(2,\).*\(3,\)',
    ),
    (
      lambda: scalarization.scalarize_by_famo(
        jnp.array([1.0, 0.0]), scalarization.famo_init(2)
      ),
      r'scalarize_by_famo: .*every loss must exceed its bound',
    ),
    (
      lambda: scalarization.scalarize_by_famo(
        jnp.ones(3), scalarization.famo_init(2)
      ),
      r'scalarize_by_famo: the state is for 2 tasks',
    ),
    (
      lambda: scalarization.famo_update(
        scalarization.famo_init(2), jnp.ones(2), learning_rate=0.0
      ),
      r'famo_update: `learning_rate`',
    ),
    (
      lambda: scalarization.famo_update(
        scalarization.famo_init(2), jnp.ones(2), weight_decay=-1.0
      ),
      r'famo_update: `weight_decay`',
    ),
  ],
)
def test_famo_errors(call, match):
  with pytest.raises(ValueError, match=match):
    call()
