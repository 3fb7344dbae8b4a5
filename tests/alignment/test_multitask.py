"""Multi-task aggregators: golden values, TorchJD's properties, degenerate
input, population paths, solvers, and TorchJD itself when installed."""

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
import pytest

import optax_ext
from optax_ext import alignment
from optax_ext._src import linalg
from tests import helpers
from tests import registry

J = jnp.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
G = J @ J.T

# TorchJD 0.18's weights and outputs on J (README example of TorchJD),
# recomputed in float64 and rounded to 4 decimals.
GOLDEN = {
  'upgrad': ([1.1109, 0.7894], [0.2929, 1.9004, 1.9004]),
  'dualproj': ([0.6109, 0.5], [0.5563, 1.1109, 1.1109]),
  'mgda': ([0.6, 0.4], [0.0, 1.0, 1.0]),
  'pcgrad': ([2.2222, 1.5789], [0.5848, 3.8012, 3.8012]),
  'cagrad': ([0.7041, 0.5], [0.1835, 1.2041, 1.2041]),
  'aligned_mtl': ([0.5591, 0.4083], [0.2133, 0.9673, 0.9673]),
  'imtl_g': ([0.5923, 0.4077], [0.0767, 1.0, 1.0]),
  'config': ([1.2265, 0.8441], [0.1588, 2.0706, 2.0706]),
  'nash_mtl': ([0.5915, 0.4071], [0.0766, 0.9985, 0.9985]),
  'mean': ([0.5, 0.5], [1.0, 1.0, 1.0]),
  'sum': ([1.0, 1.0], [2.0, 2.0, 2.0]),
}

WEIGHTINGS = {
  'upgrad': alignment.upgrad_weighting,
  'dualproj': alignment.dualproj_weighting,
  'mgda': alignment.mgda_weighting,
  'pcgrad': alignment.pcgrad_weighting,
  'cagrad': alignment.cagrad_weighting,
  'aligned_mtl': alignment.aligned_mtl_weighting,
  'imtl_g': alignment.imtl_g_weighting,
  'config': alignment.config_weighting,
  'nash_mtl': functools.partial(alignment.nash_mtl_weighting, max_norm=0.0),
  'mean': alignment.mean_weighting,
  'sum': alignment.sum_weighting,
}


# TorchJD's property table for the deterministic rules, from the
# registry: (non-conflicting, linear under scaling, permutation-invariant).
PROPERTIES = {
  name.removeprefix('aggregate_by_'): (
    m.non_conflicting,
    m.linear_under_scaling,
    m.permutation_invariant,
  )
  for name, e in registry.with_property(lambda p: p.multitask).items()
  for m in [e.properties.multitask]
}


@pytest.mark.parametrize('name', sorted(GOLDEN))
def test_golden_weights_and_outputs(name):
  weights, out = GOLDEN[name]
  # The spec's values are rounded to 4 decimals: atol 1e-4 (the issue's).
  np.testing.assert_allclose(WEIGHTINGS[name](G), weights, atol=1e-4)
  np.testing.assert_allclose(helpers.aggregate_tasks(name, J), out, atol=1e-4)


def _random_jacobian(seed, k, d=20, conflicting=True):
  rng = np.random.default_rng(seed)
  jac = rng.normal(size=(k, d))
  if not conflicting:
    jac = np.abs(jac)
  return jnp.asarray(jac, jnp.float32)


@pytest.mark.parametrize('k', [2, 3, 5, 10])
@pytest.mark.parametrize('name', sorted(PROPERTIES))
def test_properties(name, k):
  non_conflicting, linear, permutation = PROPERTIES[name]
  kwargs = {'reg_eps': 1e-8} if name in ('upgrad', 'dualproj') else {}
  for seed in range(3):
    jac = _random_jacobian(seed + 10 * k, k)
    out = helpers.aggregate_tasks(name, jac, **kwargs)
    assert bool(jnp.all(jnp.isfinite(out)))
    scale = float(jnp.linalg.norm(jac) * jnp.linalg.norm(out))

    def aggregate(j):
      return helpers.aggregate_tasks(name, j, **kwargs)

    if non_conflicting:
      helpers.assert_non_conflicting(jac, out, 1e-4 * scale, context=name)
    if linear:  # A(diag(c) J) is linear in c > 0
      c1 = jnp.asarray(np.random.default_rng(seed).uniform(0.5, 2, k))
      c2 = jnp.asarray(np.random.default_rng(seed + 1).uniform(0.5, 2, k))
      helpers.assert_linear_under_scaling(
        aggregate, jac, c1, c2, rtol=1e-3, atol=1e-4 * scale
      )
    perm = np.random.default_rng(seed).permutation(k)
    if permutation:
      helpers.assert_permutation_invariant(
        aggregate, jac, perm, rtol=2e-3, atol=1e-4
      )


