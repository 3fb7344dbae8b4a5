"""Population maths: stacked, vmap(axis_name) and shard_map paths agree.

Tolerances: the three paths add the same float32 numbers in different orders
(local sums, then a cross-device psum), so results agree to a few ulps:
``rtol=2e-6, atol=1e-6`` for sums/means/combines, and ``rtol=1e-5`` for the
variance (a difference of squares of such sums) and the Gramian (dot products
of length ~20). Order statistics (sort, median, gather) are exact.
"""

import hypothesis
from hypothesis import strategies as st
import jax
from jax import lax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

import optax_ext
from optax_ext import population as pop
from optax_ext._src import numerics

D = 8  # simulated devices; see conftest.py
SHAPES = {'w': (3,), 'b': (2, 4)}

TOL = {'rtol': 2e-6, 'atol': 1e-6}
TOL_SQ = {'rtol': 1e-5, 'atol': 1e-6}


def _population(k, seed=0, dtype=jnp.float32, loc=0.0):
  keys = jax.random.split(jax.random.key(seed), len(SHAPES))
  return {
    name: (loc + jax.random.normal(key, (k, *shape))).astype(dtype)
    for key, (name, shape) in zip(keys, sorted(SHAPES.items()), strict=True)
  }


def _np(tree):
  return jax.tree.map(lambda x: np.asarray(x, dtype=np.float64), tree)


# Functions under test, as f(population, axes) -> tree of arrays. Functions
# whose output is per-member (norms) are gathered to compare all K.
FUNCS = {
  'size': lambda g, a: jnp.asarray(pop.size(g, a)),
  'sum': pop.sum,
  'mean': pop.mean,
  'mean_and_var': lambda g, a: pop.mean_and_var(g, a),
  'mean_and_var_ddof1': lambda g, a: pop.mean_and_var(g, a, ddof=1),
  'norms': lambda g, a: pop.gather(pop.norms(g, a), a),
  'gramian': pop.gramian,
  'combine': lambda g, a: pop.combine(
    g, jnp.linspace(-1.0, 2.0, pop.size(g, a)), a
  ),
  'gather': pop.gather,
  'sort': pop.sort,
  'median': pop.median,
  'unstack': lambda g, a: pop.stack(pop.unstack(g, a)),
}


def _numpy_reference(name, g):
  g = _np(g)
  k = next(iter(g.values())).shape[0]
  flat = np.concatenate([x.reshape(k, -1) for x in g.values()], axis=1)
  if name == 'size':
    return np.asarray(k)
  if name == 'sum':
    return {n: x.sum(0) for n, x in g.items()}
  if name == 'mean':
    return {n: x.mean(0) for n, x in g.items()}
  if name.startswith('mean_and_var'):
    ddof = 1 if name.endswith('ddof1') else 0
    return (
      {n: x.mean(0) for n, x in g.items()},
      {n: x.var(0, ddof=ddof) for n, x in g.items()},
    )
  if name == 'norms':
    return np.linalg.norm(flat, axis=1)
  if name == 'gramian':
    return flat @ flat.T
  if name == 'combine':
    w = np.linspace(-1.0, 2.0, k)
    return {n: np.tensordot(w, x, axes=(0, 0)) for n, x in g.items()}
  if name in ('gather', 'unstack'):
    return g
  if name == 'sort':
    return {n: np.sort(x, 0) for n, x in g.items()}
  if name == 'median':
    return {n: np.median(x, 0) for n, x in g.items()}
  raise KeyError(name)


def _assert_close(got, want, name):
  tol = TOL_SQ if name == 'gramian' or name.startswith('mean_and') else TOL
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(
      np.asarray(a, np.float64), b, **tol
    ),
    got,
    want,
  )


def _shard_map(fn, mesh, in_spec, out_spec=None):
  out_spec = P() if out_spec is None else out_spec
  return jax.jit(
    jax.shard_map(fn, mesh=mesh, in_specs=in_spec, out_specs=out_spec)
  )


@pytest.mark.parametrize('name', sorted(FUNCS))
def test_stacked_matches_numpy(name):
  g = _population(D)
  _assert_close(
    FUNCS[name](g, pop.PopulationAxes()), _numpy_reference(name, g), name
  )


@pytest.mark.parametrize('name', sorted(FUNCS))
def test_vmap_axis_name_matches_stacked(name):
  """One member per index of a vmapped named axis."""
  g = _population(D)
  axes = pop.PopulationAxes(axis=None, axis_name='members')
  out = jax.vmap(lambda m: FUNCS[name](m, axes), axis_name='members')(g)
  # Every index returns the same (replicated) result: check all, keep one.
  first = jax.tree.map(lambda x: x[0], out)
  jax.tree.map(
    lambda x, f: np.testing.assert_array_equal(x, np.broadcast_to(f, x.shape)),
    out,
    first,
  )
  _assert_close(first, FUNCS[name](g, pop.PopulationAxes()), name)


