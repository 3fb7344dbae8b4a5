"""Float64 inputs keep float64 resolution through every transform.

docs/methods.md's rule: reductions accumulate in float64 for float64 inputs.
A transform that casts a statistic to float32 on the way loses every change
below float32's resolution. Registry-driven check without a per-method
reference: perturb the gradients by ``t * delta`` with ``t`` around 1e-9 of
their scale (far below float32's 6e-8, far above float64's 1e-16); in float64
the outputs and every float leaf of the state move by ``t`` times a
directional derivative, so the change at ``2t`` is twice the change at ``t``,
and something moves. Through a float32 cast the changes vanish or are
rounding noise.

Regression: the gradient noise scale, the batch-size tests, ProGrad, the
private mean, AGVM and cautious returned float32-accurate numbers for
float64 inputs (tr(Sigma) 1.46e-7 where the exact value is 6.9e-10).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import helpers
from tests import registry

T = 1e-9

# Reductions over a population (every aggregator and population transform)
# and the param-shaped transforms whose own statistic is a reduction. The
# elementwise optimisers compute in float32 whatever the params (their
# ``mu_dtype`` default; docs/methods.md) and are not held to this.
REDUCING = ('cautious', 'prograd', 'lookahead', 'multilayer_lookahead')
ENTRIES = [
  pytest.param(e, id=e.name)
  for e in registry.REGISTRY
  if e.takes_population or e.name in REDUCING
]


@pytest.mark.standard_promotion  # some entries chain optax's Adam
@pytest.mark.parametrize('entry', ENTRIES)
def test_float64_inputs_keep_float64_resolution(entry):
  with jax.enable_x64(True):
    params = helpers.params(jnp.float64)
    tx = entry.aggregator() if entry.takes_population else entry.make()
    delta = jax.tree.map(
      lambda p: jnp.cos(3.0 * jnp.arange(p.size, dtype=jnp.float64)).reshape(
        p.shape
      ),
      params,
    )

    def run(t):
      state = tx.init(params)
      outs = []
      for i in range(2):
        # Away from 0 (1 +- 0.5): an adaptive step is not linear in the
        # gradient near 0 (m / sqrt(v) of two tiny numbers).
        grads = jax.tree.map(
          lambda g, d: 1.0 + 0.5 * g + t * d, helpers.grads(params, i), delta
        )
        g, extra = entry.oracle_input(grads), entry.extra_args(grads)
        updates, state = tx.update(g, state, params, **extra)
        for u in jax.tree.leaves(updates):
          assert u.dtype == jnp.float64, (entry.name, u.dtype)
        outs += [
          np.asarray(x, np.float64).ravel()
          for x in helpers.float_leaves((updates, state))
        ]
      return np.concatenate(outs)

    base = run(0.0)
    d1, d2 = run(T) - base, run(2 * T) - base
  finite = np.isfinite(base)
  d1, d2 = d1[finite], d2[finite]
  assert np.any(d1 != 0), f'{entry.name}: nothing moved below float32 level'
  scale = np.max(np.abs(d1))
  np.testing.assert_allclose(
    d2, 2 * d1, rtol=1e-3, atol=1e-3 * scale, err_msg=entry.name
  )
