"""One-backward ("ghost") populations give the stacked population's update.

``population.ghost(loss, params, batch, K)`` runs one forward and one
backward pass and keeps, for every parameter that enters the loss through a
contraction, its activations and output cotangents instead of per-member
gradients. Every registry aggregator (and population transform, then the
mean) that takes a lean population must give on it the update (and state)
it gives on ``grad_population``'s stacked per-member gradients, over two
steps, on an MLP, a CNN and the Transformer of ``benchmarks/workloads/lm.py``,
with ``K`` microbatch members and with per-example members.
"""

import jax
import jax.numpy as jnp
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
import pytest

import optax_ext
from optax_ext import alignment
from optax_ext import population
from optax_ext import privacy
from optax_ext import robust
from tests import helpers
from tests import registry

K = registry.NUM_MEMBERS
UNSUPPORTED = set(registry.with_property(lambda p: not p.lean))
# Weiszfeld from the medoid (weight form) against the coordinate median
# (coordinate form): both run to convergence and agree to its accuracy.
OVERRIDES = {'aggregate_by_geometric_median': {'ftol': 0.0, 'maxiter': 500}}
# GSNR divides by the members' variance: the two summation orders (per
# member, or from the stacked population) differ by rounding it amplifies.
LOOSE = {'aggregate_by_geometric_median': 1e-4, 'aggregate_by_gsnr': 1e-4}
# The QP solvers' stopping step amplifies the rounding of a Gramian summed
# in another order (as in test_distributed.py).
ACROSS_DEVICES_RTOL = {
  'aggregate_by_cagrad': 5e-3,
  'aggregate_by_nash_mtl': 5e-3,
}
ENTRIES = [
  pytest.param(e, id=e.name)
  for e in registry.REGISTRY
  if e.kind in ('aggregator', 'population') and e.layouts
]


def _mlp(seed=0, batch_size=4 * K):
  rng = np.random.default_rng(seed)
  params = {
    'l1': {
      'w': jnp.asarray(rng.normal(size=(6, 5)) * 0.5, jnp.float32),
      'b': jnp.asarray(rng.normal(size=(5,)) * 0.1, jnp.float32),
    },
    'l2': {
      'w': jnp.asarray(rng.normal(size=(5, 3)) * 0.5, jnp.float32),
      'b': jnp.zeros((3,), jnp.float32),
    },
  }
  x = rng.normal(size=(batch_size, 6)).astype(np.float32)
  x *= np.repeat(np.arange(1, K + 1), batch_size // K)[:, None]
  batch = {
    'x': jnp.asarray(x),
    'y': jnp.asarray(rng.normal(size=(batch_size, 3))),
  }

  def loss(p, b):
    h = jnp.tanh(b['x'] @ p['l1']['w'] + p['l1']['b'])
    return jnp.mean((h @ p['l2']['w'] + p['l2']['b'] - b['y']) ** 2)

  return loss, params, batch


def _two_steps(tx, make_pop, params, steps=2):
  state = tx.init(params)
  out = []
  for _ in range(steps):
    u, state = tx.update(make_pop(params), state, params)
    out.append((u, helpers.float_leaves(state)))
    params = jax.tree.map(lambda p, x: p - 0.1 * x, params, u)
  return out


def _ghost_and_stacked(tx, loss, params, batch, k, steps=2, mode='auto'):
  runs = (
    lambda q: population.ghost(loss, q, batch, k, mode=mode),
    lambda q: population.grad_population(loss, k)(q, batch)[1],
  )
  return tuple(
    jax.jit(lambda p, f=f: _two_steps(tx, f, p, steps=steps))(params)
    for f in runs
  )


def _close(a, b, rtol):
  jax.tree.map(
    lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * 1e-1),
    a,
    b,
  )


@pytest.mark.parametrize('entry', ENTRIES)
def test_ghost_equals_stacked(entry):
  loss, params, batch = _mlp()
  tx = entry.aggregator(**OVERRIDES.get(entry.name, {}))
  if entry.name in UNSUPPORTED:
    with pytest.raises(ValueError, match='grad_population'):
      jax.jit(
        lambda p: tx.update(population.ghost(loss, p, batch, K), tx.init(p), p)
      )(params)
    return
  ghost, stacked = _ghost_and_stacked(tx, loss, params, batch, K)
  _close(ghost, stacked, LOOSE.get(entry.name, 1e-5))


