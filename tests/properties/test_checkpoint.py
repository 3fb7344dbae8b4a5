"""Checkpoint and resume with orbax, bitwise, for every registry entry.

Three steps, save (params and optimizer state), restore into a fresh
abstract target, three more steps: equal bit for bit to six uninterrupted
steps. Also inside ``flax.nnx.Optimizer`` (its state saved with
``nnx.state``), as Flax users checkpoint.
"""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from tests import helpers
from tests import registry

ENTRIES = [pytest.param(e, id=e.name) for e in registry.REGISTRY]


def _params():
  return {
    'w': jnp.array([1.0, -2.0, 3.0]),
    'b': jnp.array([[0.5, -0.5], [2.0, 0.0]]),
  }


def _grads(params, i):
  return jax.tree.map(
    lambda p: (
      jnp.sin(jnp.arange(p.size, dtype=jnp.float32) * 0.7 + i).reshape(p.shape)
      + 0.1 * p
    ),
    params,
  )


def _steps(entry, tx, params, state, start, stop):
  step = jax.jit(
    lambda p, s, g, extra: _apply(tx, p, s, g, extra),
  )
  for i in range(start, stop):
    grads = _grads(params, i)
    params, state = step(
      params, state, entry.oracle_input(grads), entry.extra_args(grads)
    )
  return params, state


def _apply(tx, p, s, g, extra):
  u, s = tx.update(g, s, p, **extra)
  return optax.apply_updates(p, u), s


def _save_restore(tmp_path, tree):
  """Writes ``tree`` with orbax and reads it back into a fresh target."""
  path = tmp_path / 'ckpt'
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, tree)
    ckptr.wait_until_finished()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
    return ckptr.restore(path, abstract)


@pytest.mark.parametrize('entry', ENTRIES)
def test_resume_is_bitwise(entry, tmp_path):
  tx = entry.optimizer(0.01)
  params = _params()
  want = _steps(entry, tx, params, tx.init(params), 0, 6)

  half = _steps(entry, tx, params, tx.init(params), 0, 3)
  restored = _save_restore(tmp_path, half)
  got = _steps(entry, tx, *restored, 3, 6)
  jax.tree.map(np.testing.assert_array_equal, got, want)
  assert jax.tree.structure(got) == jax.tree.structure(want)


def _nnx_run(entry, model, optimizer, start, stop):
  x = jnp.linspace(-1.0, 1.0, 3 * registry.NUM_MEMBERS).reshape(-1, 3)
  y = jnp.sum(x, axis=1, keepdims=True)

  @nnx.jit
  def step(model, optimizer, shift):
    def loss(m, xb, yb):
      return jnp.mean((m(xb + shift) - yb) ** 2)

    if entry.takes_population:  # a per-example population
      graphdef, p = nnx.split(model, nnx.Param)
      per = jax.vmap(
        jax.grad(lambda p, xb, yb: loss(nnx.merge(graphdef, p), xb, yb)),
        in_axes=(None, 0, 0),
      )
      grads, extra = per(p, x[:, None], y[:, None]), {}
    else:
      grads = nnx.grad(loss)(model, x, y)
      extra = entry.extra_args(nnx.state(model, nnx.Param))
    optimizer.update(model, grads, **extra)

  for i in range(start, stop):
    step(model, optimizer, jnp.float32(0.1 * i))


# Inside nnx.Optimizer, one entry per kind of state (the plain-optax test
# above covers every entry): moment buffers, shifted/true params, slow
# weights, masks, keys, per-cluster buffers, populations, histories.
NNX_NAMES = (
  'qhadam',
  'mars',
  'igt_adam',
  'xgrad_adam',
  'ranger21',
  'gravity',
  'multilayer_lookahead',
  'dpf',
  'scale_by_cluster_momentum',
  'aggregate_by_centered_clipping',
  'aggregate_by_gradvac',
  'aggregate_by_random',
  'clip_by_norm_percentile',
  'vr_adam',
  'median_tracking',
  'bloop',
)
NNX_ENTRIES = [
  pytest.param(registry.BY_NAME[n], id=n)
  for n in NNX_NAMES
  if n in registry.BY_NAME
]


def test_nnx_subset_names_exist():
  missing = [n for n in NNX_NAMES if n not in registry.BY_NAME]
  assert not missing, missing


@pytest.mark.parametrize('entry', NNX_ENTRIES)
def test_nnx_optimizer_resume_is_bitwise(entry, tmp_path):
  tx = entry.optimizer(0.05)
  model = helpers.Mlp(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  _nnx_run(entry, model, optimizer, 0, 4)
  want = nnx.state((model, optimizer))

  model = helpers.Mlp(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  _nnx_run(entry, model, optimizer, 0, 2)
  restored = _save_restore(tmp_path, nnx.state((model, optimizer)))
  model = helpers.Mlp(nnx.Rngs(1))  # different weights: all must come back
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  nnx.update((model, optimizer), restored)
  _nnx_run(entry, model, optimizer, 2, 4)
  got = nnx.state((model, optimizer))
  jax.tree.map(np.testing.assert_array_equal, got, want)
