"""Mixed precision: ``mu_dtype`` storage and ``MultiSteps`` in bf16 models.

Registry-driven. Every factory with a ``mu_dtype`` argument stores its
momentum buffers in that dtype (computing in float32), keeps update and
state dtypes fixed across jitted steps and ``lax.cond`` branches, stays
close to the float32-state run, and still converges. ``optax.MultiSteps``
around every optimiser works on bfloat16 params (zero updates while
accumulating, bfloat16 updates close to the float32 run).
"""

import dataclasses
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests import helpers
from tests import registry

MU_ENTRIES = [
  pytest.param(e, id=e.name)
  for e in registry.REGISTRY
  if 'mu_dtype' in inspect.signature(e.factory).parameters
]
ENTRIES = [pytest.param(e, id=e.name) for e in registry.REGISTRY]


def _with(entry, **kwargs):
  return dataclasses.replace(entry, kwargs={**entry.kwargs, **kwargs})


def _param_shaped_dtypes(state, params):
  shapes = {jnp.shape(p) for p in jax.tree.leaves(params)}
  return [
    jnp.asarray(x).dtype
    for x in jax.tree.leaves(state)
    if jnp.shape(x) in shapes and jnp.issubdtype(x.dtype, jnp.floating)
  ]


def _norm(tree):
  return float(
    jnp.sqrt(
      sum(
        jnp.sum(jnp.square(x.astype(jnp.float32)))
        for x in jax.tree.leaves(tree)
      )
    )
  )


def _diff(a, b):
  return jax.tree.map(
    lambda x, y: x.astype(jnp.float32) - y.astype(jnp.float32), a, b
  )


def test_the_mu_dtype_battery_is_wide():
  assert len(MU_ENTRIES) >= 20, [p.id for p in MU_ENTRIES]


@pytest.mark.parametrize('entry', MU_ENTRIES)
def test_mu_dtype_none_is_float32_everywhere(entry):
  """One rule: the default ``mu_dtype=None`` stores float32 buffers, for
  bfloat16 params too."""
  params = helpers.params(jnp.bfloat16)
  default = entry.make(mu_dtype=None).init(params)
  f32 = entry.make(mu_dtype=jnp.float32).init(params)
  assert _param_shaped_dtypes(default, params) == _param_shaped_dtypes(
    f32, params
  )


@pytest.mark.parametrize('entry', MU_ENTRIES)
def test_mu_dtype_sets_the_storage_and_dtypes_stay_fixed(entry):
  """bf16 params: ``mu_dtype`` decides the buffers' dtype; jitted steps
  under ``lax.cond`` keep update and state dtypes."""
  params = helpers.params(jnp.bfloat16)
  counts = {}
  for mu_dtype in (jnp.float32, jnp.bfloat16):
    state = entry.make(mu_dtype=mu_dtype).init(params)
    counts[mu_dtype] = _param_shaped_dtypes(state, params).count(jnp.bfloat16)
  assert counts[jnp.bfloat16] > counts[jnp.float32], counts

  tx = entry.make(mu_dtype=jnp.bfloat16)
  state = tx.init(params)
  dtypes = jax.tree.map(lambda x: jnp.asarray(x).dtype, state)
  step = helpers.cond_step(entry, tx)

  for i in range(3):
    grads = helpers.grads(params, i)
    updates, state = step(
      params, state, entry.oracle_input(grads), entry.extra_args(grads), i != 1
    )
    for u in jax.tree.leaves(updates):
      assert u.dtype == jnp.bfloat16, u.dtype
      assert bool(jnp.all(jnp.isfinite(u.astype(jnp.float32))))
    assert jax.tree.map(lambda x: jnp.asarray(x).dtype, state) == dtypes
    params = optax.apply_updates(params, updates)


@pytest.mark.parametrize('entry', MU_ENTRIES)
def test_bf16_buffers_track_the_float32_run(entry):
  """Same float32 params and gradients; only the buffers' storage differs."""
  params = helpers.params()
  runs = {}
  for mu_dtype in (jnp.float32, jnp.bfloat16):
    opt = _with(entry, mu_dtype=mu_dtype).optimizer(0.01)
    p, s, out = params, opt.init(params), []
    for i in range(6):
      g = helpers.grads(p, i)
      u, s = opt.update(entry.oracle_input(g), s, p, **entry.extra_args(g))
      out.append(u)
      p = optax.apply_updates(p, u)
    runs[mu_dtype] = out
  for u32, u16 in zip(runs[jnp.float32], runs[jnp.bfloat16], strict=True):
    # bfloat16 keeps 8 significant bits: ~0.4% per rounding of the buffer.
    assert _norm(_diff(u16, u32)) <= 3e-2 * _norm(u32) + 1e-7


@pytest.mark.parametrize('entry', MU_ENTRIES)
def test_bf16_buffers_converge_on_the_parabola(entry):
  bf16 = _with(entry, mu_dtype=jnp.bfloat16)
  params = helpers.run(bf16, helpers.parabola, helpers.params(), bf16.lr, 500)
  for p, t in zip(
    jax.tree.leaves(params), jax.tree.leaves(helpers.TARGET), strict=True
  ):
    np.testing.assert_allclose(p, t, atol=2e-2)


@pytest.mark.parametrize('entry', MU_ENTRIES)
def test_mu_dtype_must_be_a_float_dtype(entry):
  with pytest.raises(TypeError, match='`mu_dtype` must be None or a floating'):
    entry.make(mu_dtype=jnp.int32)


@pytest.mark.standard_promotion  # optax.MultiSteps is not strict-clean
@pytest.mark.parametrize('entry', ENTRIES)
def test_multi_steps_in_a_bf16_model(entry):
  """MultiSteps accumulates bf16 gradients and applies a bf16 update close
  to the float32 model's (fed the same bf16-representable values)."""
  every_k = 2
  updates = {}
  for dtype in (jnp.float32, jnp.bfloat16):
    params = jax.tree.map(
      lambda p, d=dtype: p.astype(d), helpers.params(jnp.bfloat16)
    )
    if entry.takes_population:  # aggregate first, accumulate after
      tx = optax.chain(
        entry.aggregator(),
        optax.MultiSteps(optax.sgd(0.1), every_k).gradient_transformation(),
      )
    else:
      tx = optax.MultiSteps(entry.optimizer(0.1), every_k)
    state = tx.init(params)
    step = jax.jit(lambda g, s, p, e, tx=tx: tx.update(g, s, p, **e))
    for i in range(every_k):
      # The same values in both runs: built in bfloat16, then cast.
      g16 = helpers.grads(helpers.params(jnp.bfloat16), i)
      x = jax.tree.map(lambda v, d=dtype: v.astype(d), entry.oracle_input(g16))
      g = jax.tree.map(lambda v, d=dtype: v.astype(d), g16)
      u, state = step(x, state, params, entry.extra_args(g))
      for leaf in jax.tree.leaves(u):
        assert leaf.dtype == dtype, leaf.dtype
        if i < every_k - 1:
          np.testing.assert_array_equal(leaf, 0.0)
    updates[dtype] = u
  u16, u32 = updates[jnp.bfloat16], updates[jnp.float32]
  assert all(
    bool(jnp.all(jnp.isfinite(x.astype(jnp.float32))))
    for x in jax.tree.leaves(u16)
  )
  assert _norm(_diff(u16, u32)) <= 5e-2 * _norm(u32) + 1e-6