def _pcgrad_reference(jac, order=None, project_on_original=False):
  """Yu et al. (2020), Algorithm 1, in float64 NumPy: every task gradient
  is projected in turn off each other task it conflicts with, the test
  using the *running* projection; the results are summed.
  ``project_on_original`` is the planted bug (test with ``g_i``)."""
  jac = np.asarray(jac, np.float64)
  k = jac.shape[0]
  out = np.zeros(jac.shape[1])
  for i in range(k):
    g_pc = jac[i].copy()
    for j in order if order is not None else range(k):
      if j == i:
        continue
      probe = jac[i] if project_on_original else g_pc
      inner = probe @ jac[j]
      if inner < 0:
        g_pc -= inner / (jac[j] @ jac[j]) * jac[j]
    out += g_pc
  return out


# Chained conflicts: after task 0 is projected off task 1 it conflicts with
# task 2, which it did not before (so the running projection matters).
CHAINED = np.array(
  [[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.1, -1.0, 1.0], [-0.3, 0.2, -1.0]]
)


@pytest.mark.parametrize('k', [3, 4])
def test_pcgrad_golden_values_with_chained_conflicts(k):
  jac = CHAINED[:k]
  ref = _pcgrad_reference(jac)
  planted = _pcgrad_reference(jac, project_on_original=True)
  # The inputs distinguish the algorithm from the planted bug.
  assert np.max(np.abs(ref - planted)) > 0.1
  np.testing.assert_allclose(
    helpers.aggregate_tasks('pcgrad', jnp.asarray(jac, jnp.float32)),
    ref,
    rtol=1e-5,
    atol=1e-6,
  )
  for seed in range(3):
    jac = _random_jacobian(seed, 5, d=4)
    np.testing.assert_allclose(
      helpers.aggregate_tasks('pcgrad', jac),
      _pcgrad_reference(jac),
      rtol=1e-4,
      atol=1e-5,
    )


def test_pcgrad_fixed_order_is_not_permutation_invariant_keyed_is_random():
  jac = jnp.asarray(CHAINED[:3], jnp.float32)
  for perm in ((2, 1, 0), (1, 0, 2)):
    permuted = jac[np.array(perm)]
    expected = _pcgrad_reference(permuted)
    # The reference itself depends on the order, by far more than rounding.
    assert np.max(np.abs(expected - _pcgrad_reference(jac))) > 0.05
    np.testing.assert_allclose(
      helpers.aggregate_tasks('pcgrad', permuted),
      expected,
      rtol=1e-5,
      atol=1e-6,
    )
  jac = _random_jacobian(0, 3)
  tx = alignment.aggregate_by_pcgrad(key=0)
  state = tx.init(jnp.zeros(20))
  a, state = tx.update(jac, state)
  b, state = tx.update(jac, state)
  tx2 = alignment.aggregate_by_pcgrad(key=0)
  a2, _ = tx2.update(jac, tx2.init(jnp.zeros(20)))
  np.testing.assert_array_equal(a, a2)  # reproducible from the key
  assert np.isfinite(np.asarray(b)).all()


@pytest.mark.parametrize('name', sorted(helpers.MULTITASK_AGGREGATORS))
def test_degenerate_input_is_finite(name):
  cases = {
    'zero': jnp.zeros((3, 4)),
    'zero row': jnp.array([[1.0, 2.0, 0, 0], [0, 0, 0, 0], [-1.0, 0.5, 1, 0]]),
    'duplicated': jnp.array([[1.0, -2, 3, 0], [1.0, -2, 3, 0], [0, 1, 0, 1]]),
    'rank deficient': jnp.array(
      [[1.0, 1, 0, 0], [2.0, 2, 0, 0], [-1, -1, 0, 0]]
    ),
    'one task': jnp.array([[1.0, -2.0, 3.0, 0.5]]),
  }
  for case, jac in cases.items():
    for scale in (1e-10, 1.0, 1e10):
      out = helpers.aggregate_tasks(name, scale * jac)
      assert bool(jnp.all(jnp.isfinite(out))), (name, case, scale, out)
  assert bool(jnp.all(helpers.aggregate_tasks(name, jnp.zeros((3, 4))) == 0))