@pytest.mark.parametrize('name', sorted(FUNCS))
def test_shard_map_one_member_per_device(name, mesh):
  g = _population(D)
  axes = pop.PopulationAxes(axis=None, axis_name='data')

  def local(m):
    m = jax.tree.map(lambda x: x[0], m)  # the device's one member
    return FUNCS[name](m, axes)

  out = _shard_map(local, mesh, P('data'))(g)
  _assert_close(out, FUNCS[name](g, pop.PopulationAxes()), name)


@pytest.mark.parametrize('name', sorted(FUNCS))
def test_shard_map_local_stacks(name, mesh):
  """Both at once: 3 members on each of the 8 devices, K = 24."""
  g = _population(3 * D, seed=1)
  axes = pop.PopulationAxes(axis=0, axis_name='data')
  out = _shard_map(lambda m: FUNCS[name](m, axes), mesh, P('data'))(g)
  _assert_close(out, FUNCS[name](g, pop.PopulationAxes()), name)


def test_member_axis_other_than_zero():
  g = _population(5)
  moved = jax.tree.map(lambda x: jnp.moveaxis(x, 0, 1), g)
  axes = pop.PopulationAxes(axis=1)
  for name in ('mean', 'sum', 'gramian', 'median', 'gather'):
    _assert_close(FUNCS[name](moved, axes), FUNCS[name](g, None), name)


def test_norms_are_local_on_named_path(mesh):
  g = _population(D)
  axes = pop.PopulationAxes(axis=None, axis_name='data')
  local = _shard_map(
    lambda m: pop.norms(jax.tree.map(lambda x: x[0], m), axes)[None],
    mesh,
    P('data'),
    P('data'),
  )(g)
  np.testing.assert_allclose(local, pop.norms(g), **TOL)


def test_mean_and_var_is_accurate_far_from_zero():
  """The two-pass/Chan form keeps the variance when |mean| >> std."""
  g = _population(3 * D, seed=2, loc=1e4)
  _, var = pop.mean_and_var(g)
  ref = _numpy_reference('mean_and_var', g)[1]
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3), var, ref
  )


def test_bf16_population_accumulates_in_f32():
  # 1024 members of 1.0 + 2^-9: a bf16 running sum would stall at 256.
  k = 1024
  g = jnp.full((k, 2), 1.0 + 2.0**-7, dtype=jnp.bfloat16)
  s = pop.sum(g)
  m = pop.mean(g)
  assert s.dtype == jnp.bfloat16 and m.dtype == jnp.bfloat16
  np.testing.assert_allclose(
    np.asarray(s, np.float32), np.float32(k * (1.0 + 2.0**-7)), rtol=4e-3
  )
  np.testing.assert_array_equal(np.asarray(m, np.float32), 1.0 + 2.0**-7)
  mean, var = pop.mean_and_var(g)
  assert mean.dtype == jnp.float32 and var.dtype == jnp.float32
  assert pop.gramian(g).dtype == jnp.float32
  assert pop.norms(g).dtype == jnp.float32


def test_median_propagates_nan():
  g = jnp.array([[1.0, 1.0], [jnp.nan, 2.0], [3.0, 3.0]])
  np.testing.assert_array_equal(pop.median(g), [np.nan, 2.0])


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(
  k=st.integers(1, 9),
  values=st.lists(
    st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False, width=32),
    min_size=27,
    max_size=27,
  ),
)
def test_stacked_reductions_property(k, values):
  """mean/median/sort/gramian vs NumPy for arbitrary K and values.

  Subnormals are excluded: XLA on CPU flushes them to zero.
  """
  x = jnp.asarray(np.resize(np.asarray(values, np.float32), (k, 3)))
  ref = np.asarray(x, np.float64)
  np.testing.assert_allclose(pop.mean(x), ref.mean(0), rtol=1e-5, atol=1e-3)
  np.testing.assert_allclose(
    pop.median(x), np.median(ref, 0), rtol=1e-6, atol=1e-6
  )
  np.testing.assert_array_equal(pop.sort(x), np.sort(ref, 0))
  # float32 dot products: error relative to the Gramian's scale, not entry.
  gram = ref @ ref.T
  scale = np.abs(gram).max()
  np.testing.assert_allclose(
    pop.gramian(x), gram, rtol=1e-5, atol=1e-6 * scale + 1e-6
  )


# --- Errors -----------------------------------------------------------------


def test_population_axes_validation():
  with pytest.raises(ValueError, match='at least one of `axis` and'):
    pop.PopulationAxes(axis=None, axis_name=None)
  with pytest.raises(ValueError, match=r'`axis` must be None or an integer'):
    pop.PopulationAxes(axis=-1)
  with pytest.raises(TypeError, match='PopulationAxes'):
    pop.mean(jnp.zeros((2, 3)), 'data')