def _cnn(seed=0, batch_size=8):
  from flax import nnx  # noqa: PLC0415

  class Net(nnx.Module):
    def __init__(self, rngs):
      self.conv = nnx.Conv(2, 4, kernel_size=(3, 3), rngs=rngs)
      self.conv1d = nnx.Conv(4, 3, kernel_size=(2,), rngs=rngs)
      self.norm = nnx.LayerNorm(3, rngs=rngs)
      self.head = nnx.Linear(3 * 5 * 5, 2, rngs=rngs)

    def __call__(self, x):
      h = jnp.tanh(self.conv(x))  # [N, 5, 5, 4]
      h = h.reshape(h.shape[0], 25, 4)
      h = self.norm(jnp.tanh(self.conv1d(h)))  # 1-D convolution over rows
      return self.head(h.reshape(h.shape[0], -1))

  graphdef, params = nnx.split(Net(nnx.Rngs(seed)))
  rng = np.random.default_rng(seed)
  batch = {
    'x': jnp.asarray(rng.normal(size=(batch_size, 5, 5, 2)), jnp.float32),
    'y': jnp.asarray(rng.integers(0, 2, size=(batch_size,)), jnp.int32),
  }

  def loss(p, b):
    logits = nnx.merge(graphdef, p)(b['x'])
    return optax.softmax_cross_entropy_with_integer_labels(
      logits, b['y']
    ).mean()

  return loss, params, batch


def _transformer(seed=0):
  lm = helpers.workload_module('lm')
  workload = lm.Workload(lm.SMOKE)
  params = workload.init(seed)
  batch = next(workload.batches(seed))
  return workload.loss, params, batch


MODELS = {'mlp': _mlp, 'cnn': _cnn, 'transformer': _transformer}
# Rules run on every model and member count (one per kind of population
# function: streamed mean, Gramian weights, Gramian iterates, clipping).
RULES = {
  'mean': lambda axes=None: optax_ext.aggregate_by_mean(axes=axes),
  'krum': lambda axes=None: robust.aggregate_by_krum(
    0, num_selected=2, axes=axes
  ),
  'upgrad': lambda axes=None: alignment.aggregate_by_upgrad(axes=axes),
  'geometric_median': lambda axes=None: robust.aggregate_by_geometric_median(
    ftol=0.0, maxiter=500, axes=axes
  ),
  'clip_then_mean': lambda axes=None: optax.chain(
    robust.clip_each_by_global_norm(0.05, axes=axes),
    optax_ext.aggregate_by_mean(axes=axes),
  ),
  'centered_clipping': lambda axes=None: robust.aggregate_by_centered_clipping(
    0.05, iterations=2, axes=axes
  ),
  # Scaled members (clipped) into a Gramian rule.
  'clip_then_krum': lambda axes=None: optax.chain(
    robust.clip_each_by_global_norm(0.05, axes=axes),
    robust.aggregate_by_krum(0, num_selected=2, axes=axes),
  ),
}


@pytest.mark.parametrize('rule', sorted(RULES))
@pytest.mark.parametrize('members', ['K', 'per_example'])
@pytest.mark.parametrize('model', sorted(MODELS))
def test_models_and_member_counts(model, members, rule):
  loss, params, batch = MODELS[model]()
  size = jax.tree.leaves(batch)[0].shape[0]
  k = size if members == 'per_example' else K
  ghost, stacked = _ghost_and_stacked(RULES[rule](), loss, params, batch, k)
  _close(ghost, stacked, 1e-4 if rule == 'geometric_median' else 2e-5)


@pytest.mark.parametrize('model', sorted(MODELS))
def test_per_example_norms_equal_the_vmapped_ones(model):
  loss, params, batch = MODELS[model]()
  size = jax.tree.leaves(batch)[0].shape[0]
  ghost = jax.jit(lambda p: population.norms(population.ghost(loss, p, batch)))(
    params
  )
  per_example = jax.jit(
    lambda p: population.norms(
      population.grad_population(loss, size)(p, batch)[1]
    )
  )(params)
  np.testing.assert_allclose(ghost, per_example, rtol=1e-5)