@pytest.mark.parametrize(
  ('name', 'factor'),
  [
    ('upgrad', 1.0),
    ('dualproj', 1.0),
    ('mgda', 1.0),
    ('mean', 1.0),
    ('cagrad', 1.5),  # (1 + c) g without rescaling
    ('aligned_mtl', 1.0),
    ('imtl_g', 1.0),
    ('config', 1.0),
    ('pcgrad', 1.0),
  ],
)
def test_one_task_returns_its_gradient(name, factor):
  g = jnp.array([[1.0, -2.0, 3.0, 0.5]])
  np.testing.assert_allclose(
    helpers.aggregate_tasks(name, g), factor * g[0], rtol=2e-3
  )


@pytest.mark.parametrize('name', sorted(helpers.MULTITASK_AGGREGATORS))
def test_population_paths_agree(name, mesh):
  jac = _random_jacobian(7, 8, d=6)
  ref = helpers.aggregate_tasks(name, jac)
  named = optax_ext.PopulationAxes(axis=None, axis_name='tasks')
  tx = helpers.MULTITASK_AGGREGATORS[name](axes=named)
  out = jax.vmap(
    lambda g: tx.update(g, tx.init(jnp.zeros(6)))[0], axis_name='tasks'
  )(jac)
  np.testing.assert_allclose(out[0], ref, rtol=1e-4, atol=1e-5)
  on_devices = optax_ext.PopulationAxes(axis=None, axis_name='data')
  tx = helpers.MULTITASK_AGGREGATORS[name](axes=on_devices)
  shard = jax.jit(
    jax.shard_map(
      lambda g: tx.update(g[0], tx.init(jnp.zeros(6)))[0],
      mesh=mesh,
      in_specs=P('data'),
      out_specs=P(),
    )
  )(jac)
  np.testing.assert_allclose(shard, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('name', sorted(helpers.MULTITASK_AGGREGATORS))
def test_no_host_callbacks_and_no_retrace(name):
  tx = helpers.MULTITASK_AGGREGATORS[name]()
  jaxpr = str(jax.make_jaxpr(lambda g: tx.update(g, tx.init(jnp.zeros(3))))(J))
  assert 'callback' not in jaxpr
  traces = []

  @jax.jit
  def step(g, s):
    traces.append(None)
    return tx.update(g, s)

  state = tx.init(jnp.zeros(3))
  for i in range(3):
    _, state = step(J * (i + 1.0), state)
  assert len(traces) == 1


def test_weights_are_readable_from_the_state():
  tx = optax.chain(
    alignment.aggregate_by_weighting(alignment.upgrad_weighting, num_tasks=2),
    optax.sgd(0.1),
  )
  state = tx.init(jnp.zeros(3))
  _, state = tx.update(J, state, jnp.zeros(3))
  np.testing.assert_allclose(
    optax.tree.get(state, 'weights'), GOLDEN['upgrad'][0], atol=1e-3
  )
  with pytest.raises(ValueError, match='K=2 members but `num_tasks` is 3'):
    bad = alignment.aggregate_by_weighting(
      alignment.mean_weighting, num_tasks=3
    )
    bad.update(J, bad.init(jnp.zeros(3)))


def test_box_qp_satisfies_kkt_on_near_collinear_gramians():
  rng = np.random.default_rng(0)
  for k in (3, 10, 30, 50):
    base = rng.normal(size=(1, 8))
    jac = base + 1e-3 * rng.normal(size=(k, 8))
    g = linalg.normalised_gramian(
      jnp.asarray(jac @ jac.T, jnp.float32), 0, 1e-4
    )
    u = jnp.asarray(rng.uniform(size=k), jnp.float32)
    v = linalg.box_qp(g, u)
    grad = g @ v
    assert float(jnp.min(v - u)) >= -1e-6
    assert float(jnp.min(grad)) >= -1e-5
    assert float(jnp.max(jnp.abs(grad * (v - u)))) <= 1e-5


@pytest.mark.parametrize('reg', [1e-4, 1e-7])
@pytest.mark.parametrize('k', [2, 9, 40])
def test_box_qp_batch_equals_one_problem_at_a_time(k, reg):
  """The batched solver (bordered inverses, UPGrad's K projections) gives
  each problem's factorised solution; on a rank-deficient Gramian with a
  1e-7 ridge (ill-conditioned in float32) it still meets the KKT
  conditions (its fallback)."""
  rng = np.random.default_rng(k)
  jac = rng.normal(size=(k, max(k // 2, 1) + 1))
  jac[: k // 2] *= -1  # conflicting rows: many active bounds
  g = linalg.normalised_gramian(jnp.asarray(jac @ jac.T, jnp.float32), 0, reg)
  lowers = jnp.asarray(
    rng.uniform(-1, 1, size=(k, k)) * (rng.uniform(size=(k, k)) < 0.4),
    jnp.float32,
  )
  batch = jax.jit(linalg.box_qp)(g, lowers)
  grad = batch @ g
  assert float(jnp.min(batch - lowers)) >= 0.0
  assert float(jnp.min(grad)) >= -2e-5
  assert float(jnp.max(jnp.abs(grad * (batch - lowers)))) <= 2e-5
  one_by_one = jax.jit(jax.vmap(lambda u: linalg.box_qp(g, u)))(lowers)
  # The objective (what the problem determines; the minimiser itself only
  # to the Gramian's conditioning in float32).
  objective = lambda v: jnp.sum((v @ g) * v, axis=1)
  np.testing.assert_allclose(
    objective(batch), objective(one_by_one), rtol=1e-4, atol=1e-7
  )
  if reg == 1e-4:
    np.testing.assert_allclose(batch, one_by_one, rtol=1e-3, atol=1e-4)


def test_mgda_active_set_reaches_a_lower_objective_than_frank_wolfe():
  for seed in range(5):
    jac = _random_jacobian(seed, 10, d=30)
    g = jac @ jac.T
    fw = alignment.mgda_weighting(g)
    exact = alignment.mgda_weighting(g, solver='active_set')
    np.testing.assert_allclose(jnp.sum(exact), 1.0, rtol=1e-5)
    assert float(jnp.min(exact)) >= 0.0
    assert float(exact @ g @ exact) <= float(fw @ g @ fw) * (1 + 1e-4)


def test_conflict_report():
  report = alignment.conflict_report(J)
  np.testing.assert_allclose(report.cosine[0, 1], -22 / np.sqrt(18 * 38))
  assert int(report.num_conflicts) == 1
  aligned = alignment.conflict_report(jnp.abs(_random_jacobian(0, 4)))
  assert int(aligned.num_conflicts) == 0
  assert float(aligned.min_cosine) > 0


@pytest.mark.parametrize(
  ('factory', 'kwargs', 'exc', 'match'),
  [
    (alignment.aggregate_by_upgrad, {'reg_eps': 0.0}, ValueError, '`reg_eps`'),
    (alignment.aggregate_by_upgrad, {'norm_eps': -1.0}, ValueError, 'norm_eps'),
    (alignment.aggregate_by_mgda, {'solver': 'qp'}, ValueError, '`solver`'),
    (alignment.aggregate_by_mgda, {'max_iters': 0}, ValueError, 'max_iters'),
    (alignment.aggregate_by_pcgrad, {'reduction': 'x'}, ValueError, 'reduct'),
    (alignment.aggregate_by_pcgrad, {'key': 'a'}, TypeError, '`key`'),
    (alignment.aggregate_by_cagrad, {'c': -0.5}, ValueError, '`c` must be'),
    (alignment.aggregate_by_cagrad, {'rescale': 3}, ValueError, 'rescale'),
    (alignment.aggregate_by_aligned_mtl, {'scale_mode': 'x'}, ValueError, 'sc'),
    (alignment.aggregate_by_nash_mtl, {'max_norm': -1.0}, ValueError, 'max_n'),
    (alignment.aggregate_by_nash_mtl, {'num_iters': 0}, ValueError, 'num_it'),
    (alignment.aggregate_by_weighting, {'weighting': 3}, TypeError, 'callable'),
    (
      alignment.aggregate_by_constant,
      {'weights': jnp.ones((2, 2))},
      ValueError,
      '1-D',
    ),
  ],
)
def test_bad_hyperparameters_raise(factory, kwargs, exc, match):
  with pytest.raises(exc, match=match):
    factory(**kwargs)


@pytest.mark.parametrize(
  'factory',
  [
    alignment.aggregate_by_upgrad,
    alignment.aggregate_by_dualproj,
    alignment.aggregate_by_aligned_mtl,
    alignment.aggregate_by_config,
  ],
)
@pytest.mark.parametrize(
  'preferences',
  [[1.0, -1.0], [float('nan'), 1.0], [0.0, 0.0], [1.0, float('inf')], []],
  ids=['negative', 'nan', 'zeros', 'inf', 'empty'],
)
def test_bad_preferences_raise(factory, preferences):
  """Regression: ``preferences=[1, -1]`` gave [1, 0, 0] and ``[nan, 1]`` a
  NaN update, silently."""
  with pytest.raises(ValueError, match=r'`preferences` must be .*>= 0'):
    factory(preferences=preferences)


def test_population_shape_errors():
  tx = alignment.aggregate_by_upgrad()
  with pytest.raises(ValueError, match='population leaf'):
    tx.update(J, tx.init(jnp.zeros(4)), jnp.zeros(4))
  with pytest.raises(ValueError, match=r'`preferences` must have shape \(2,\)'):
    alignment.upgrad_weighting(G, preferences=jnp.ones(3))
  with pytest.raises(ValueError, match=r'shape \(2,\), got \(3,\)'):
    alignment.constant_weighting(G, jnp.ones(3))


# TorchJD itself, when installed (the `compare` extra).


def _torchjd(name):
  torch = pytest.importorskip('torch')
  tjd = pytest.importorskip('torchjd.aggregation')
  makers = {
    'upgrad': tjd.UPGrad,
    'dualproj': tjd.DualProj,
    'mgda': tjd.MGDA,
    'aligned_mtl': tjd.AlignedMTL,
    'imtl_g': tjd.IMTLG,
    'config': tjd.ConFIG,
    'mean': tjd.Mean,
    'sum': tjd.Sum,
    'cagrad': lambda: tjd.CAGrad(c=0.5),
  }
  try:
    agg = makers[name]()
  except (ImportError, ModuleNotFoundError) as e:  # cvxpy-backed rules
    pytest.skip(f'torchjd {name} needs an optional dependency: {e}')
  return torch, agg


@pytest.mark.parametrize(
  'name',
  [
    'upgrad',
    'dualproj',
    'mgda',
    'aligned_mtl',
    'imtl_g',
    'config',
    'mean',
    'sum',
    'cagrad',
  ],
)
def test_matches_torchjd_on_random_jacobians(name):
  torch, agg = _torchjd(name)
  for seed, (k, d) in enumerate([(2, 3), (5, 20), (5, 7)]):
    jac = np.random.default_rng(seed).normal(size=(k, d))
    try:
      want = agg(torch.tensor(jac, dtype=torch.float64)).numpy()
    except (ImportError, ModuleNotFoundError) as e:
      pytest.skip(f'torchjd {name} needs an optional dependency: {e}')
    got = helpers.aggregate_tasks(name, jnp.asarray(jac, jnp.float32))
    tol = 2e-3 if name == 'mgda' else 1e-3
    np.testing.assert_allclose(
      got, want, rtol=tol, atol=tol * np.linalg.norm(want)
    )
  if name == 'upgrad':  # the fixed example, to 1e-4
    want = agg(torch.tensor(np.asarray(J), dtype=torch.float64)).numpy()
    np.testing.assert_allclose(
      helpers.aggregate_tasks(name, J), want, atol=1e-4
    )


def _vector_loss(params, x):
  """Three task losses of a tiny two-layer model."""
  h = jnp.tanh(x @ params['w1'])
  out = h @ params['w2']
  return jnp.stack(
    [
      jnp.mean((out[:, 0] - 1.0) ** 2),
      jnp.mean(out[:, 1] ** 2),
      jnp.mean((out[:, 0] + out[:, 1]) ** 2),
    ]
  )


def _tiny():
  rng = np.random.default_rng(0)
  params = {
    'w1': jnp.asarray(rng.normal(size=(4, 5)), jnp.float32),
    'w2': jnp.asarray(rng.normal(size=(5, 2)), jnp.float32),
  }
  return params, jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)


def test_task_jacobian_and_lean_gramian_agree():
  params, x = _tiny()
  losses, jac = alignment.task_jacobian(_vector_loss)(params, x)
  assert jac['w1'].shape == (3, 4, 5)
  np.testing.assert_allclose(losses, _vector_loss(params, x), rtol=1e-6)
  losses2, gram = jax.jit(alignment.task_gramian(_vector_loss))(params, x)
  np.testing.assert_allclose(losses2, losses, rtol=1e-6)
  np.testing.assert_allclose(
    gram, optax_ext.population.gramian(jac), rtol=1e-4, atol=1e-6
  )
  (_, aux), _ = alignment.task_jacobian(
    lambda p, x: (_vector_loss(p, x), {'n': x.shape[0]}), has_aux=True
  )(params, x)
  assert aux == {'n': 6}


@pytest.mark.parametrize('weighting', ['upgrad', 'mgda', 'imtl_g'])
def test_gramian_weighted_grad_equals_the_jacobian_path(weighting):
  params, x = _tiny()
  fn = WEIGHTINGS[weighting]
  _, update, w = jax.jit(alignment.gramian_weighted_grad(_vector_loss, fn))(
    params, x
  )
  _, jac = alignment.task_jacobian(_vector_loss)(params, x)
  tx = alignment.aggregate_by_weighting(fn, num_tasks=3)
  want, state = tx.update(jac, tx.init(params), params)
  np.testing.assert_allclose(w, state.weights, rtol=1e-3, atol=1e-5)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5),
    update,
    want,
  )


def test_graddrop_keeps_consistent_signs_and_matches_purity_in_frequency():
  tx = alignment.aggregate_by_graddrop(key=0)
  agree = jnp.array([[1.0, -2.0], [3.0, -1.0]])
  out, _ = tx.update(agree, tx.init(jnp.zeros(2)))
  np.testing.assert_allclose(out, [4.0, -3.0])
  # Column purity P = (1 + (6 - 2) / (6 + 2)) / 2 = 0.75: the positive entry
  # survives with probability 0.75, the negative one with 0.25.
  jac = jnp.tile(jnp.array([[6.0], [-2.0]]), (1, 4000))
  out, _ = tx.update(jac, tx.init(jnp.zeros(4000)))
  kept_positive = np.mean(np.asarray(out) > 0)
  np.testing.assert_allclose(kept_positive, 0.75, atol=0.03)
  values = set(np.round(np.asarray(out), 4).tolist())
  assert values <= {6.0, -2.0}


def test_graddrop_leak_state_and_paths(mesh):
  jac = _random_jacobian(3, 8, d=6)
  leak = jnp.ones(8)  # leak 1: plain sum
  tx = alignment.aggregate_by_graddrop(key=1, leak=leak)
  out, state = tx.update(jac, tx.init(jnp.zeros(6)))
  np.testing.assert_allclose(out, jnp.sum(jac, 0), rtol=1e-5)
  assert int(state.count) == 1
  stacked = alignment.aggregate_by_graddrop(key=5)
  ref, _ = stacked.update(jac, stacked.init(jnp.zeros(6)))
  on_devices = optax_ext.PopulationAxes(axis=None, axis_name='data')
  named = alignment.aggregate_by_graddrop(key=5, axes=on_devices)
  shard = jax.jit(
    jax.shard_map(
      lambda g: named.update(g[0], named.init(jnp.zeros(6)))[0],
      mesh=mesh,
      in_specs=P('data'),
      out_specs=P(),
    )
  )(jac)
  np.testing.assert_allclose(shard, ref, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match=r'`leak` must have shape \(8,\)'):
    bad = alignment.aggregate_by_graddrop(leak=jnp.ones(3))
    bad.update(jac, bad.init(jnp.zeros(6)))


def test_gradvac_first_step_is_pcgrad_and_targets_track_cosines():
  jac = _random_jacobian(4, 4)
  tx = alignment.aggregate_by_gradvac(num_tasks=4, key=None)
  out, state = tx.update(jac, tx.init(jnp.zeros(20)))
  np.testing.assert_allclose(
    out, helpers.aggregate_tasks('pcgrad', jac), rtol=1e-5
  )
  assert int(state.count) == 1
  assert float(jnp.max(jnp.abs(jnp.diag(state.phi_hat)))) == 0.0
  # A second step with the same gradients moves towards the targets.
  out2, state2 = tx.update(jac, state)
  assert bool(jnp.all(jnp.isfinite(out2)))
  with pytest.raises(ValueError, match='K=4 members but `num_tasks` is 3'):
    bad = alignment.aggregate_by_gradvac(num_tasks=3)
    bad.update(jac, bad.init(jnp.zeros(20)))


def test_gradvac_matches_torchjd_with_two_tasks_over_steps():
  torch = pytest.importorskip('torch')
  tjd = pytest.importorskip('torchjd.aggregation')
  ref = tjd.GradVac(beta=0.3)
  tx = alignment.aggregate_by_gradvac(num_tasks=2, beta=0.3)
  state = tx.init(jnp.zeros(7))
  for seed in range(5):
    jac = np.random.default_rng(seed).normal(size=(2, 7))
    want = ref(torch.tensor(jac, dtype=torch.float64)).numpy()
    got, state = tx.update(jnp.asarray(jac, jnp.float32), state)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
