"""The optax-style battery, run over every entry of ``tests/registry.py``."""

import inspect

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_ext
from tests import helpers
from tests import registry

ENTRIES = [pytest.param(e, id=e.name) for e in registry.REGISTRY]


@pytest.mark.parametrize('entry', ENTRIES)
def test_parabola_converges(entry):
  params = helpers.run(entry, helpers.parabola, helpers.params(), entry.lr, 500)
  for p, t in zip(
    jax.tree.leaves(params), jax.tree.leaves(helpers.TARGET), strict=True
  ):
    np.testing.assert_allclose(p, t, atol=1e-2)


@pytest.mark.parametrize('entry', ENTRIES)
def test_rosenbrock_converges(entry):
  lr, steps = entry.rosenbrock
  params = helpers.run(
    entry, helpers.rosenbrock, {'xy': jnp.array([-1.0, 1.5])}, lr, steps
  )
  np.testing.assert_allclose(params['xy'], [1.0, 1.0], atol=2e-2)


@pytest.mark.parametrize('entry', ENTRIES)
def test_unknown_extra_args_are_ignored(entry):
  tx = entry.make()
  params = helpers.params()
  state = tx.init(params)
  grads = helpers.grads(params, 0)
  g, extra = entry.oracle_input(grads), entry.extra_args(grads)
  u1, s1 = tx.update(g, state, params, **extra)
  u2, s2 = tx.update(
    g,
    state,
    params,
    some_unknown_arg=jnp.ones(3),
    another='x',
    value=1.0,
    **extra,
  )
  jax.tree.map(np.testing.assert_array_equal, u1, u2)
  jax.tree.map(np.testing.assert_array_equal, s1, s2)


@pytest.mark.parametrize('entry', ENTRIES)
def test_inject_hyperparams_equivalence(entry):
  plain = entry.make()
  injected = optax.inject_hyperparams(
    entry.factory, static_args=entry.static_args
  )(**entry.kwargs)
  params = helpers.params()
  s_plain, s_inj = plain.init(params), injected.init(params)
  assert set(entry.hyperparams) <= set(s_inj.hyperparams), (
    f'{entry.name}: inject_hyperparams exposes {sorted(s_inj.hyperparams)}, '
    f'expected at least {sorted(entry.hyperparams)}'
  )
  for i in range(3):
    grads = helpers.grads(params, i)
    g, extra = entry.oracle_input(grads), entry.extra_args(grads)
    u_plain, s_plain = plain.update(g, s_plain, params, **extra)
    u_inj, s_inj = injected.update(g, s_inj, params, **extra)
    # Injected hyper-parameters are float32 arrays where the plain transform
    # folds Python floats into constants, so e.g. Adam's bias corrections
    # round differently in the last bits: a few float32 ulps, not more.
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(
        a, b, rtol=entry.inject_rtol, atol=1e-7
      ),
      u_plain,
      u_inj,
    )
    params = optax.apply_updates(params, u_plain)


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16], ids=str)
@pytest.mark.parametrize('entry', ENTRIES)
def test_dtype_stability(entry, dtype):
  """Update dtype == grad dtype; state dtypes stable; lax.cond compiles."""
  tx = entry.make()
  params = helpers.params(dtype)
  state = tx.init(params)
  state_dtypes = jax.tree.map(lambda x: jnp.asarray(x).dtype, state)
  step = helpers.cond_step(entry, tx)

  for i in range(3):
    grads = helpers.grads(params, i)
    updates, state = step(
      params, state, entry.oracle_input(grads), entry.extra_args(grads), i != 1
    )
    for u, g in zip(
      jax.tree.leaves(updates), jax.tree.leaves(grads), strict=True
    ):
      assert u.dtype == g.dtype, (u.dtype, g.dtype)
      assert bool(jnp.all(jnp.isfinite(u.astype(jnp.float32))))
    assert jax.tree.map(lambda x: jnp.asarray(x).dtype, state) == state_dtypes
    params = optax.apply_updates(params, updates)
    assert all(p.dtype == dtype for p in jax.tree.leaves(params))