@pytest.mark.parametrize('mode', ['ghost', 'materialise'])
@pytest.mark.parametrize('model', ['cnn', 'transformer'])
def test_both_forms_of_a_contraction_agree(model, mode):
  loss, params, batch = MODELS[model]()
  tx = alignment.aggregate_by_upgrad()
  ghost, stacked = _ghost_and_stacked(tx, loss, params, batch, K, mode=mode)
  _close(ghost, stacked, 2e-5)


def test_report_names_each_leaf_form():
  loss, params, batch = _transformer()
  kinds = population.ghost_report(population.ghost(loss, params, batch))
  # 32 tokens per example and a 32 x 32 projection: forming the per-example
  # gradients costs fewer multiply-adds than the Gramian of the rows.
  assert kinds["['blocks'][0]['attn']['query']['kernel'].value"] == (
    'materialised'
  )
  forced = population.ghost(loss, params, batch, mode='ghost')
  kinds = population.ghost_report(forced)
  assert kinds["['blocks'][0]['attn']['query']['kernel'].value"] == 'ghost'
  assert kinds["['blocks'][0]['attn']['out']['kernel'].value"] == 'ghost'
  assert kinds["['blocks'][0]['ln1']['scale'].value"] == 'fallback'
  assert kinds["['embed']['embedding'].value"] == 'ghost'  # a lookup
  loss, params, batch = _cnn()
  kinds = population.ghost_report(population.ghost(loss, params, batch))
  assert kinds["['conv']['kernel'].value"] == 'materialised'
  assert kinds["['conv1d']['kernel'].value"] == 'materialised'
  assert kinds["['head']['kernel'].value"] in ('ghost', 'materialised')
  kinds = population.ghost_report(
    population.ghost(loss, params, batch, mode='ghost')
  )
  assert kinds["['conv']['kernel'].value"] == 'ghost'
  assert kinds["['conv1d']['kernel'].value"] == 'ghost'


# Convolutions the ghost form reads as patches: layouts, strides, padding,
# dilations of the input (a transposed convolution) and of the kernel.
CONVOLUTIONS = {
  'nhwc_same': dict(dn=('NHWC', 'HWIO', 'NHWC'), strides=(1, 1), pad='SAME'),
  'nchw_strided': dict(
    dn=('NCHW', 'OIHW', 'NCHW'), strides=(2, 1), pad=((1, 0), (0, 2))
  ),
  'kernel_dilated': dict(
    dn=('NHWC', 'HWIO', 'NHWC'), strides=(1, 1), pad='VALID', rhs=(2, 1)
  ),
  'transposed': dict(
    dn=('NHWC', 'HWIO', 'NHWC'),
    strides=(1, 1),
    pad=((1, 1), (0, 1)),
    lhs=(2, 2),
  ),
  'one_d': dict(dn=('NWC', 'WIO', 'NWC'), strides=(2,), pad='SAME'),
}


@pytest.mark.parametrize('conv', sorted(CONVOLUTIONS))
def test_convolution_patches_give_the_gramian(conv):
  spec = CONVOLUTIONS[conv]
  lhs_spec, rhs_spec, _ = spec['dn']
  spatial = len(lhs_spec) - 2
  rng = np.random.default_rng(0)
  sizes = {'N': 8, 'C': 3, 'I': 3, 'O': 4}
  x_shape = [sizes.get(c, 6) for c in lhs_spec]
  w_shape = [
    sizes.get(c, 3 if c == 'H' or spatial == 1 else 2) for c in rhs_spec
  ]
  params = {'w': jnp.asarray(rng.normal(size=w_shape) * 0.3, jnp.float32)}
  batch = jnp.asarray(rng.normal(size=x_shape), jnp.float32)

  def loss(p, b):
    out = jax.lax.conv_general_dilated(
      b,
      p['w'],
      spec['strides'],
      spec['pad'],
      lhs_dilation=spec.get('lhs'),
      rhs_dilation=spec.get('rhs'),
      dimension_numbers=spec['dn'],
    )
    return jnp.sum(jnp.tanh(out) ** 2)

  for k in (4, 8):
    pop = population.ghost(loss, params, batch, k, mode='ghost')
    assert population.ghost_report(pop) == {"['w']": 'ghost'}
    stacked = population.grad_population(loss, k)(params, batch)[1]
    np.testing.assert_allclose(
      population.gramian(pop),
      population.gramian(stacked),
      rtol=2e-5,
      atol=1e-5,
    )
    np.testing.assert_allclose(
      population.norms(pop), population.norms(stacked), rtol=2e-5
    )


