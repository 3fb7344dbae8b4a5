"""Fault injection for every aggregator and population transform.

One member of ``K = 4`` is replaced by NaN, +Inf, 1e30, a sign flip x100 or
zeros. The documented behaviour (README, "Faults"):

* the robust aggregators (coordinate median, trimmed mean, geometric median,
  nearest-neighbour averaging, centered clipping, per-member clipping) stay
  finite and within the honest output's norm of it for every fault;
* every other aggregator propagates a non-finite member: NaN in gives NaN
  out, Inf gives a non-finite output; never a finite answer that hides it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_ext
from tests import registry

ROBUST = {
  'aggregate_by_coordinate_median',
  'aggregate_by_trimmed_mean',
  'aggregate_by_geometric_median',
  'aggregate_by_nearest_neighbours',
  'aggregate_by_centered_clipping',
  'clip_each_by_global_norm',
}
ENTRIES = [
  pytest.param(e, id=e.name)
  for e in registry.REGISTRY
  if e.kind in ('aggregator', 'population')
]
FAULTS = {
  'nan': lambda x: jnp.full_like(x, jnp.nan),
  'inf': lambda x: jnp.full_like(x, jnp.inf),
  'huge': lambda x: jnp.full_like(x, 1e30),
  'flip': lambda x: -100.0 * x,
  'zero': jnp.zeros_like,
}


def _flat(tree):
  return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


@pytest.mark.standard_promotion  # some rules chain optax's Adam
@pytest.mark.parametrize('entry', ENTRIES)
def test_fault_is_bounded_or_propagated(entry):
  rng = np.random.default_rng(0)
  params = {
    'w': jnp.asarray(rng.normal(size=6), jnp.float32),
    'b': jnp.asarray([0.5, -1.0], jnp.float32),
  }
  grads = jax.tree.map(lambda p: 0.3 * p + 0.1, params)
  tx = entry.make()
  if entry.kind == 'population':
    tx = optax.chain(tx, optax_ext.aggregate_by_mean())
  extra = entry.extra_args(grads)
  pop = entry.population(grads)
  # One compilation for the honest run and the five faults.
  update = jax.jit(
    lambda g: _flat(tx.update(g, tx.init(params), params, **extra)[0])
  )
  honest = update(pop)
  for fault, corrupt in FAULTS.items():
    bad = jax.tree.map(lambda x, c=corrupt: x.at[0].set(c(x[0])), pop)
    out = update(bad)
    finite = bool(jnp.all(jnp.isfinite(out)))
    if (entry.name in ROBUST and fault != 'flip') or fault == 'zero':
      assert finite, (entry.name, fault, out)
      err = float(jnp.linalg.norm(out - honest) / jnp.linalg.norm(honest))
      bound = 1.0 if entry.name in ROBUST else 10.0
      assert err < bound, (entry.name, fault, err)
    elif fault == 'nan':
      assert bool(jnp.any(jnp.isnan(out))), (entry.name, 'hid a NaN', out)
    elif fault == 'inf':
      assert not finite, (entry.name, 'hid an Inf', out)