def _counting_step(tx):
  """A jitted ``(p, s, g, extra)`` training step and the list of its traces."""
  traces = []

  @jax.jit
  def step(p, s, g, extra):
    traces.append(None)
    u, s = tx.update(g, s, p, **extra)
    return optax.apply_updates(p, u), s

  return step, traces


@pytest.mark.parametrize('entry', ENTRIES)
def test_compiles_once(entry):
  tx = entry.optimizer(0.01)
  step, traces = _counting_step(tx)
  params = helpers.params()
  state = tx.init(params)
  for i in range(4):
    grads = helpers.grads(params, i)
    params, state = step(
      params, state, entry.oracle_input(grads), entry.extra_args(grads)
    )
  assert len(traces) == 1, f'{entry.name} re-traced {len(traces)} times'


@pytest.mark.standard_promotion  # optax.MultiSteps is not strict-clean
@pytest.mark.parametrize('entry', ENTRIES)
def test_multi_steps(entry):
  """MultiSteps gives zero updates, then the inner update on the mean input.

  For aggregators the accumulation happens after aggregation, on
  param-shaped updates (see the ``Aggregator`` docstring), so the reference
  averages the aggregator's outputs rather than its (population) inputs.
  """
  every_k = 2
  params = helpers.params()
  grads = [helpers.grads(params, i) for i in range(every_k)]
  inputs = [entry.oracle_input(g) for g in grads]
  extras = [entry.extra_args(g) for g in grads]
  if entry.takes_population:
    agg = entry.aggregator()
    tx = optax.chain(
      agg, optax.MultiSteps(optax.sgd(0.1), every_k).gradient_transformation()
    )
    agg_state, outputs = agg.init(params), []
    for x in inputs:
      out, agg_state = agg.update(x, agg_state, params)
      outputs.append(out)
    mean_out = jax.tree.map(lambda *xs: sum(xs) / every_k, *outputs)
    expected = jax.tree.map(lambda x: -0.1 * x, mean_out)
  else:
    tx = optax.MultiSteps(entry.optimizer(0.1), every_k)
    ref = entry.optimizer(0.1)
    mean_input = jax.tree.map(lambda *xs: sum(xs) / every_k, *inputs)
    # MultiSteps forwards the extra args of the step on which it applies.
    expected, _ = ref.update(mean_input, ref.init(params), params, **extras[-1])
  state = tx.init(params)
  u0, state = tx.update(inputs[0], state, params, **extras[0])
  for u in jax.tree.leaves(u0):
    np.testing.assert_array_equal(u, 0.0)
  u1, state = tx.update(inputs[1], state, params, **extras[1])
  # MultiSteps averages incrementally (a + (g - a) / k): a few ulps apart.
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
    u1,
    expected,
  )


@pytest.mark.parametrize('entry', ENTRIES)
def test_init_on_shape_dtype_struct(entry):
  tx = entry.make()
  params = helpers.params()
  abstract = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params
  )
  shapes = jax.eval_shape(tx.init, abstract)
  concrete = tx.init(params)
  assert jax.tree.structure(shapes) == jax.tree.structure(concrete)
  for a, c in zip(
    jax.tree.leaves(shapes), jax.tree.leaves(concrete), strict=True
  ):
    assert a.shape == jnp.shape(c) and a.dtype == jnp.asarray(c).dtype


@pytest.mark.parametrize('entry', ENTRIES)
def test_runs_inside_nnx_optimizer(entry):
  """nnx.Optimizer(model, tx, wrt=nnx.Param) gives the same as plain optax."""
  model = helpers.Mlp(nnx.Rngs(0))
  tx = entry.optimizer(0.05)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  graphdef, params = nnx.split(model, nnx.Param)
  params = jax.tree.map(jnp.copy, params)  # the split State aliases the model
  # NUM_MEMBERS examples: per-example populations have the registry's K.
  x = jnp.linspace(-1.0, 1.0, 3 * registry.NUM_MEMBERS).reshape(-1, 3)
  y = jnp.sum(x, axis=1, keepdims=True)

  def loss(p, xb, yb):
    return jnp.mean((nnx.merge(graphdef, p)(xb) - yb) ** 2)

  def oracle(p):
    """(gradient input, extra args) as the user would compute them."""
    if entry.takes_population:  # a per-example population
      per_example = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))
      return per_example(p, x[:, None], y[:, None]), {}
    g = jax.grad(loss)(p, x, y)
    return g, entry.extra_args(g)

  ref_params, ref_state = params, tx.init(params)
  for _ in range(3):
    grads, extra = oracle(nnx.state(model, nnx.Param))
    optimizer.update(model, grads, **extra)
    g_ref, extra_ref = oracle(ref_params)
    u, ref_state = tx.update(g_ref, ref_state, ref_params, **extra_ref)
    ref_params = optax.apply_updates(ref_params, u)
  got = nnx.state(model, nnx.Param)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
    got,
    ref_params,
  )
  assert not np.allclose(jax.tree.leaves(got)[0], jax.tree.leaves(params)[0]), (
    'the model did not move'
  )


