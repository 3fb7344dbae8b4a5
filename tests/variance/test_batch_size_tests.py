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
"""Adaptive batch-size tests: against a NumPy transcription of the norm
test (Byrd et al. 2012) and the augmented inner-product test (Bollapragada
et al. 2018), on stacked and lean populations."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_ext import population
from optax_ext import variance


def _numpy_tests(g, eta, theta, nu, m=1):
  g = np.asarray(g, np.float64).reshape(g.shape[0], -1)
  k = g.shape[0]
  mean = g.mean(0)
  msq = mean @ mean
  v_norm = np.sum((g - mean) ** 2) / (k - 1)
  proj = g @ mean
  v_inner = np.sum((proj - msq) ** 2) / (k - 1)
  orth = g - np.outer(proj / msq, mean)
  v_orth = np.sum(orth**2) / (k - 1)
  return (
    np.ceil(m * v_norm / (eta**2 * msq)),
    np.ceil(m * v_inner / (theta**2 * msq**2)),
    np.ceil(m * v_orth / (nu**2 * msq)),
  )


@pytest.mark.parametrize('spread', [0.3, 1.0, 3.0])
def test_matches_the_papers_formulas(spread):
  rng = np.random.default_rng(int(spread * 10))
  g = rng.normal(size=(12, 40)) * spread + 1.0
  got = variance.batch_size_tests(
    {
      'w': jnp.asarray(g[:, :30], jnp.float32),
      'b': jnp.asarray(g[:, 30:], jnp.float32),
    },
    eta=0.4,
    theta=0.7,
    nu=2.0,
    microbatch_size=3,
  )
  norm, inner, orth = _numpy_tests(g, 0.4, 0.7, 2.0, m=3)
  # The ceilings of float32 and float64 ratios agree unless a ratio sits
  # within float32 rounding of an integer (not the case for these draws).
  assert float(got.norm) == norm
  assert float(got.inner_product) == inner
  assert float(got.orthogonality) == orth
  assert float(got.augmented) == max(inner, orth)
  # Noisier members ask for larger batches.
  assert norm >= 1


def test_lean_equals_stacked_and_the_aggregator_is_the_mean():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(32, 4)), jnp.float32)
  w0 = {'w': jnp.asarray(rng.normal(size=4), jnp.float32)}

  def loss(p, batch):
    return jnp.mean((batch @ p['w'] - 1.0) ** 2)

  stacked = population.grad_population(loss, 8)(w0, x)[1]
  lean = population.microbatches(loss, w0, x, 8)
  kw = {'eta': 0.5, 'theta': 0.5, 'nu': 1.0, 'microbatch_size': 4}
  a = variance.batch_size_tests(stacked, **kw)
  b = variance.batch_size_tests(lean, **kw)
  for x1, x2 in zip(a, b, strict=True):
    assert float(x1) == float(x2)
  tx = variance.aggregate_by_mean_with_batch_size_tests(0.5, 0.5, 1.0, 4)
  u, state = tx.update(stacked, tx.init(w0), w0)
  np.testing.assert_allclose(u['w'], jnp.mean(stacked['w'], 0), rtol=1e-6)
  assert float(optax.tree.get(state, 'augmented')) == float(a.augmented)


def test_zero_mean_asks_for_infinity_and_errors_name_the_function():
  pop = jnp.array([[1.0, 0.0], [-1.0, 0.0]])
  got = variance.batch_size_tests(pop, eta=1.0, theta=1.0, nu=1.0)
  assert np.isinf(float(got.norm)) and np.isinf(float(got.augmented))
  with pytest.raises(ValueError, match=r'batch_size_tests: .*K >= 2'):
    variance.batch_size_tests(pop[:1], eta=1.0, theta=1.0, nu=1.0)
  with pytest.raises(ValueError, match=r'batch_size_tests: `nu`'):
    variance.batch_size_tests(pop, eta=1.0, theta=1.0, nu=0.0)


def test_matches_the_adadagrad_authors_tests_in_torch():
  # A transcription of timlautk/AdAdaGrad's tests.py (norm_test,
  # inner_product_test, orthogonality_test) on per-example gradients of a
  # two-leaf model: per-leaf torch.var(correction=1) summed over leaves.
  torch = pytest.importorskip('torch')
  rng = np.random.default_rng(5)
  pop = {
    'w': (rng.normal(size=(16, 3, 4)) + 0.7).astype(np.float32),
    'b': (rng.normal(size=(16, 4)) - 0.3).astype(np.float32),
  }
  eta, theta, nu = 0.3, 0.4, 0.5
  grads = {n: torch.tensor(v, dtype=torch.float64) for n, v in pop.items()}
  flat = torch.cat([g.reshape(16, -1) for g in grads.values()], 1)
  mean = flat.mean(0)
  var_one_norm = sum(
    torch.var(g, dim=0, correction=1).sum().item() for g in grads.values()
  )
  msq = (mean @ mean).item()
  inner = flat @ mean
  ortho = flat - torch.outer(inner, mean) / msq
  want = (
    np.ceil(var_one_norm / (eta**2 * msq)),
    np.ceil(torch.var(inner, correction=1).item() / (theta**2 * msq**2)),
    np.ceil(torch.var(ortho, dim=0, correction=1).sum().item() / (nu**2 * msq)),
  )
  got = variance.batch_size_tests(
    jax.tree.map(jnp.asarray, pop), eta=eta, theta=theta, nu=nu
  )
  assert (
    float(got.norm),
    float(got.inner_product),
    float(got.orthogonality),
  ) == want
  assert float(got.augmented) == max(want[1:])
