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
"""The XLA:CPU-tuned kernels equal the plain path GPUs and TPUs trace."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_ext import adaptive
from optax_ext import population
from optax_ext import pruning
from optax_ext import robust
from optax_ext._src import kernels
from optax_ext._src import numerics
from optax_ext._src import population as pop_lib


def _both(fn, *args):
  """``fn(*args)`` traced (fresh jit) with the tuned and the plain kernels,
  after checking that the two traces differ (else the test proves nothing).
  """
  out, traces = {}, {}
  for mode in ('cpu', 'plain'):
    with kernels.use(mode):
      traces[mode] = str(jax.make_jaxpr(lambda *a: fn(*a))(*args))  # noqa: PLW0108
      out[mode] = jax.jit(lambda *a: fn(*a))(*args)  # noqa: PLW0108
  assert traces['cpu'] != traces['plain']
  return out['cpu'], out['plain']


def _population(k, d=37, seed=0, faults=True):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(k, d)).astype(np.float32)
  if faults:
    x[0, :5] = np.nan
    x[1, 3:8] = np.inf
    x[2, 6:9] = -np.inf
    x[k - 1, 10] = 1e30
  return jnp.asarray(x)


def test_auto_follows_the_backend():
  with kernels.use('auto'):
    assert kernels.cpu_tuned() == (jax.default_backend() == 'cpu')
  with kernels.use('plain'):
    assert not kernels.cpu_tuned()
  with kernels.use('cpu'):
    assert kernels.cpu_tuned()


def test_a_bad_mode_is_named():
  with (
    pytest.raises(ValueError, match=r"one of \('auto', 'cpu', 'plain'\)"),
    kernels.use('gpu'),
  ):
    pass
  env = {**os.environ, 'OPTAX_EXT_KERNELS': 'fast'}
  done = subprocess.run(
    [sys.executable, '-c', 'import optax_ext'],
    env=env,
    capture_output=True,
    text=True,
    check=False,
  )
  assert done.returncode != 0
  assert 'OPTAX_EXT_KERNELS' in done.stderr and "'fast'" in done.stderr


@pytest.mark.parametrize('k', [3, 70, 300])
def test_sum_over_members(k):
  x = _population(k, faults=False)
  tuned, plain = _both(
    lambda x: numerics.sum_over_members(x, (lambda m: m, jnp.square)), x
  )
  for a, b in zip(tuned, plain, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


# Up to NETWORK_MAX members (beyond it both paths sort with jnp.sort).
@pytest.mark.parametrize('k', [5, 8, 33])
@pytest.mark.parametrize('nan_as_outlier', [False, True])
def test_median(k, nan_as_outlier):
  x = _population(k)
  tuned, plain = _both(
    lambda x: population.median(x, nan_as_outlier=nan_as_outlier), x
  )
  np.testing.assert_array_equal(tuned, plain)


@pytest.mark.parametrize('k', [5, 8, 33])
def test_sort(k):
  x = _population(k)
  tuned, plain = _both(population.sort, x)
  np.testing.assert_array_equal(tuned, plain)


@pytest.mark.parametrize(
  ('k', 'b'),
  # the network (K <= 16; K <= 64 with b >= 4), selection, and the sort
  [(5, 1), (16, 0), (40, 4), (40, 2), (200, 3)],
)
def test_trimmed_mean(k, b):
  x = _population(k)
  tx = robust.aggregate_by_trimmed_mean(b)
  state = tx.init(jnp.zeros(x.shape[1:]))
  tuned, plain = _both(lambda x: tx.update(x, state)[0], x)
  np.testing.assert_allclose(tuned, plain, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('k', [4, 33])
def test_combine_skipping_zero_weights(k):
  x = _population(k)
  w = jnp.asarray(np.arange(k) % 3 == 0, jnp.float32) * 0.5
  # Every faulty member (0, 1, 2, K - 1) but member 0 gets weight 0.
  tuned, plain = _both(
    lambda x, w: population.combine(x, w, skip_zero_weights=True), x, w
  )
  np.testing.assert_allclose(tuned, plain, rtol=1e-6)


@pytest.mark.parametrize('k', [4, 16, 33])
def test_mean_of_scaled_deviations(k):
  # Faulty members (NaN, +-Inf: norm not finite, root 0) are zeroed; a huge
  # member (3e38) takes the tiny-factor path; the rest are clipped or kept.
  x = np.array(_population(k))
  x[k - 2] = 3e38
  x = jnp.asarray(x)
  center = jnp.asarray(np.linspace(-1, 1, x.shape[1]), jnp.float32)

  def fn(x, center):
    norms = pop_lib.norms(x, center=center)
    factors, roots = pop_lib.clip_factors(norms, 2.0)
    return pop_lib.mean_of_scaled_deviations(x, center, factors, roots)

  tuned, plain = _both(fn, x, center)
  assert np.all(np.isfinite(tuned))
  np.testing.assert_allclose(tuned, plain, rtol=1e-6, atol=1e-7)
  tx = robust.aggregate_by_centered_clipping(2.0, 3)
  state = tx.init(jnp.zeros(x.shape[1:]))
  tuned, plain = _both(lambda x: tx.update(x, state)[0], x)
  np.testing.assert_allclose(tuned, plain, rtol=1e-6, atol=1e-7)


def test_adamp_projection():
  rng = np.random.default_rng(1)
  params = {'w': jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)}
  # Gradients nearly orthogonal to some rows, so the projection fires.
  grads = {'w': jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)}
  tx = adaptive.adamp(1e-2, weight_decay=1e-2)
  state = tx.init(params)
  tuned, plain = _both(lambda g, p: tx.update(g, state, p)[0], grads, params)
  np.testing.assert_allclose(tuned['w'], plain['w'], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize('scope', ['global', 'layerwise'])
@pytest.mark.parametrize('sparsity', [0.0, 0.3, 0.9, 0.999])
def test_dpf_masks_by_count_equal_the_sort(scope, sparsity):
  # Exact counts with ties kept by position: ties, NaN (ranked last) and
  # infinite magnitudes included.
  rng = np.random.default_rng(2)
  w = np.round(rng.normal(size=(40, 30)), 1).astype(np.float32)
  v = np.round(rng.normal(size=(30, 7)), 1).astype(np.float32)
  w[0, :5], v[3, 2], v[4, :3] = np.nan, np.inf, 0.0
  params = {'w': jnp.asarray(w), 'v': jnp.asarray(v)}
  tx = pruning.dpf(optax.sgd(0.0), sparsity, update_every=1, scope=scope)
  state = tx.init(params)
  zeros = jax.tree.map(jnp.zeros_like, params)
  tuned, plain = _both(
    lambda g, p: tx.update(g, state, p)[1].mask, zeros, params
  )
  for name in params:
    np.testing.assert_array_equal(tuned[name], plain[name])
  if sparsity == 0.9:  # exact count, NaN pruned first
    kept = sum(int(jnp.sum(tuned[n])) for n in params)
    assert kept == (1410 - round(0.9 * 1410) if scope == 'global' else 120 + 21)
