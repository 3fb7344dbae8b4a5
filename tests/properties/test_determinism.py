"""Randomised methods take an explicit key (or seed) and are reproducible.

Registry-driven: every factory with a ``key`` or ``seed`` argument gives
bit-identical updates and states for the same key in two separately built
and jitted transforms; the methods whose output is random for these inputs
give different updates for another key (PCGrad, GradVac and GradDrop only
use the key when the members conflict, which the registry's population
does not).
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import registry


def _random_arg(entry):
  params = inspect.signature(entry.factory).parameters
  for name in ('key', 'seed'):
    if name in params:
      return name
  return None


# aggregate_by_weighting's registry entry uses the (deterministic) mean
# weighting; its randomised use is aggregate_by_random's.
ENTRIES = [
  pytest.param(e, id=e.name)
  for e in registry.REGISTRY
  if _random_arg(e) and e.name != 'aggregate_by_weighting'
]


RANDOM_OUTPUT = {'aggregate_by_random', 'gravity', 'scale_by_gravity'}


def _run(entry, value):
  tx = entry.make(**{_random_arg(entry): value})
  params = {'w': jnp.array([1.0, -2.0, 3.0, 0.5]), 'b': jnp.array([0.3, 0.1])}
  state = tx.init(params)
  update = jax.jit(tx.update)
  outs = []
  for i in range(3):
    grads = jax.tree.map(
      lambda p, i=i: jnp.cos(jnp.arange(p.size, dtype=p.dtype) + 1.7 * i),
      params,
    )
    u, state = update(
      entry.oracle_input(grads), state, params, **entry.extra_args(grads)
    )
    outs.append(u)
  return outs, state


def test_the_randomised_methods_are_found():
  names = {p.values[0].name for p in ENTRIES}
  assert {'aggregate_by_random', 'aggregate_by_graddrop', 'gravity'} <= names


@pytest.mark.parametrize('entry', ENTRIES)
def test_same_key_same_result_other_key_other_result(entry):
  a, state_a = _run(entry, 3)
  b, state_b = _run(entry, 3)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  jax.tree.map(
    np.testing.assert_array_equal,
    jax.tree.map(
      lambda x: jax.random.key_data(x) if _is_key(x) else x, state_a
    ),
    jax.tree.map(
      lambda x: jax.random.key_data(x) if _is_key(x) else x, state_b
    ),
  )
  if entry.name not in RANDOM_OUTPUT:
    return
  c, _ = _run(entry, 4)
  assert any(
    not np.array_equal(x, y)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(c), strict=True)
  ), f'{entry.name}: another key gave the same updates'


def _is_key(x):
  return isinstance(x, jax.Array) and jax.dtypes.issubdtype(
    x.dtype, jax.dtypes.prng_key
  )


def test_a_key_for_a_deterministic_weighting_is_an_error():
  from optax_ext import alignment  # noqa: PLC0415

  with pytest.raises(ValueError, match='`key` was given but `weighting`'):
    alignment.aggregate_by_weighting(alignment.mean_weighting, key=0)
