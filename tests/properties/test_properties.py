"""Property-based tests (hypothesis) of the location and multi-task
aggregators.

Random population sizes, widths, scales and dtypes: permutation
invariance, identical members returned unchanged, translation and positive
scale equivariance, and the gradients' dtype preserved. For the multi-task
rules, random task Jacobians with and without conflicts: finiteness,
non-conflict where the rule promises it, permutation invariance and the
degree of positive homogeneity.
"""

import hypothesis
from hypothesis import strategies as st
import jax.numpy as jnp
import numpy as np

import optax_ext
from optax_ext import robust
from tests import helpers
from tests import registry

AGGREGATORS = {
  'mean': lambda k: optax_ext.aggregate_by_mean(),
  'median': lambda k: robust.aggregate_by_coordinate_median(),
  'trimmed': lambda k: robust.aggregate_by_trimmed_mean((k - 1) // 2),
  'geomed': lambda k: robust.aggregate_by_geometric_median(
    maxiter=200, ftol=1e-10
  ),
}


def _make_degenerate(x):
  """In place: a coordinate exactly 0 in every member (a dead unit), a
  duplicated member, and a tie between two members at the last coordinate
  (what real populations have and random normals never do)."""
  x[:, 0] = 0.0
  x[1] = x[0]
  x[-1, -1] = x[-2, -1]


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
  degenerate=st.booleans(),
)
def test_location_aggregator_properties(name, k, d, scale, seed, degenerate):
  rng = np.random.default_rng(seed)
  x = scale * rng.normal(size=(k, d))
  if degenerate:
    _make_degenerate(x)
  x = jnp.asarray(x, jnp.float32)
  # Weiszfeld stops when the float32 objective stops moving: the objective
  # is flat at the minimum, so the point is known to ~sqrt(eps) ~ 3e-4 of the
  # spread, and two runs (permuted, shifted, scaled) differ by that much.
  atol = (2e-3 if name == 'geomed' else 2e-4) * scale
  tol = {'rtol': 2e-4, 'atol': atol}

  def aggregate(population):
    return _agg(name, population)

  helpers.assert_permutation_invariant(aggregate, x, rng.permutation(k), **tol)
  shift = jnp.asarray(scale * rng.normal(size=d), jnp.float32)
  helpers.assert_translation_equivariant(aggregate, x, shift, **tol)
  helpers.assert_homogeneous(aggregate, x, 3.0, rtol=2e-4, atol=3 * atol)
  helpers.assert_returns_identical_members(aggregate, x[0], k, **tol)


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


# Multi-task rules, from the registry: (non-conflicting, permutation-
# invariant, degree of positive homogeneity u(cJ) = c^p u(J)). Nash-MTL's
# weights solve G a = 1/a, so they scale as 1/c and the update does not
# scale (p = 0).
MULTITASK = {
  name.removeprefix('aggregate_by_'): (
    m.non_conflicting,
    m.permutation_invariant,
    m.homogeneity_degree,
  )
  for name, e in registry.with_property(lambda p: p.multitask).items()
  for m in [e.properties.multitask]
}


def _multitask(name, jac, scale):
  # TorchJD's absolute threshold, scaled with the Gramian here: UPGrad,
  # DualProj and Nash-MTL skip their solver below a Gramian trace of
  # norm_eps (default 1e-4; UPGrad/DualProj then return the mean). UPGrad
  # and DualProj add reg_eps * I to the trace-normalised Gramian (default
  # 1e-4, which bends non-conflict by that much): 1e-8, as test_multitask.
  fixed = {'norm_eps': 1e-4 * scale**2}
  kwargs = {
    'upgrad': {'reg_eps': 1e-8, **fixed},
    'dualproj': {'reg_eps': 1e-8, **fixed},
    'nash_mtl': fixed,
  }.get(name, {})
  out = helpers.aggregate_tasks(name, jac, **kwargs)
  return np.asarray(out, np.float64)


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(
  name=st.sampled_from(sorted(MULTITASK)),
  k=st.sampled_from([2, 3, 5]),
  d=st.sampled_from([1, 4, 16]),
  scale=st.sampled_from([1e-3, 1.0, 1e3]),
  conflicting=st.booleans(),
  seed=st.integers(0, 2**16),
  degenerate=st.booleans(),
)
def test_multitask_aggregator_properties(
  name, k, d, scale, conflicting, seed, degenerate
):
  """Random task Jacobians (shapes, scales, with and without conflicts):
  finite; non-conflicting rules never oppose a task; permutation invariance;
  homogeneity under a common positive scale."""
  non_conflicting, permutation, degree = MULTITASK[name]
  rng = np.random.default_rng(seed)
  jac = rng.normal(size=(k, d))
  if not conflicting:
    jac = np.abs(jac)
  if degenerate and d > 1:
    _make_degenerate(jac)
  jac = jnp.asarray(scale * jac, jnp.float32)
  out = _multitask(name, jac, scale)
  assert np.all(np.isfinite(out)), out
  jac64 = np.asarray(jac, np.float64)
  norm_j = np.linalg.norm(jac64)
  # Float32 solvers leave a residual of ~1e-4 of the input's scale where the
  # exact answer is 0 (e.g. exactly opposite tasks): tolerances carry a
  # floor of 1e-3 * ||J|| on the output (1e-3 for scale-free Nash-MTL).
  floor = 1e-3 * norm_j
  # Nash-MTL's bargaining problem needs a direction that helps every task:
  # with fewer coordinates than tasks (d < K) and conflicts there may be
  # none, and the ridge on its Gramian then picks a conflicting step.
  if non_conflicting and not (name == 'nash_mtl' and d < k):
    atol = norm_j * (2e-4 * np.linalg.norm(out) + floor)
    helpers.assert_non_conflicting(jac64, out, atol)
  if not conflicting and name in ('upgrad', 'dualproj', 'mgda'):
    # No conflict: every task already agrees with the mean direction.
    assert np.min(jac64 @ out) > 0
  tol = 3e-3 * np.linalg.norm(out) + (floor if degree else 1e-3)

  def aggregate(j):  # the rule's norm_eps follows the input's scale
    return _multitask(name, j, scale * float(jnp.linalg.norm(j)) / norm_j)

  # ConFIG normalises the rows and solves J u = 1: with d = 1 two opposite
  # rows give u = 0 exactly and the direction is float32 noise (0 / 0), for
  # the permuted and the scaled input alike.
  noise = name == 'config' and d == 1
  if permutation and not noise:
    perm = rng.permutation(k)
    helpers.assert_permutation_invariant(aggregate, jac, perm, atol=tol)
  if not noise:
    c = 7.0
    helpers.assert_homogeneous(aggregate, jac, c, degree, atol=c**degree * tol)
