"""Property-based tests (hypothesis) of the location aggregators.

Random population sizes, widths, scales and dtypes: permutation
invariance, identical members returned unchanged, translation and positive
scale equivariance, and the gradients' dtype preserved.
"""

import hypothesis
from hypothesis import strategies as st
import jax.numpy as jnp
import numpy as np

import optax_ext
from optax_ext import robust

AGGREGATORS = {
  'mean': lambda k: optax_ext.aggregate_by_mean(),
  'median': lambda k: robust.aggregate_by_coordinate_median(),
  'trimmed': lambda k: robust.aggregate_by_trimmed_mean((k - 1) // 2),
  'geomed': lambda k: robust.aggregate_by_geometric_median(
    maxiter=200, ftol=1e-10
  ),
}


def _agg(name, x):
  tx = AGGREGATORS[name](x.shape[0])
  params = jnp.zeros(x.shape[1:], x.dtype)
  return tx.update(x, tx.init(params), params)[0]


@hypothesis.settings(max_examples=15, deadline=None)
@hypothesis.given(
  name=st.sampled_from(sorted(AGGREGATORS)),
  k=st.integers(3, 9),
  d=st.integers(1, 5),
  scale=st.sampled_from([1e-3, 1.0, 1e3]),
  seed=st.integers(0, 2**16),
)
def test_location_aggregator_properties(name, k, d, scale, seed):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(scale * rng.normal(size=(k, d)), jnp.float32)
  out = _agg(name, x)
  # Weiszfeld stops when the float32 objective stops moving: the objective
  # is flat at the minimum, so the point is known to ~sqrt(eps) ~ 3e-4 of the
  # spread, and two runs (permuted, shifted, scaled) differ by that much.
  atol = (2e-3 if name == 'geomed' else 2e-4) * scale
  tol = {'rtol': 2e-4, 'atol': atol}
  # Permutation invariance.
  perm = rng.permutation(k)
  np.testing.assert_allclose(_agg(name, x[perm]), out, **tol)
  # Translation equivariance.
  shift = jnp.asarray(scale * rng.normal(size=d), jnp.float32)
  np.testing.assert_allclose(_agg(name, x + shift), out + shift, **tol)
  # Positive scale equivariance.
  np.testing.assert_allclose(
    _agg(name, 3.0 * x), 3.0 * out, rtol=2e-4, atol=3 * atol
  )
  # Identical members come back unchanged.
  same = jnp.broadcast_to(x[0], x.shape)
  np.testing.assert_allclose(_agg(name, same), x[0], **tol)


@hypothesis.settings(max_examples=10, deadline=None)
@hypothesis.given(
  name=st.sampled_from(sorted(AGGREGATORS)),
  k=st.integers(3, 7),
  dtype=st.sampled_from([jnp.float32, jnp.bfloat16]),
)
def test_dtype_is_preserved(name, k, dtype):
  x = jnp.asarray(np.linspace(-1.0, 1.0, 4 * k).reshape(k, 4), dtype)
  out = _agg(name, x)
  assert out.dtype == dtype
  assert bool(jnp.all(jnp.isfinite(out.astype(jnp.float32))))
