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
"""DP-SGD's aggregate (noise, clipping, layouts) and its accounting."""

import jax
import jax.numpy as jnp
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
import pytest

import optax_ext
from optax_ext import population
from optax_ext import privacy
from optax_ext import robust


def _pop(k=8, seed=0):
  rng = np.random.default_rng(seed)
  return {
    'w': jnp.asarray(rng.normal(size=(k, 30, 20)) * 2, jnp.float32),
    'b': jnp.asarray(rng.normal(size=(k, 20)), jnp.float32),
  }


def _update(tx, pop, steps=1):
  params = jax.tree.map(lambda x: jnp.zeros(x.shape[1:], x.dtype), pop)
  state = tx.init(params)
  outs = []
  for _ in range(steps):
    out, state = tx.update(pop, state, params)
    outs.append(out)
  return outs


def test_without_noise_it_is_the_clipped_mean():
  pop = _pop()
  ours = _update(privacy.aggregate_by_private_mean(3.0, 0.0), pop)[0]
  ref_tx = optax.chain(
    robust.clip_each_by_global_norm(3.0), optax_ext.aggregate_by_mean()
  )
  params = jax.tree.map(lambda x: x[0], pop)
  ref = ref_tx.update(pop, ref_tx.init(params), params)[0]
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), ours, ref
  )


def test_per_layer_clipping_bounds_each_leaf():
  pop = _pop()
  c, k = 3.0, 8
  tx = privacy.aggregate_by_private_mean(c, 0.0, per_layer=True)
  out = _update(tx, pop)[0]
  # NumPy: each leaf of each member clipped to c / sqrt(2), then the mean.
  expected = {}
  for name, x in pop.items():
    x = np.asarray(x, np.float64)
    norms = np.linalg.norm(x.reshape(k, -1), axis=1)
    factor = np.minimum(1.0, (c / np.sqrt(2)) / norms)
    expected[name] = np.mean(x * factor.reshape((k,) + (1,) * (x.ndim - 1)), 0)
  for name in pop:
    np.testing.assert_allclose(out[name], expected[name], rtol=1e-5, atol=1e-7)


def test_noise_is_calibrated_fresh_each_step_and_seeded():
  zeros = {'w': jnp.zeros((8, 200, 100))}
  sigma, c, k = 1.5, 2.0, 8
  tx = privacy.aggregate_by_private_mean(c, sigma, seed=3)
  a, b = _update(tx, zeros, steps=2)
  for out in (a, b):
    x = np.asarray(out['w'])
    assert abs(x.mean()) < 0.01
    np.testing.assert_allclose(x.std(), sigma * c / k, rtol=0.02)
  assert not np.allclose(a['w'], b['w'])  # a new draw every step
  again = _update(privacy.aggregate_by_private_mean(c, sigma, seed=3), zeros)
  np.testing.assert_array_equal(again[0]['w'], a['w'])  # seeded
  other = _update(privacy.aggregate_by_private_mean(c, sigma, seed=4), zeros)
  assert not np.allclose(other[0]['w'], a['w'])


def test_one_draw_whatever_the_layout():
  # Stacked, one member per device under shard_map, and a lean microbatch
  # population give the same noised aggregate: the noise is drawn once,
  # from the same key, and added to the (same) sum.
  pop = _pop()
  tx_args = (1.0, 0.8)
  want = _update(privacy.aggregate_by_private_mean(*tx_args), pop)[0]
  mesh = jax.make_mesh(
    (8,), ('data',), axis_types=(AxisType.Auto,), devices=jax.devices()[:8]
  )
  named = privacy.aggregate_by_private_mean(
    *tx_args, axes=optax_ext.PopulationAxes(axis=None, axis_name='data')
  )
  params = jax.tree.map(lambda x: jnp.zeros(x.shape[1:]), pop)

  def local(g):
    member = jax.tree.map(lambda x: x[0], g)
    return named.update(member, named.init(params), params)[0]

  got = jax.jit(
    jax.shard_map(local, mesh=mesh, in_specs=P('data'), out_specs=P())
  )(pop)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    got,
    want,
  )

  # Lean: members are the gradients of a loss over microbatches.
  x = jnp.asarray(np.random.default_rng(1).normal(size=(16, 5)), jnp.float32)
  w0 = {'w': jnp.ones((5,))}

  def loss(p, batch):
    return jnp.mean((batch @ p['w']) ** 2)

  stacked = population.grad_population(loss, 8)(w0, x)[1]
  lean = population.microbatches(loss, w0, x, 8)
  tx = privacy.aggregate_by_private_mean(*tx_args)
  a = tx.update(stacked, tx.init(w0), w0)[0]
  b = tx.update(lean, tx.init(w0), w0)[0]
  np.testing.assert_allclose(a['w'], b['w'], rtol=1e-5, atol=1e-6)