@pytest.mark.parametrize('entry', ENTRIES)
def test_changing_injected_hyperparams_does_not_recompile(entry):
  """New values of injected hyper-parameters reuse the compiled step."""
  if not entry.hyperparams:
    pytest.skip('no injectable hyper-parameters')
  tx = optax.inject_hyperparams(entry.factory, static_args=entry.static_args)(
    **entry.kwargs
  )
  if entry.kind == 'population':  # population -> population: aggregate it
    tx = optax.chain(tx, optax_ext.aggregate_by_mean())
  step, traces = _counting_step(tx)
  params = helpers.params()
  state = tx.init(params)
  for i in range(3):
    if i:  # scale every injected value a little: same dtype and shape
      injected = state[0] if entry.kind == 'population' else state
      injected.hyperparams.update(
        {
          k: (v * 0.9).astype(v.dtype)
          for k, v in injected.hyperparams.items()
          if k in entry.hyperparams and jnp.issubdtype(v.dtype, jnp.floating)
        }
      )
    grads = helpers.grads(params, i)
    params, state = step(
      params, state, entry.oracle_input(grads), entry.extra_args(grads)
    )
  assert len(traces) == 1, f'{entry.name} re-traced {len(traces)} times'


def _default(entry, name):
  if name in entry.kwargs:
    return entry.kwargs[name]
  param = inspect.signature(entry.factory).parameters.get(name)
  return None if param is None else param.default


# A callable means something else there (not a per-step value of the same
# rule), with the reason.
SCHEDULE_MEANS_OTHER = {
  # It replaces the built-in warm-up / warm-down schedule entirely.
  ('ranger21', 'learning_rate'),
}


def _schedule_cases():
  for e in registry.REGISTRY:
    for name in e.hyperparams:
      if (e.name, name) in SCHEDULE_MEANS_OTHER:
        continue
      value = _default(e, name)
      if isinstance(value, float) and not isinstance(value, bool) and value:
        yield pytest.param(e, name, value, id=f'{e.name}-{name}')


@pytest.mark.parametrize('entry, name, a', list(_schedule_cases()))
def test_schedules_are_evaluated_per_step(entry, name, a):
  """A schedule a -> b gives, at step 2, constant a then constant b.

  Every float hyper-parameter that accepts a schedule (the factory raises
  otherwise) must evaluate it at the step count in its state, not once.
  """
  b = 0.5 * a

  def sched(count):
    return jnp.where(count < 1, a, b)

  try:
    scheduled = entry.make(**{name: sched})
  except (TypeError, ValueError):
    pytest.skip(f'{name} does not accept a schedule')
  const_a, const_b = entry.make(**{name: a}), entry.make(**{name: b})
  if entry.kind == 'population':
    scheduled, const_a, const_b = (
      optax.chain(t, optax_ext.aggregate_by_mean())
      for t in (scheduled, const_a, const_b)
    )
  params = helpers.params()
  inputs = [helpers.grads(params, i) for i in range(2)]

  def run(tx, switch_to=None):
    state = tx.init(params)
    for i, grads in enumerate(inputs):
      if i == 1 and switch_to is not None:
        tx = switch_to
      g, extra = entry.oracle_input(grads), entry.extra_args(grads)
      u, state = tx.update(g, state, params, **extra)
    return u

  got = run(scheduled)
  want = run(const_a, switch_to=const_b)
  jax.tree.map(
    lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7),
    got,
    want,
  )
