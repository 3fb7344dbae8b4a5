"""Composition mistakes get the library's own error, naming the fix.

Each case is one a new user made following optax's and Flax's docs; before,
each raised a foreign or self-contradictory error (``population leaf  has
shape (3,) but params have shape (3,)``, ``'Microbatches' object has no
attribute 'real'``, ``... is not a valid JAX type``, flax's ``IndexError:
tuple index out of range``, structures differing without the fix).
"""

from flax import nnx
import jax
import jax.numpy as jnp
import optax
import pytest

import optax_ext
from optax_ext import population
from optax_ext import robust

W = jnp.ones(3)
BATCH = jnp.arange(24.0).reshape(8, 3) / 24


def _loss(w, batch):
  return jnp.mean((batch @ w) ** 2)


def _lean_step(tx):
  state = tx.init(W)

  @jax.jit
  def step(w):
    return tx.update(population.microbatches(_loss, w, BATCH, 4), state, w)

  return step


@pytest.mark.standard_promotion  # optax.adam
def test_multisteps_around_the_aggregator_names_the_fix():
  tx = optax.MultiSteps(
    optax.chain(robust.aggregate_by_krum(1), optax.adam(1e-3)), 2
  )
  pop = jnp.arange(15.0).reshape(5, 3)
  with pytest.raises(ValueError) as info:
    tx.update(pop, tx.init(W), W)
  msg = str(info.value)
  assert 'aggregate_by_krum: population leaf (root)' in msg
  assert 'arrived param-shaped' in msg
  assert 'optax.MultiSteps(tx, k).gradient_transformation()' in msg


@pytest.mark.parametrize(
  'tx',
  [
    pytest.param(
      optax.chain(
        optax.clip_by_global_norm(1.0), optax_ext.aggregate_by_mean()
      ),
      id='transform before the aggregator',
    ),
    pytest.param(
      optax.MultiSteps(
        optax.chain(optax_ext.aggregate_by_mean(), optax.sgd(0.1)), 2
      ),
      id='MultiSteps around the aggregator',
    ),
  ],
)
def test_lean_population_out_of_place_names_the_fix(tx):
  with pytest.raises(TypeError, match=r'Microbatches population.*comes first'):
    _lean_step(tx)(W)


class _Linear(nnx.Module):
  def __init__(self):
    self.w = nnx.Param(jnp.ones(3))


def _nnx_loss(params, batch):
  return jnp.mean((batch @ params['w']) ** 2)


def _model_and_optimizer():
  model = _Linear()
  tx = optax.chain(optax_ext.aggregate_by_mean(), optax.sgd(0.1))
  return model, nnx.Optimizer(model, tx, wrt=nnx.Param)


def test_lean_population_as_nnx_positional_gradient_names_population_kwarg():
  model, opt = _model_and_optimizer()
  params = nnx.as_pure(nnx.state(model, nnx.Param))
  mb = population.microbatches(_nnx_loss, params, BATCH, 4)
  with pytest.raises(TypeError, match=r'population=microbatches'):
    opt.update(model, mb)
  # The documented form works, and moves the weights.
  opt.update(model, nnx.state(model, nnx.Param), population=mb)
  assert float(jnp.sum(model.w[...])) < 3.0


def test_nnx_state_without_as_pure_names_as_pure():
  model, opt = _model_and_optimizer()
  mb = population.microbatches(_nnx_loss, nnx.state(model, nnx.Param), BATCH, 4)
  with pytest.raises(ValueError, match=r'nnx\.as_pure\(nnx\.state\(model'):
    opt.update(model, nnx.state(model, nnx.Param), population=mb)
