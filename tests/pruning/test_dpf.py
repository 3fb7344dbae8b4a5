"""DPF: masks, schedule, feedback, scopes, threshold methods, validation."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_ext import pruning


def _params(seed=0):
  rng = np.random.default_rng(seed)
  return {
    'dense': {
      'kernel': jnp.asarray(rng.normal(size=(16, 8)), jnp.float32),
      'bias': jnp.asarray(rng.normal(size=(8,)), jnp.float32),
    },
    'out': jnp.asarray(rng.normal(size=(8, 4)), jnp.float32),
  }


def _loss(params):
  h = jnp.tanh(jnp.ones((3, 16)) @ params['dense']['kernel'])
  h = h + params['dense']['bias']
  return jnp.sum((h @ params['out'] - 1.0) ** 2)


def _train(tx, params, steps):
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    grads = jax.grad(_loss)(pruning.dpf_pruned_params(params, state))
    u, state = tx.update(grads, state, params)
    return optax.apply_updates(params, u), state

  history = []
  for _ in range(steps):
    params, state = step(params, state)
    history.append((params, state))
  return history


def test_realised_sparsity_follows_the_schedule_at_refreshes():
  schedule = pruning.cubic_sparsity_schedule(0.9, 40, transition_begin=5)
  tx = pruning.dpf(optax.sgd(0.01), schedule, update_every=4)
  history = _train(tx, _params(), 60)
  prunable = 16 * 8 + 8 * 4
  last = 0.0
  for t, (_, state) in enumerate(history, start=1):
    got = float(pruning.dpf_sparsity(state))
    if t % 4 == 0:
      want = round(float(schedule(t)) * prunable) / prunable
      assert got == pytest.approx(want, abs=1e-7), t
      last = want
    else:  # unchanged between refreshes
      assert got == pytest.approx(last, abs=1e-7), t
  assert last == pytest.approx(0.9, abs=1 / prunable)
  # The bias (ndim 1) is never pruned by default.
  _, state = history[-1]
  assert state.mask['dense']['bias'].shape == ()


def test_global_prunes_the_small_leaf_first_layerwise_halves_both():
  params = {
    'big': jnp.full((4, 4), 10.0) + jnp.arange(16.0).reshape(4, 4),
    'small': jnp.full((4, 4), 0.1) + 0.01 * jnp.arange(16.0).reshape(4, 4),
  }
  zero = jax.tree.map(jnp.zeros_like, params)
  for scope, want in (('global', (16, 0)), ('layerwise', (8, 8))):
    tx = pruning.dpf(optax.sgd(0.0), 0.5, update_every=1, scope=scope)
    state = tx.init(params)
    _, state = tx.update(zero, state, params)
    kept = tuple(int(jnp.sum(state.mask[k])) for k in ('big', 'small'))
    assert kept == want, (scope, kept)
    # The largest magnitudes are the ones kept.
    if scope == 'layerwise':
      np.testing.assert_array_equal(
        state.mask['big'].reshape(-1), jnp.arange(16) >= 8
      )


def test_pruned_weights_get_the_full_gradient_and_can_come_back():
  # w = (3, 0.1, -2, 0.2) with 50% sparsity: 0.1 and 0.2 are pruned. A loss
  # pulling the second weight to 5 grows it through the feedback until it
  # re-enters the mask.
  params = jnp.array([[3.0, 0.1], [-2.0, 0.2]])
  target = jnp.array([[3.0, 5.0], [-2.0, 0.2]])
  loss = lambda w: 0.5 * jnp.sum((w - target) ** 2)
  tx = pruning.dpf(optax.sgd(0.1), 0.5, update_every=1)
  state = tx.init(params)
  pruned = pruning.dpf_pruned_params(params, state)
  u, state = tx.update(jax.grad(loss)(pruned), state, params)
  params = optax.apply_updates(params, u)
  mask = state.mask
  np.testing.assert_array_equal(mask, [[True, False], [True, False]])
  for _ in range(30):
    pruned = pruning.dpf_pruned_params(params, state)
    g = jax.grad(loss)(pruned)
    # The gradient at the pruned point, applied to the dense weight.
    np.testing.assert_allclose(g[0, 1], -5.0, rtol=1e-6)
    u, state = tx.update(g, state, params)
    np.testing.assert_allclose(u, -0.1 * g, rtol=1e-6)
    params = optax.apply_updates(params, u)
    if bool(state.mask[0, 1]):
      break
  assert bool(state.mask[0, 1]), 'the pruned weight never came back'
  assert int(jnp.sum(state.mask)) == 2


def test_sparsity_zero_is_the_inner_optimiser():
  inner = optax.sgd(0.05, momentum=0.9)
  params = _params()
  tx = pruning.dpf(inner, 0.0, update_every=2)
  s_dpf, s_in = tx.init(params), inner.init(params)
  p_in = params
  for _ in range(6):
    g = jax.grad(_loss)(pruning.dpf_pruned_params(params, s_dpf))
    u, s_dpf = tx.update(g, s_dpf, params)
    params = optax.apply_updates(params, u)
    u_in, s_in = inner.update(jax.grad(_loss)(p_in), s_in, p_in)
    p_in = optax.apply_updates(p_in, u_in)
  jax.tree.map(np.testing.assert_array_equal, params, p_in)
  assert float(pruning.dpf_sparsity(s_dpf)) == 0.0


@pytest.mark.parametrize('scope', ['global', 'layerwise'])
@pytest.mark.parametrize('sparsity', [0.0, 0.3, 0.5, 0.9, 0.99])
def test_bisect_equals_sort_without_ties(scope, sparsity):
  params = _params(1)
  zero = jax.tree.map(jnp.zeros_like, params)
  masks = {}
  for method in ('sort', 'bisect'):
    tx = pruning.dpf(
      optax.sgd(0.0),
      sparsity,
      update_every=1,
      scope=scope,
      threshold_method=method,
    )
    _, state = tx.update(zero, tx.init(params), params)
    masks[method] = state.mask
  jax.tree.map(np.testing.assert_array_equal, masks['sort'], masks['bisect'])


def test_ties_sort_keeps_the_exact_count_by_position_bisect_keeps_all_ties():
  params = jnp.array([[1.0, 2.0, 2.0, 2.0], [2.0, 3.0, 0.5, 0.1]])
  zero = jnp.zeros_like(params)
  kept = {}
  for method in ('sort', 'bisect'):
    tx = pruning.dpf(
      optax.sgd(0.0), 0.5, update_every=1, threshold_method=method
    )
    _, state = tx.update(zero, tx.init(params), params)
    kept[method] = np.asarray(state.mask)
  # Keep 4 of 8: 3.0 and the first three of the four 2.0s (by position).
  np.testing.assert_array_equal(
    kept['sort'], [[False, True, True, True], [False, True, False, False]]
  )
  np.testing.assert_array_equal(
    kept['bisect'], [[False, True, True, True], [True, True, False, False]]
  )


def test_cubic_schedule_matches_optax_polynomial_schedule():
  ours = pruning.cubic_sparsity_schedule(0.8, 100, 10, init_sparsity=0.1)
  with jax.numpy_dtype_promotion('standard'):
    ref = optax.polynomial_schedule(0.1, 0.8, 3.0, 100, 10)
    for t in (0, 5, 10, 11, 50, 109, 110, 111, 500):
      np.testing.assert_allclose(ours(t), ref(t), rtol=1e-6, atol=1e-7)
      frac = min(max(t - 10, 0) / 100, 1.0)
      closed = 0.8 + (0.1 - 0.8) * (1 - frac) ** 3
      np.testing.assert_allclose(ours(t), closed, rtol=1e-6)


def test_custom_prunable_and_nan_weights():
  params = {'a': jnp.array([1.0, jnp.nan, 3.0, 4.0]), 'b': jnp.ones((2, 2))}
  tx = pruning.dpf(
    optax.sgd(0.0),
    0.25,
    update_every=1,
    prunable=lambda path, leaf: jax.tree_util.keystr(path) == "['a']",
  )
  _, state = tx.update(
    jax.tree.map(jnp.zeros_like, params), tx.init(params), params
  )
  # NaN magnitudes are pruned first.
  np.testing.assert_array_equal(state.mask['a'], [True, False, True, True])
  assert state.mask['b'].shape == ()


def test_helpers_need_exactly_one_state():
  with pytest.raises(ValueError, match='exactly one DpfState'):
    pruning.dpf_sparsity(optax.sgd(0.1).init(jnp.zeros(2)))


@pytest.mark.parametrize(
  ('kwargs', 'exc', 'match'),
  [
    ({'sparsity': 1.0}, ValueError, r'`sparsity` must be in \[0.0, 1.0\)'),
    ({'sparsity': -0.1}, ValueError, r'`sparsity`.*got -0.1'),
    ({'sparsity': float('nan')}, ValueError, '`sparsity`'),
    ({'update_every': 0}, ValueError, '`update_every`.*>= 1.*got 0'),
    ({'update_every': 2.5}, TypeError, '`update_every`.*integer'),
    ({'scope': 'leaf'}, ValueError, '`scope` must be one of'),
    ({'threshold_method': 'topk'}, ValueError, '`threshold_method`'),
  ],
)
def test_dpf_validation(kwargs, exc, match):
  kwargs = {'sparsity': 0.5, **kwargs}
  with pytest.raises(exc, match=match):
    pruning.dpf(optax.sgd(0.1), **kwargs)


def test_structural_errors():
  tx = pruning.dpf(optax.sgd(0.1), 0.5)
  with pytest.raises(ValueError, match='selected no leaf'):
    tx.init({'b': jnp.ones(3)})
  scalar = pruning.dpf(optax.sgd(0.1), 0.5, prunable=lambda p, x: True)
  with pytest.raises(ValueError, match="scalar leaf \\['s'\\]"):
    scalar.init({'s': jnp.ones(()), 'w': jnp.ones((2, 2))})
  with pytest.raises(ValueError, match='`prunable` must be a callable or'):
    pruning.dpf(optax.sgd(0.1), 0.5, prunable={'a': True}).init(jnp.ones(2))
  with pytest.raises(TypeError, match="Python bool per leaf, got 'yes'"):
    pruning.dpf(optax.sgd(0.1), 0.5, prunable=lambda p, x: 'yes').init(
      jnp.ones((2, 2))
    )
  state = tx.init(jnp.ones((2, 2)))
  with pytest.raises(ValueError, match='`params`'):
    tx.update(jnp.ones((2, 2)), state)


@pytest.mark.parametrize(
  ('kwargs', 'match'),
  [
    ({'final_sparsity': 1.0}, r'`final_sparsity` must be in \[0.0, 1.0\)'),
    ({'transition_steps': 0}, '`transition_steps`.*>= 1'),
    ({'transition_begin': -1}, '`transition_begin`.*>= 0'),
    ({'init_sparsity': 1.5}, '`init_sparsity`'),
    ({'power': 0.0}, '`power` must be > 0.0'),
  ],
)
def test_schedule_validation(kwargs, match):
  kwargs = {'final_sparsity': 0.9, 'transition_steps': 10, **kwargs}
  with pytest.raises(ValueError, match=match):
    pruning.cubic_sparsity_schedule(**kwargs)


class _Mlp(nnx.Module):
  def __init__(self, rngs):
    self.l1 = nnx.Linear(4, 8, rngs=rngs)
    self.l2 = nnx.Linear(8, 1, rngs=rngs)

  def __call__(self, x):
    return self.l2(jax.nn.tanh(self.l1(x)))


def test_nnx_recipe_matches_the_plain_optax_loop():
  """The documented NNX recipe: grads at the pruned model, dense update."""
  x = jnp.linspace(-1.0, 1.0, 20).reshape(5, 4)
  y = jnp.sum(x, axis=1, keepdims=True)
  tx = pruning.dpf(optax.sgd(0.1, momentum=0.9), 0.6, update_every=1)
  model = _Mlp(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params = jax.tree.map(jnp.copy, params)
  state = tx.init(params)

  def loss_of_model(m):
    return jnp.mean((m(x) - y) ** 2)

  for _ in range(4):
    # NNX: merge a model from the pruned params, differentiate, update the
    # dense model.
    g_def, dense, others = nnx.split(model, nnx.Param, ...)
    pruned = pruning.dpf_pruned_params(dense, optimizer.opt_state)
    grads = nnx.grad(loss_of_model)(nnx.merge(g_def, pruned, others))
    optimizer.update(model, grads)
    # Plain optax on the same function.
    w = pruning.dpf_pruned_params(params, state)
    g = jax.grad(lambda p: loss_of_model(nnx.merge(graphdef, p, rest)))(w)
    u, state = tx.update(g, state, params)
    params = optax.apply_updates(params, u)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
    nnx.state(model, nnx.Param),
    params,
  )
  assert float(pruning.dpf_sparsity(optimizer.opt_state)) == pytest.approx(
    0.6, abs=0.02
  )


@pytest.mark.parametrize('scope', ['global', 'layerwise'])
@pytest.mark.parametrize('method', ['sort', 'bisect'])
def test_refresh_outside_the_step_gives_the_same_masks(scope, method):
  # Unjitted, so both compute the post-step weights with the same addition.
  kwargs = {
    'sparsity': pruning.cubic_sparsity_schedule(0.8, 12),
    'update_every': 3,
    'scope': scope,
    'threshold_method': method,
  }
  inside = pruning.dpf(optax.sgd(0.05, momentum=0.9), **kwargs)
  outside = pruning.dpf(
    optax.sgd(0.05, momentum=0.9), **kwargs, refresh_in_update=False
  )
  chain = optax.chain(optax.identity(), outside)
  p1 = p2 = p3 = _params()
  s1, s2, s3 = inside.init(p1), outside.init(p2), chain.init(p3)

  def step(tx, params, state):
    grads = jax.grad(_loss)(pruning.dpf_pruned_params(params, state))
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  for count in range(1, 14):
    p1, s1 = step(inside, p1, s1)
    p2, s2 = step(outside, p2, s2)
    p3, s3 = step(chain, p3, s3)
    if count % 3 == 0:
      s2 = pruning.dpf_refresh(outside, s2, p2)
      s3 = pruning.dpf_refresh(outside, s3, p3)
    for a, b in ((s1.mask, s2.mask), (s1.mask, s3[1].mask), (p1, p2)):
      jax.tree.map(np.testing.assert_array_equal, a, b)
  assert float(pruning.dpf_sparsity(s2)) > 0.5


def test_refresh_outside_the_step_needs_the_dpf_transformation():
  tx = pruning.dpf(optax.sgd(0.1), 0.5, refresh_in_update=False)
  state = tx.init(_params())
  with pytest.raises(ValueError, match='dpf_refresh: `tx` must be'):
    pruning.dpf_refresh(optax.chain(tx), state, _params())
  with pytest.raises(TypeError, match='`refresh_in_update` must be a bool'):
    pruning.dpf(optax.sgd(0.1), 0.5, refresh_in_update=1)


def test_refresh_outside_the_step_removes_the_branch():
  # The compiled train step (params and state donated): with the refresh
  # inside it has the branch (on the benchmark's MLP XLA copies the
  # prunable weights before it on every step); outside it has none.
  params = _params()

  def hlo(tx):
    def step(params, state):
      grads = jax.grad(_loss)(pruning.dpf_pruned_params(params, state))
      u, state = tx.update(grads, state, params)
      return optax.apply_updates(params, u), state

    compiled = (
      jax.jit(step, donate_argnums=(0, 1))
      .lower(params, tx.init(params))
      .compile()
    )
    return compiled.as_text()

  inside = hlo(pruning.dpf(optax.sgd(0.1, momentum=0.9), 0.5))
  outside = hlo(
    pruning.dpf(optax.sgd(0.1, momentum=0.9), 0.5, refresh_in_update=False)
  )
  assert 'conditional(' in inside and 'conditional(' not in outside