def test_dp_sgd_equals_the_vmapped_step():
  """Per-example clipping, one Gaussian draw, the same key: the private
  mean of the ghost population is the private mean of the per-example
  gradients."""
  loss, params, batch = _mlp(batch_size=16)
  tx = privacy.aggregate_by_private_mean(0.1, 1.1, seed=3)
  ghost, stacked = _ghost_and_stacked(tx, loss, params, batch, 16, steps=3)
  _close(ghost, stacked, 2e-5)


def test_ghost_inside_nnx_optimizer():
  from flax import nnx  # noqa: PLC0415

  model = nnx.Linear(6, 3, rngs=nnx.Rngs(0))
  tx = optax.chain(alignment.aggregate_by_upgrad(), optax.sgd(0.1))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  graphdef, _ = nnx.split(model)
  _, _, batch = _mlp()

  def loss(params, b):
    return jnp.mean((nnx.merge(graphdef, params)(b['x']) - b['y']) ** 2)

  @nnx.jit
  def step(model, optimizer):
    params = nnx.state(model, nnx.Param)
    members = population.ghost(loss, nnx.as_pure(params), batch, K)
    optimizer.update(model, params, population=members)

  pure = nnx.as_pure(nnx.state(nnx.clone(model), nnx.Param))
  stacked = population.grad_population(loss, K)(pure, batch)[1]
  want, _ = tx.update(stacked, tx.init(pure), pure)
  step(model, optimizer)
  got = nnx.as_pure(nnx.state(model, nnx.Param))
  jax.tree.map(
    lambda new, old, u: np.testing.assert_allclose(
      new, old + u, rtol=1e-5, atol=1e-7
    ),
    got,
    pure,
    want,
  )


@pytest.mark.parametrize(
  'make',
  [
    lambda: robust.aggregate_by_krum(0, num_selected=2),
    lambda: robust.aggregate_by_geometric_median(maxiter=50),
    lambda: optax.chain(
      robust.clip_each_by_global_norm(0.1), optax_ext.aggregate_by_mean()
    ),
  ],
  ids=['krum', 'geometric_median', 'clip_each_then_mean'],
)
def test_a_nan_member_is_handled_as_on_the_stacked_path(make):
  loss, params, batch = _mlp()
  x = np.asarray(batch['x']).copy()
  x[4 * 2] = np.nan  # member 2 of 4
  batch = {**batch, 'x': jnp.asarray(x)}
  tx = make()
  ghost, _ = jax.jit(
    lambda p: tx.update(population.ghost(loss, p, batch, K), tx.init(p), p)
  )(params)
  want, _ = jax.jit(
    lambda p: tx.update(
      population.grad_population(loss, K)(p, batch)[1], tx.init(p), p
    )
  )(params)
  for a, b in zip(jax.tree.leaves(ghost), jax.tree.leaves(want), strict=True):
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


def test_streamed_rules_across_devices(mesh):
  """Per-example members on each device, all members across devices: the
  mean, per-member clipping and DP-SGD compose with the named axis."""
  loss, params, batch = _mlp()
  n = mesh.shape['data']
  big = jax.tree.map(lambda x: jnp.concatenate([x] * n), batch)
  size = jax.tree.leaves(batch)[0].shape[0]
  axes = population.PopulationAxes(axis=0, axis_name='data')
  for make in (
    optax_ext.aggregate_by_mean,
    lambda axes=None: privacy.aggregate_by_private_mean(0.1, 1.1, axes=axes),
  ):
    tx = make(axes=axes)
    local = jax.jit(
      jax.shard_map(
        lambda b, tx=tx: tx.update(
          population.ghost(loss, params, b), tx.init(params), params
        )[0],
        mesh=mesh,
        in_specs=P('data'),
        out_specs=P(),
      )
    )(big)
    ref = make()
    stacked = population.grad_population(loss, size * n)(params, big)[1]
    want = ref.update(stacked, ref.init(params), params)[0]
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
      local,
      want,
    )


