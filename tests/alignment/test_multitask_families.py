"""Multi-task aggregators over named input families, float32 and float64.

The families (``tests/alignment/matrices.py``) follow TorchJD's test inputs:
random Jacobians of every rank, strongly and strictly weakly stationary ones (a
non-negative combination of the tasks cancels) and non-weakly-stationary ones,
at scales from 1e-10 to 1e10. Each rule is checked for the properties its
docstring claims (one assert per property), plus regression tests for the
defects found by running TorchJD's own suite against ours.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from optax_ext import alignment
from optax_ext._src import linalg
from optax_ext.alignment import _cagrad
from tests import helpers
from tests.alignment import matrices

# name -> (factory kwargs-bound, non-conflicting, linear under scaling,
#          permutation-invariant, degree of positive homogeneity)
RULES = {
  'upgrad': (
    functools.partial(
      alignment.aggregate_by_upgrad, norm_eps=0.0, reg_eps=1e-8
    ),
    True,
    True,
    True,
    1,
  ),
  'dualproj': (
    functools.partial(
      alignment.aggregate_by_dualproj, norm_eps=0.0, reg_eps=1e-8
    ),
    True,
    False,
    True,
    1,
  ),
  'mgda': (
    functools.partial(alignment.aggregate_by_mgda, solver='active_set'),
    True,
    False,
    True,
    1,
  ),
  'nash_mtl': (
    functools.partial(alignment.aggregate_by_nash_mtl, max_norm=0.0),
    True,
    False,
    True,
    0,
  ),
  'pcgrad': (
    functools.partial(alignment.aggregate_by_pcgrad, key=None),
    False,
    True,
    False,
    1,
  ),
  'cagrad': (alignment.aggregate_by_cagrad, False, False, True, 1),
  'aligned_mtl': (alignment.aggregate_by_aligned_mtl, False, False, True, 1),
  'imtl_g': (alignment.aggregate_by_imtl_g, False, False, True, 1),
  'config': (alignment.aggregate_by_config, False, True, True, 1),
  'mean': (
    functools.partial(
      alignment.aggregate_by_weighting, alignment.mean_weighting
    ),
    False,
    True,
    True,
    1,
  ),
}

DTYPES = {'float32': jnp.float32, 'float64': jnp.float64}
# Tolerances relative to the matrix's norm (TorchJD's asserts use 1e-4 on
# matrices of norm ~1; float64 solves are held to a tighter standard).
TOL = {'float32': 1e-4, 'float64': 1e-5}
# Nash-MTL's 1e-6 ridge (its Newton system is singular at stationary
# points) bounds its accuracy whatever the dtype.
RIDGE_TOL = {'nash_mtl': 2e-3}
FAMILY = matrices.family(0)
SCALED = matrices.scaled(1)


@functools.cache
def _step(name):
  tx = RULES[name][0]()
  return jax.jit(lambda jac: tx.update(jac, tx.init(jac[0]))[0])


def _aggregate(name, jac, dtype):
  with jax.enable_x64(dtype == 'float64'):
    out = _step(name)(jnp.asarray(jac, DTYPES[dtype]))
    assert out.dtype == DTYPES[dtype]
    return np.asarray(out, np.float64)


def _non_conflicting(jac, out, tol, degree=1):
  """No task's projection ``<g_i, u>`` is negative beyond rounding.

  Rounding is relative to ``|J| |u|`` for the scale a rule's output has at
  this ``J`` (``|J|^degree``; at a stationary point ``u`` is ~0 and ``J u``
  is rounding noise of that size).
  """
  norm = np.linalg.norm(jac)
  scale = norm * max(np.linalg.norm(out), norm**degree)
  helpers.assert_non_conflicting(jac, out, tol * scale)


@pytest.mark.parametrize('dtype', sorted(DTYPES))
@pytest.mark.parametrize('name', sorted(RULES))
def test_claimed_properties_over_the_families(name, dtype):
  _, non_conflicting, linear, permutation, degree = RULES[name]
  rng = np.random.default_rng(0)
  # f32 rounding in a K x K solve grows with the Gramian's conditioning.
  loose = 20 * TOL[dtype] if dtype == 'float32' else TOL[dtype]
  loose = max(loose, RIDGE_TOL.get(name, 0.0))

  def aggregate(jac):
    return _aggregate(name, jac, dtype)

  for case, jac in FAMILY:
    out = aggregate(jac)
    tol = {'rtol': loose, 'atol': loose * np.linalg.norm(jac)}
    assert np.all(np.isfinite(out)), (case, out)
    assert out.shape == jac.shape[1:]
    if non_conflicting:
      _non_conflicting(jac, out, loose, degree)
    if permutation:
      perm = rng.permutation(jac.shape[0])
      helpers.assert_permutation_invariant(
        aggregate, jac, perm, f'{name} {case}', **tol
      )
    if linear:
      c1, c2 = rng.uniform(0.1, 1, (2, jac.shape[0]))
      helpers.assert_linear_under_scaling(
        aggregate, jac, c1, c2, f'{name} {case}', **tol
      )


@pytest.mark.parametrize('dtype', sorted(DTYPES))
@pytest.mark.parametrize('name', sorted(RULES))
def test_homogeneous_from_1e_minus_10_to_1e10(name, dtype):
  """``A(tJ) = t^d A(J)`` for every scale ``t`` in the scaled family."""
  degree = RULES[name][4]
  unit = {
    case.split('*')[0]: jac
    for case, jac in matrices.scaled(1)
    if case.endswith('*1')
  }
  tol = 50 * TOL[dtype]
  for case, jac in SCALED:
    base, scale = case.split('*')
    t = float(scale)
    ref = _aggregate(name, unit[base], dtype)
    out = _aggregate(name, jac, dtype)
    assert np.all(np.isfinite(out)), (case, out)
    np.testing.assert_allclose(
      out / t**degree,
      ref,
      rtol=tol,
      atol=tol * np.linalg.norm(unit[base]) ** degree,
      err_msg=f'{name} {case}',
    )


# Relative rounding the property tests' inputs may carry on another CPU
# (a different BLAS or FMA contraction): a few units in the last place.
ULPS = {'float32': 4 * 2.0**-23, 'float64': 4 * 2.0**-52}


@pytest.mark.parametrize('dtype', sorted(DTYPES))
@pytest.mark.parametrize('name', sorted(RULES))
def test_output_does_not_depend_on_input_rounding(name, dtype):
  """Each output moves by no more than the property tests' tolerance when
  every input entry moves by a few ulps, so their verdicts cannot depend on
  the CPU's rounding.

  Regression: ConFIG normalised rounding noise on a rank-1 Jacobian with rows
  of both signs (``normal4x3r1``: ``U^+ p`` is 0), and the linearity test
  failed on another CPU by a factor 1.92.
  """
  degree = RULES[name][4]
  tol = max(50 * TOL[dtype], RIDGE_TOL.get(name, 0.0))
  rng = np.random.default_rng(11)
  for case, jac in FAMILY:
    out = _aggregate(name, jac, dtype)
    for _ in range(2):
      noise = 1 + ULPS[dtype] * rng.standard_normal(jac.shape)
      np.testing.assert_allclose(
        _aggregate(name, jac * noise, dtype),
        out,
        rtol=0,
        atol=tol * np.linalg.norm(jac) ** degree,
        err_msg=f'{name} {case}',
      )


@pytest.mark.parametrize('dtype', sorted(DTYPES))
def test_config_is_zero_where_its_direction_vanishes(dtype):
  """Rank-1 rows of both signs whose unit rows cancel under ``p = 1``:
  ``v = U^+ p = 0``; the update is 0 whatever the rounding (it was
  normalised noise)."""
  x = np.array([0.3, -0.1, 0.5])
  rng = np.random.default_rng(12)
  for signs in ([1, -1], [2, -3, 0.5, -1], [1, 1, -1, -1]):
    jac = np.asarray(signs, np.float64)[:, None] * x
    for _ in range(4):
      noise = 1 + ULPS[dtype] * rng.standard_normal(jac.shape)
      out = _aggregate('config', jac * noise, dtype)
      np.testing.assert_array_equal(out, 0.0, err_msg=str(signs))
  # One sign more on one side: U^+ p = x / |x| (up to scale), the update
  # is the sum of the rows (all are along x).
  jac = np.array([1.0, -2.0, 0.5])[:, None] * x
  np.testing.assert_allclose(
    _aggregate('config', jac, dtype), jac.sum(0), rtol=1e-4, atol=1e-6
  )


def _cagrad_dual_reference(g_hat, c, w_ours):
  """SciPy SLSQP in float64, from the mean and from our solution."""
  k = g_hat.shape[0]
  mean = np.full(k, 1.0 / k)
  b = g_hat @ mean
  sqrt_phi = c * np.sqrt(mean @ g_hat @ mean)

  def f(w):
    return w @ b + sqrt_phi * np.sqrt(max(w @ g_hat @ w, 0.0))

  def grad(w):
    q = max(w @ g_hat @ w, 1e-300)
    return b + sqrt_phi * (g_hat @ w) / np.sqrt(q)

  best = np.inf
  for w0 in (mean, w_ours):
    res = scipy.optimize.minimize(
      f,
      w0,
      jac=grad,
      method='SLSQP',
      bounds=[(0, 1)] * k,
      constraints=[{'type': 'eq', 'fun': lambda w: np.sum(w) - 1}],
      options={'ftol': 1e-15, 'maxiter': 300},
    )
    best = min(best, res.fun)
  return best, f


@pytest.mark.parametrize('dtype', sorted(DTYPES))
def test_cagrad_dual_reaches_the_optimum(dtype):
  """Regression: the BB solver stopped at non-optimal vertices (0.347 where
  SLSQP reaches 3e-9 on a weakly stationary 4 x 3)."""
  solve = jax.jit(_cagrad.cagrad_dual, static_argnums=(2,))
  for case, jac in FAMILY:
    g = jac @ jac.T
    g_hat = g / np.trace(g)
    for c in (0.5, 1.0, 2.0):
      with jax.enable_x64(dtype == 'float64'):
        w = np.asarray(solve(jnp.asarray(g_hat, DTYPES[dtype]), c, 200))
      w = w.astype(np.float64)
      assert np.all(w >= 0) and abs(np.sum(w) - 1) < 1e-5, (case, w)
      best, f = _cagrad_dual_reference(g_hat, c, w)
      # float32: the objective's sqrt(w'Gw) is known to ~1e-5 near 0.
      assert f(w) <= best + TOL[dtype] / 5, (case, c, f(w), best)


@pytest.mark.parametrize('dtype', sorted(DTYPES))
@pytest.mark.parametrize('c', [1.0, 2.0])
def test_cagrad_is_non_conflicting_for_c_at_least_one(c, dtype):
  """At the dual optimum ``min_i <g_i, u> = f(w*) >= (c - 1)|g0||g_w| >= 0``
  (Cauchy-Schwarz); where the correction degenerates the update is 0.

  TorchJD's criterion, ``|(J u)_+| = |J u|`` within 4e-4, on every family
  (stationary ones included). Regression: the degenerate case returned the
  mean, which conflicts (14 of TorchJD's cases in float32, 12 in float64).
  """
  tx = alignment.aggregate_by_cagrad(c=c)
  step = jax.jit(lambda jac: tx.update(jac, tx.init(jac[0]))[0])
  degenerate = 0
  for case, jac in FAMILY:
    with jax.enable_x64(dtype == 'float64'):
      out = np.asarray(step(jnp.asarray(jac, DTYPES[dtype])), np.float64)
    proj = jac @ out
    total = np.linalg.norm(proj)
    positive = np.linalg.norm(proj[proj >= 0])
    tol = 4e-4 * np.linalg.norm(jac) * (1 + np.linalg.norm(jac))
    assert abs(positive - total) <= tol + 4e-4 * total, (case, proj)
    degenerate += int(np.all(out == 0))
  # Both branches ran: the strongly stationary families degenerate.
  assert 0 < degenerate < len(FAMILY), degenerate


def test_cagrad_is_finite_where_the_quadratic_form_rounds_negative():
  """Regression: ``sqrt(w'Gw + 1e-20)`` was NaN on these (float32)."""
  rng = np.random.default_rng(3)
  cases = [
    (0.5, matrices.weak(20, 10, 5, rng)),
    (2.0, matrices.strong(20, 10, 1, rng)),
    (2.0, matrices.strong(20, 10, 10 - 1, rng)),
    (2.0, matrices.normal(4, 3, 1, rng)),
  ]
  for c, jac in cases:
    tx = alignment.aggregate_by_cagrad(c=c)
    out = tx.update(
      jnp.asarray(jac, jnp.float32), tx.init(jnp.zeros(jac.shape[1]))
    )[0]
    assert np.all(np.isfinite(np.asarray(out))), (c, out)


def test_pcgrad_is_scale_equivariant():
  """Regression: an absolute ``eps`` skipped tasks of norm < 1e-6."""
  jac = matrices.normal(4, 3, 2, np.random.default_rng(5))
  for t in (1e-10, 1e-5, 1e5):
    np.testing.assert_allclose(
      _aggregate('pcgrad', t * jac, 'float32') / t,
      _aggregate('pcgrad', jac, 'float32'),
      rtol=1e-4,
      atol=1e-5 * np.linalg.norm(jac),
    )


def test_nash_mtl_is_not_zeroed_at_small_scales():
  """Regression: ``norm_eps`` on the raw trace zeroed ``0.001 J``."""
  jac = matrices.normal(4, 3, 3, np.random.default_rng(6))
  ref = _aggregate('nash_mtl', jac, 'float32')
  for t in (1e-3, 1e-8):
    out = _aggregate('nash_mtl', t * jac, 'float32')
    assert np.linalg.norm(out) > 0.1 * np.linalg.norm(ref)
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-4)
  assert np.all(_aggregate('nash_mtl', 0 * jac, 'float32') == 0)


def test_config_accuracy_on_rank_deficient_input_is_as_documented():
  """ConFIG through the Gramian: float32 error ~ cond(U)^2 eps (documented
  bound 5e-4 of the output's norm on 4 x 3 rank 3); float64 to 1e-9."""
  rng = np.random.default_rng(7)
  worst = {'float32': 0.0, 'float64': 0.0}
  for _ in range(40):
    jac = matrices.normal(4, 3, 3, rng)
    unit = jac / np.linalg.norm(jac, axis=1, keepdims=True)
    v = np.linalg.pinv(unit) @ np.ones(4)
    v /= np.linalg.norm(v)
    exact = np.sum(jac @ v) * v
    for dtype in worst:
      out = _aggregate('config', jac, dtype)
      perm = rng.permutation(4)
      for got in (out, _aggregate('config', jac[perm], dtype)):
        err = np.max(np.abs(got - exact)) / np.linalg.norm(exact)
        worst[dtype] = max(worst[dtype], err)
  assert worst['float32'] < 5e-4, worst
  assert worst['float64'] < 1e-9, worst


@pytest.mark.parametrize('name', ['mgda', 'upgrad'])
def test_float64_populations_are_solved_in_float64(name):
  """Regression: float64 inputs got float32 weights (MGDA summed to 1
  within 7e-7, UPGrad permutation invariance held to 1.2e-6)."""
  rng = np.random.default_rng(8)
  mgda = jax.jit(
    functools.partial(alignment.mgda_weighting, solver='active_set')
  )
  upgrad = jax.jit(functools.partial(alignment.upgrad_weighting, reg_eps=0.0))
  with jax.enable_x64(True):
    for _ in range(5):
      jac = matrices.normal(6, 10, 5, rng)
      g = jnp.asarray(jac @ jac.T, jnp.float64)
      if name == 'mgda':
        w = mgda(g)
        assert w.dtype == jnp.float64
        assert abs(float(jnp.sum(w)) - 1) < 1e-12
      else:
        w = upgrad(g)
        perm = rng.permutation(6)
        w_perm = upgrad(g[perm][:, perm])
        assert w.dtype == jnp.float64
        np.testing.assert_allclose(w_perm, w[perm], rtol=1e-10, atol=1e-12)
  with jax.enable_x64(True):
    assert linalg.solve_dtype(jnp.float64) == jnp.float64
  assert linalg.solve_dtype(jnp.bfloat16) == jnp.float32
