"""Shared test helpers: the public API's discovery, the battery's problems
and steps. Tests import these instead of each other's privates."""

import functools
import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
import typing

from flax import nnx
import jax
from jax import lax
import jax.numpy as jnp
import optax

import optax_ext
from tests import registry


def run_script(path, *args, timeout=300):
  """Runs a repository script on CPU in a fresh process; its stdout, or a
  failure showing the end of its stderr."""
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  env.pop('XLA_FLAGS', None)
  out = subprocess.run(
    [sys.executable, str(path), *args],
    capture_output=True,
    text=True,
    timeout=timeout,
    env=env,
    check=False,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  return out.stdout


def public_modules():
  mods = [optax_ext]
  for info in pkgutil.walk_packages(optax_ext.__path__, 'optax_ext.'):
    if '._' in info.name or info.name.startswith('optax_ext._'):
      continue
    mods.append(importlib.import_module(info.name))
  return mods


MODULES = public_modules()


def is_factory(obj) -> bool:
  if not inspect.isfunction(obj):
    return False
  try:
    ret = typing.get_type_hints(obj).get('return')
  except Exception:  # noqa: BLE001 - unresolvable hints are not factories
    return False
  return inspect.isclass(ret) and issubclass(ret, optax.GradientTransformation)


def public_factories():
  found = {}
  for mod in MODULES:
    for name in mod.__all__:
      obj = getattr(mod, name)
      if is_factory(obj):
        found[name] = obj
  return found


FACTORIES = public_factories()


def params(dtype=jnp.float32):
  return {
    'w': jnp.array([1.0, -2.0, 3.0], dtype=dtype),
    'b': jnp.array([[0.5, -0.5], [2.0, 0.0]], dtype=dtype),
  }


TARGET = {
  'w': jnp.array([-1.0, 0.5, 2.0]),
  'b': jnp.array([[1.0, 1.0], [-1.0, 0.25]]),
}


def parabola(params):
  return sum(
    jnp.sum(jnp.square(p.astype(jnp.float32) - t))
    for p, t in zip(
      jax.tree.leaves(params), jax.tree.leaves(TARGET), strict=True
    )
  )


def rosenbrock(params):
  x, y = params['xy'][0], params['xy'][1]
  return jnp.square(1.0 - x) + 100.0 * jnp.square(y - x * x)


def run(entry, loss, params, lr, steps):
  """Runs ``steps`` of the entry's optimiser on ``loss`` with lax.scan."""
  opt = entry.optimizer(lr)

  def step(carry, _):
    p, s = carry
    g = jax.grad(loss)(p)
    u, s = opt.update(entry.oracle_input(g), s, p, **entry.extra_args(g))
    return (optax.apply_updates(p, u), s), None

  (params, _), _ = jax.jit(
    lambda p: lax.scan(step, (p, opt.init(p)), length=steps)
  )(params)
  return params


def grads(params, i):
  """A deterministic param-shaped gradient differing from step to step."""
  return jax.tree.map(
    lambda p: (
      jnp.sin(jnp.arange(p.size, dtype=jnp.float32) + i).reshape(p.shape)
    ).astype(p.dtype),
    params,
  )


def cond_step(entry, tx):
  """A jitted ``(p, s, g, extra, take)`` step: ``tx``'s update when ``take``,
  else zero updates and the same state, through ``lax.cond``."""

  @jax.jit
  def step(p, s, g, extra, take):
    def skip(s):
      shaped_like = g if entry.kind == 'population' else p
      return jax.tree.map(jnp.zeros_like, shaped_like), s

    return lax.cond(take, lambda s: tx.update(g, s, p, **extra), skip, s)

  return step


# Member faults: what each corrupts a member into.
FAULTS = {
  'nan': lambda x: jnp.full_like(x, jnp.nan),
  'inf': lambda x: jnp.full_like(x, jnp.inf),
  'huge': lambda x: jnp.full_like(x, 1e30),
  'flip': lambda x: -100.0 * x,
  'zero': jnp.zeros_like,
}


class Mlp(nnx.Module):
  """The battery's small nnx model."""

  def __init__(self, rngs):
    self.l1 = nnx.Linear(3, 4, rngs=rngs)
    self.l2 = nnx.Linear(4, 1, rngs=rngs)

  def __call__(self, x):
    return self.l2(jax.nn.tanh(self.l1(x)))


# The multi-task aggregators by short name (``upgrad`` for
# ``aggregate_by_upgrad``), selected from the registry's ``multitask``
# property, with the two test-only settings the property tests need: PCGrad
# in its fixed task order and Nash-MTL without its update-norm cap.
_MULTITASK_TEST_KWARGS = {
  'pcgrad': {'key': None},
  'nash_mtl': {'max_norm': 0.0},
}
MULTITASK_AGGREGATORS = {
  short: functools.partial(
    entry.factory, **entry.kwargs, **_MULTITASK_TEST_KWARGS.get(short, {})
  )
  for name, entry in registry.with_property(lambda p: p.multitask).items()
  for short in [name.removeprefix('aggregate_by_')]
}


@functools.cache
def _jitted_tasks(name, kwargs_items):
  tx = MULTITASK_AGGREGATORS[name](**dict(kwargs_items))
  return jax.jit(
    lambda jac: tx.update(jac, tx.init(jnp.zeros(jac.shape[1:])))[0]
  )


def aggregate_tasks(name, jac, **kwargs):
  """The aggregator's output on ``jac`` (jitted once per rule and shape)."""
  return _jitted_tasks(name, tuple(sorted(kwargs.items())))(jac)