def test_params_cast_before_their_contraction():
  """A bfloat16 compute of float32 params (a cast between the param and
  its contraction): the taps follow the cast."""
  _, params, batch = _mlp()

  def loss(p, b):
    w = p['l1']['w'].astype(jnp.bfloat16)
    h = jnp.tanh((b['x'].astype(jnp.bfloat16) @ w).astype(jnp.float32))
    out = h @ p['l2']['w'] + p['l2']['b'] + 0.0 * jnp.sum(p['l1']['b'])
    return jnp.mean((out - b['y']) ** 2)

  forced = population.ghost(loss, params, batch, K, mode='ghost')
  kinds = population.ghost_report(forced)
  assert kinds["['l1']['w']"] == 'ghost', kinds
  ghost, stacked = _ghost_and_stacked(
    alignment.aggregate_by_upgrad(), loss, params, batch, K, mode='ghost'
  )
  _close(ghost, stacked, 1e-2)  # bfloat16 products, summed differently


def _linen_mlp():
  linen = pytest.importorskip('flax.linen')

  class Mlp(linen.Module):
    @linen.compact
    def __call__(self, x):
      h = linen.LayerNorm()(jnp.tanh(linen.Dense(5)(x)))
      return linen.Dense(3)(h)

  _, _, batch = _mlp()
  model = Mlp()
  params = model.init(jax.random.key(2), batch['x'])

  def loss(p, b):
    return jnp.mean((model.apply(p, b['x']) - b['y']) ** 2)

  return loss, params, batch


def _equinox_mlp():
  eqx = pytest.importorskip('equinox')
  _, _, batch = _mlp()
  model = eqx.nn.MLP(6, 3, 5, 2, activation=jnp.tanh, key=jax.random.key(3))
  params, static = eqx.partition(model, eqx.is_array)

  def loss(p, b):
    out = jax.vmap(eqx.combine(p, static))(b['x'])
    return jnp.mean((out - b['y']) ** 2)

  return loss, params, batch


@pytest.mark.parametrize('mode', ['auto', 'ghost'])
@pytest.mark.parametrize(
  'make', [_linen_mlp, _equinox_mlp], ids=['linen', 'equinox']
)
def test_other_frameworks_need_no_changes(make, mode):
  """The taps read the loss's jaxpr: a Flax Linen model (``apply`` with a
  variables dict) and an Equinox model (``vmap`` over examples, weights
  ``[out, in]``) give the stacked population's update as they are."""
  loss, params, batch = make()
  forms = population.ghost_report(
    population.ghost(loss, params, batch, K, mode=mode)
  )
  weights = [form for leaf, form in forms.items() if 'bias' not in leaf]
  assert weights and all(f != 'fallback' for f in weights[:2]), forms
  if mode == 'ghost':
    assert 'ghost' in forms.values(), forms
  for tx in (robust.aggregate_by_krum(0), alignment.aggregate_by_upgrad()):
    ghost, stacked = _ghost_and_stacked(tx, loss, params, batch, K, mode=mode)
    _close(ghost, stacked, 1e-5)