def test_mismatched_member_counts_show_shapes():
  g = {'a': jnp.zeros((4, 3)), 'b': jnp.zeros((5, 3))}
  with pytest.raises(
    ValueError, match=r"disagree.*leaf \['a'\] has 4, leaf \['b'\] has 5"
  ):
    pop.mean(g)


def test_leaf_without_member_axis():
  with pytest.raises(ValueError, match=r'has shape \(\).*no member axis 0'):
    pop.mean({'a': jnp.zeros(())})


def test_combine_checks_weight_shape():
  with pytest.raises(ValueError, match=r'shape \(4,\).*got shape \(3,\)'):
    pop.combine(jnp.zeros((4, 2)), jnp.ones(3))


def test_variance_needs_more_members_than_ddof():
  with pytest.raises(ValueError, match='K=1 member.*ddof=1'):
    pop.mean_and_var(jnp.zeros((1, 2)), ddof=1)
  with pytest.raises(ValueError, match='`ddof` must be an integer >= 0'):
    pop.mean_and_var(jnp.zeros((2, 2)), ddof=-1)


def test_stack_empty():
  with pytest.raises(ValueError, match='non-empty'):
    pop.stack([])


# --- grad_population --------------------------------------------------------


def _loss(w, batch):
  return jnp.mean((batch['x'] @ w - batch['y']) ** 2)


def _batch(n=12):
  x = jnp.linspace(-1.0, 1.0, n * 3).reshape(n, 3)
  return {'x': x, 'y': jnp.sin(jnp.arange(n, dtype=jnp.float32))}


@pytest.mark.parametrize('k', [1, 3, 12])
def test_grad_population_groups(k):
  w = jnp.array([0.5, -1.0, 2.0])
  batch = _batch()
  loss, grads = optax_ext.grad_population(_loss, k)(w, batch)
  assert grads.shape == (k, 3)
  np.testing.assert_allclose(loss, _loss(w, batch), rtol=1e-6)
  for i in range(k):
    group = jax.tree.map(lambda x, i=i: jnp.split(x, k)[i], batch)
    np.testing.assert_allclose(
      grads[i], jax.grad(_loss)(w, group), rtol=1e-6, atol=1e-7
    )
  # The mean of equal-size group gradients is the full-batch gradient.
  np.testing.assert_allclose(
    pop.mean(grads), jax.grad(_loss)(w, batch), rtol=1e-5, atol=1e-6
  )


def test_grad_population_has_aux_and_args():
  def loss(w, batch, scale):
    r = batch['x'] @ w - batch['y']
    return scale * jnp.mean(r**2), jnp.max(jnp.abs(r))

  (value, aux), grads = optax_ext.grad_population(loss, 4, has_aux=True)(
    jnp.ones(3), _batch(), 2.0
  )
  assert aux.shape == (4,) and grads.shape == (4, 3) and value.shape == ()


def test_grad_population_errors():
  with pytest.raises(ValueError, match='`num_members` must be an integer >= 1'):
    optax_ext.grad_population(_loss, 0)
  with pytest.raises(TypeError, match='`loss_fn` must be callable'):
    optax_ext.grad_population(3, 2)
  with pytest.raises(ValueError, match='12 is not divisible.*=5'):
    optax_ext.grad_population(_loss, 5)(jnp.ones(3), _batch())
  with pytest.raises(ValueError, match='same leading'):
    optax_ext.grad_population(_loss, 2)(
      jnp.ones(3), {'x': jnp.ones((4, 3)), 'y': jnp.ones(6)}
    )


def test_functions_trace_under_jit_without_recompiling():
  traces = []

  @jax.jit
  def f(g):
    traces.append(None)
    return pop.mean_and_var(g, ddof=1), pop.gramian(g), pop.median(g)

  for seed in range(3):
    f(_population(5, seed=seed))
  assert len(traces) == 1


def test_named_axis_works_under_lax_control_flow(mesh):
  """Collectives inside lax.cond branches on the named path."""
  g = _population(D)
  axes = pop.PopulationAxes(axis=None, axis_name='data')

  def local(m):
    m = jax.tree.map(lambda x: x[0], m)
    return lax.cond(True, lambda: pop.mean(m, axes), lambda: pop.sum(m, axes))

  out = _shard_map(local, mesh, P('data'))(g)
  _assert_close(out, pop.mean(g), 'mean')