def test_errors():
  with pytest.raises(ValueError, match=r'aggregate_by_private_mean: .*l2'):
    privacy.aggregate_by_private_mean(0.0, 1.0)
  with pytest.raises(ValueError, match=r'noise_multiplier'):
    privacy.aggregate_by_private_mean(1.0, -1.0)
  tx = privacy.aggregate_by_private_mean(1.0, 1.0, per_layer=True)
  w0 = {'w': jnp.ones((5,))}
  lean = population.microbatches(
    lambda p, b: jnp.mean(b @ p['w']), w0, jnp.ones((4, 5)), 2
  )
  with pytest.raises(ValueError, match=r'stacked members with per_layer=True'):
    tx.update(lean, tx.init(w0), w0)


def test_epsilon_is_the_accountants():
  dp_accounting = pytest.importorskip('dp_accounting')
  for accountant, cls in (
    ('rdp', dp_accounting.rdp.RdpAccountant),
    ('pld', dp_accounting.pld.PLDAccountant),
  ):
    acc = cls()
    acc.compose(
      dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(
          0.01, dp_accounting.GaussianDpEvent(1.3)
        ),
        1000,
      )
    )
    want = acc.get_epsilon(1e-5)
    got = privacy.dp_sgd_epsilon(1.3, 0.01, 1000, 1e-5, accountant=accountant)
    assert got == pytest.approx(want, rel=1e-12)


def test_epsilon_behaves():
  eps = lambda **kw: privacy.dp_sgd_epsilon(  # noqa: E731
    **{
      'noise_multiplier': 1.0,
      'sampling_rate': 0.01,
      'steps': 500,
      'delta': 1e-5,
      **kw,
    }
  )
  assert eps(steps=0) == 0.0
  assert eps(steps=1000) > eps(steps=500)
  assert eps(noise_multiplier=2.0) < eps()
  assert eps(sampling_rate=0.02) > eps()
  assert eps(accountant='pld') <= eps() * 1.001  # PLD is the tighter one
  with pytest.raises(ValueError, match=r'dp_sgd_epsilon: `delta`'):
    eps(delta=0.0)
  with pytest.raises(ValueError, match=r'dp_sgd_epsilon: `accountant`'):
    eps(accountant='moments')


def test_noise_costs_order_d_whatever_k():
  # XLA's temporaries of the noised step (compiled HLO): the noise draw adds
  # O(D), the same at K = 4 and K = 16.
  d = 1 << 16

  def temp_bytes(k):
    tx = privacy.aggregate_by_private_mean(1.0, 1.1)
    pop = jax.ShapeDtypeStruct((k, d), jnp.float32)
    params = jax.ShapeDtypeStruct((d,), jnp.float32)
    state = jax.eval_shape(tx.init, params)
    compiled = (
      jax.jit(lambda g, s, p: tx.update(g, s, p)[0])
      .lower(pop, state, params)
      .compile()
    )
    return compiled.memory_analysis().temp_size_in_bytes / (4 * d)

  small, big = temp_bytes(4), temp_bytes(16)
  assert small <= 6.0, small
  assert big <= 1.25 * small + 0.01, (small, big)
