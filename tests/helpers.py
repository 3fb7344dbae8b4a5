"""Shared test helpers: the public API's discovery, the battery's problems
and steps, the member faults, and one assert function per property of an
aggregator. Tests import these instead of each other's privates."""

import functools
import importlib
import importlib.util
import inspect
import os
import pathlib
import pkgutil
import subprocess
import sys
import typing

from flax import nnx
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
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


@functools.cache
def workload_module(name):
  """``benchmarks/workloads/<name>.py`` imported as a module."""
  return benchmark_module(name, folder='benchmarks/workloads')


def benchmark_module(name, folder='benchmarks'):
  """``benchmarks/<name>.py`` imported as a module (once per process)."""
  path = pathlib.Path(__file__).resolve().parents[1] / folder
  if str(path) not in sys.path:  # the scripts import their siblings
    sys.path.insert(0, str(path))
  spec = importlib.util.spec_from_file_location(
    f'benchmarks_{name}', path / f'{name}.py'
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


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


# --- One assert per property ------------------------------------------------
# ``aggregate`` maps a stacked population (an array or a pytree of
# ``[K, ...]`` leaves) to its param-shaped update; the tolerances are the
# caller's (``rtol``/``atol`` as ``np.testing.assert_allclose``), and
# ``context`` is added to the failure message.


def float_leaves(tree) -> list:
  """The floating-point leaves of ``tree`` (updates and optimiser states hold
  integer counts and PRNG keys too)."""
  return [
    x
    for x in jax.tree.leaves(tree)
    if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
  ]


def _assert_trees_close(actual, desired, what, context, **tol):
  message = f'{what} {context}'.strip()
  jax.tree.map(
    lambda a, d: np.testing.assert_allclose(a, d, err_msg=message, **tol),
    actual,
    desired,
  )


def assert_permutation_invariant(
  aggregate, population, perm, context='', **tol
):
  """``A(x[perm]) = A(x)``: the members' order does not matter."""
  _assert_trees_close(
    aggregate(jax.tree.map(lambda x: x[perm], population)),
    aggregate(population),
    'permutation invariance',
    context,
    **tol,
  )


def assert_homogeneous(aggregate, population, c, degree=1, context='', **tol):
  """``A(c x) = c^degree A(x)`` for the positive scale ``c``."""
  _assert_trees_close(
    aggregate(jax.tree.map(lambda x: c * x, population)),
    jax.tree.map(lambda u: c**degree * u, aggregate(population)),
    f'homogeneity of degree {degree}',
    context,
    **tol,
  )


def assert_translation_equivariant(
  aggregate, population, shift, context='', **tol
):
  """``A(x + s) = A(x) + s`` for a param-shaped shift ``s``."""
  _assert_trees_close(
    aggregate(jax.tree.map(lambda x, s: x + s, population, shift)),
    jax.tree.map(lambda u, s: u + s, aggregate(population), shift),
    'translation equivariance',
    context,
    **tol,
  )


def assert_returns_identical_members(aggregate, member, k, context='', **tol):
  """``K`` copies of one member aggregate to that member."""
  same = jax.tree.map(lambda m: jnp.repeat(m[None], k, axis=0), member)
  _assert_trees_close(
    aggregate(same), member, 'identical members', context, **tol
  )


def assert_linear_under_scaling(aggregate, jac, c1, c2, context='', **tol):
  """``A(diag(c1 + c2) J) = A(diag(c1) J) + A(diag(c2) J)`` for task
  scalings ``c1, c2 > 0`` (TorchJD's "linear under scaling")."""

  def scaled(c):
    return aggregate(c[:, None] * jac)

  _assert_trees_close(
    scaled(c1 + c2),
    scaled(c1) + scaled(c2),
    'linearity under scaling',
    context,
    **tol,
  )


def assert_non_conflicting(jac, update, atol, context=''):
  """``<g_i, u> >= -atol`` for every task row ``g_i``: the update does not
  increase any task's loss to first order."""
  proj = np.asarray(jac, np.float64) @ np.asarray(update, np.float64)
  assert np.min(proj) >= -atol, f'non-conflict {context}: {proj}, {atol}'
