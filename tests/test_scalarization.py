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

torch = pytest.importorskip('torch')
tjd = pytest.importorskip('torchjd.scalarization')

RNG = np.random.default_rng(0)
LOSSES = RNG.uniform(0.2, 3.0, size=5).astype(np.float32)
PARAMS = RNG.normal(size=5).astype(np.float32) * 0.5


def _torch_value_and_grads(module, losses, param_name=None):
  """TorchJD's value and its gradients w.r.t. the losses (and the module's
  learned parameter, overwritten with ``PARAMS`` when named)."""
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