@pytest.mark.parametrize('devices', [2, 4])
@pytest.mark.parametrize('entry', ENTRIES)
def test_every_rule_across_devices(entry, devices):
  """The members spread over the devices (``K / n`` on each): the update
  and every float leaf of the state equal the stacked run's; the Gramian
  rules see every pair of members across the devices."""
  loss, params, batch = _mlp()
  mesh = jax.make_mesh(
    (devices,),
    ('data',),
    axis_types=(AxisType.Auto,),
    devices=jax.devices()[:devices],
  )
  axes = population.PopulationAxes(axis=0, axis_name='data')
  overrides = OVERRIDES.get(entry.name, {})
  tx = entry.make(axes=axes, **overrides)
  if entry.kind == 'population':  # clip_each_*: then the mean
    tx = optax.chain(tx, optax_ext.aggregate_by_mean(axes=axes))
  extra = entry.extra_args(params)

  def local(b):
    # Every weight ghost (their rows gathered), the biases formed (their
    # per-member gradients through the stacked collectives).
    pop = population.ghost(loss, params, b, K // devices, mode='ghost')
    return tx.update(pop, tx.init(params), params, **extra)

  run = jax.jit(
    jax.shard_map(local, mesh=mesh, in_specs=P('data'), out_specs=P())
  )
  if entry.name in UNSUPPORTED:  # every member at a coordinate: stacked
    with pytest.raises(ValueError, match='grad_population'):
      run(batch)
    return
  got = run(batch)
  ref = entry.aggregator(**overrides)
  stacked = population.grad_population(loss, K)(params, batch)[1]
  want = ref.update(stacked, ref.init(params), params, **extra)
  _close(
    helpers.float_leaves(got),
    helpers.float_leaves(want),
    ACROSS_DEVICES_RTOL.get(entry.name, LOOSE.get(entry.name, 1e-5)),
  )


@pytest.mark.parametrize(
  'rule', ['upgrad', 'krum', 'centered_clipping', 'clip_then_krum']
)
@pytest.mark.parametrize('model', sorted(MODELS))
def test_models_across_devices(model, rule):
  """Per-example members, half of them on each of two devices."""
  loss, params, batch = MODELS[model]()
  size = jax.tree.leaves(batch)[0].shape[0]
  mesh = jax.make_mesh(
    (2,), ('data',), axis_types=(AxisType.Auto,), devices=jax.devices()[:2]
  )
  axes = population.PopulationAxes(axis=0, axis_name='data')
  tx, ref = RULES[rule](axes), RULES[rule]()

  def local(b):
    pop = population.ghost(loss, params, b)
    return tx.update(pop, tx.init(params), params)[0]

  got = jax.jit(
    jax.shard_map(local, mesh=mesh, in_specs=P('data'), out_specs=P())
  )(batch)
  stacked = population.grad_population(loss, size)(params, batch)[1]
  want = ref.update(stacked, ref.init(params), params)[0]
  _close(got, want, 2e-5)


def test_across_devices_communicates_rows_not_gradients():
  """The compiled cross-device ghost step (UPGrad, per-example members on 4
  devices) moves the members' activation and cotangent rows, the Gramian's
  row blocks and one all-reduce of the update: never the ``K x D``
  per-member gradients (here 32 D)."""
  devices, per_device, width = 4, 8, 64
  rng = np.random.default_rng(0)
  params = {
    'w1': jnp.asarray(rng.normal(size=(width, width)) / 8, jnp.float32),
    'w2': jnp.asarray(rng.normal(size=(width, 4)) / 8, jnp.float32),
  }
  k = devices * per_device
  batch = jnp.asarray(rng.normal(size=(k, width)), jnp.float32)

  def loss(p, x):
    return jnp.sum(jnp.tanh(jnp.tanh(x @ p['w1']) @ p['w2']) ** 2)

  mesh = jax.make_mesh(
    (devices,),
    ('data',),
    axis_types=(AxisType.Auto,),
    devices=jax.devices()[:devices],
  )
  tx = alignment.aggregate_by_upgrad(
    axes=population.PopulationAxes(axis=0, axis_name='data')
  )
  step = jax.jit(
    jax.shard_map(
      lambda x: tx.update(
        population.ghost(loss, params, x), tx.init(params), params
      )[0],
      mesh=mesh,
      in_specs=P('data'),
      out_specs=P(),
    )
  )
  compiled = step.lower(batch).compile()
  got = compiled(batch)
  ref = alignment.aggregate_by_upgrad()
  stacked = population.grad_population(loss, k)(params, batch)[1]
  _close(got, ref.update(stacked, ref.init(params), params)[0], 2e-5)
  scale = helpers.benchmark_module('scale')
  moved = sum(scale.collective_bytes(compiled.as_text()).values())
  d = sum(x.size for x in jax.tree.leaves(params))
  rows = k * (width + width) + k * (width + 4)  # x and d of each layer
  assert moved <= 4 * (d + rows + k * k + 4 * k) * 1.1, (moved, d)
  assert moved < 4 * k * d / 8