@pytest.mark.parametrize('k', [1, 7, 64, 65, 150, 300])
def test_sum_over_members_matches_axis_sum(k):
  """Straight line (K <= 64), static groups (<= 256), looped groups + rest."""

  x = jax.random.normal(jax.random.key(k), (k, 5, 3))
  s, sq = numerics.sum_over_members(x, (lambda m: m, jnp.square))
  np.testing.assert_allclose(
    s, np.asarray(x, np.float64).sum(0), rtol=1e-5, atol=1e-5
  )
  np.testing.assert_allclose(
    sq, np.square(np.asarray(x, np.float64)).sum(0), rtol=1e-5
  )
  xb = x.astype(jnp.bfloat16)
  (sb,) = numerics.sum_over_members(xb, (lambda m: m,))
  assert sb.dtype == jnp.float32


@pytest.mark.parametrize('k', [1, 2, 3, 5, 8, 13, 64, 65])
def test_network_sort_matches_jnp_sort_with_nan_and_inf(k):
  """The sorting network (K <= 64) and the fallback order like jnp.sort."""
  rng = np.random.default_rng(k)
  x = rng.normal(size=(k, 40)).astype(np.float32)
  x[rng.random(x.shape) < 0.1] = np.nan
  x[rng.random(x.shape) < 0.05] = np.inf
  x[rng.random(x.shape) < 0.05] = -np.inf
  np.testing.assert_array_equal(pop.sort(jnp.asarray(x)), np.sort(x, axis=0))
  med = pop.median(jnp.asarray(x))
  np.testing.assert_allclose(med, np.median(x, axis=0))


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16, jnp.float16])
def test_order_key_is_monotone_and_inverts(dtype):
  """Integer keys order like the floats (NaN as +Inf) and map back exactly."""
  finfo = jnp.finfo(dtype)
  ordered = np.array(
    [-np.inf, float(finfo.min), -1.5, -float(finfo.smallest_subnormal),
     -0.0, 0.0, float(finfo.smallest_subnormal), 1.0, float(finfo.max),
     np.inf],
    dtype=jnp.dtype(dtype),
  )  # fmt: skip
  keys = np.asarray(numerics.order_key(jnp.asarray(ordered)))
  assert keys.dtype.itemsize == jnp.dtype(dtype).itemsize
  assert np.all(np.diff(keys.astype(np.int64)) > 0), keys
  back = numerics.from_order_key(jnp.asarray(keys), dtype)
  np.testing.assert_array_equal(
    np.asarray(back).view(keys.dtype), ordered.view(keys.dtype)
  )
  nan = jnp.asarray(np.array([np.nan, -np.nan], jnp.dtype(dtype)))
  assert np.all(np.asarray(numerics.order_key(nan)) == keys[-1])
  assert numerics.max_order_key(dtype) == keys[-1]


@pytest.mark.parametrize('dtype', [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize('k', [5, 16, 32])
def test_network_sort_in_half_precision(dtype, k):
  """Sorting on 16-bit keys orders exactly like NumPy (NaN last)."""
  rng = np.random.default_rng(k)
  x = rng.normal(size=(k, 64)).astype(np.float32)
  x[rng.random(x.shape) < 0.1] = np.nan
  x[rng.random(x.shape) < 0.05] = -np.inf
  x = jnp.asarray(x, dtype)
  expected = np.sort(np.asarray(x, np.float32), axis=0)
  got = pop.sort(x)
  assert got.dtype == dtype
  np.testing.assert_array_equal(np.asarray(got, np.float32), expected)
  med = pop.median(x, nan_as_outlier=True)
  assert med.dtype == dtype
  lo, hi = expected[(k - 1) // 2], expected[k // 2]
  np.testing.assert_allclose(
    np.asarray(med, np.float32),
    np.asarray(jnp.asarray(0.5 * (lo + hi), dtype), np.float32),
  )


@pytest.mark.parametrize('k', [5, 8, 19])
def test_blocked_cpu_gramian_matches_float64(k):
  # The XLA:CPU path: a loop over GRAM_BLOCK-column blocks plus a tail, the
  # members in GRAM_GROUP-row groups (K = 19: three groups, the last one
  # short), with and without centring (the suite's 8 devices keep the
  # stacked global view on the single dot, so the blocked path is called
  # here).
  from optax_ext._src import gram as gram_lib  # noqa: PLC0415
  from optax_ext._src import kernels  # noqa: PLC0415

  rng = np.random.default_rng(k)
  d = 9 * kernels.GRAM_BLOCK + 123  # loop steps of 2 or 4 blocks, a tail
  x = rng.normal(size=(k, d)).astype(np.float32) + 3.0
  mid = np.median(x, axis=0)
  for center in (None, mid):
    got = jax.jit(
      lambda r, c: gram_lib._gram_of_rows(  # noqa: SLF001
        r, c, jnp.float32, blocked=True
      )
    )(jnp.asarray(x), None if center is None else jnp.asarray(center))
    ref = np.asarray(x, np.float64)
    if center is not None:
      ref = ref - center
    np.testing.assert_allclose(got, ref @ ref.T, rtol=2e-6)
    np.testing.assert_array_equal(got, np.asarray(got).T)
