"""The registry of every public factory, driving the shared test battery.

Each family adds its factories here when they land; ``test_public_api``
fails when a public factory is missing, so new methods are covered by the
battery (``test_battery.py``) automatically.

Kinds:

* ``'param'``: a param-shaped transform (``scale_by_*``, ``clip_by_*``) or an
  alias with ``learning_rate`` (``alias=True``);
* ``'aggregator'``: maps a gradient population to param-shaped updates; the
  battery feeds it ``population(grads)`` and chains an optax optimiser after
  it;
* ``'wrapper'``: takes an inner transform (``inner`` in ``kwargs``);
* ``'population'``: maps a population to a population (``clip_each_*``); the
  battery chains ``aggregate_by_mean`` and an optimiser after it.
"""

from collections.abc import Callable, Mapping
import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax

import optax_ext

NUM_MEMBERS = 4


def symmetric_population(grads, num_members: int = NUM_MEMBERS):
  """``K`` members whose mean *and* coordinate median equal ``grads``.

  Members are ``g + c_k * d`` with offsets ``c = (1, -1, 2, -2, ...)`` and a
  fixed direction ``d`` per leaf, so location estimators (mean, median,
  trimmed mean, geometric median of a symmetric set) return ``g`` exactly.
  """
  assert num_members % 2 == 0
  half = jnp.arange(1, num_members // 2 + 1)
  offsets = jnp.stack([half, -half], axis=1).reshape(-1)

  def one(g):
    acc = jnp.float64 if g.dtype == jnp.float64 else jnp.float32
    d = jnp.cos(jnp.arange(g.size, dtype=acc) + 1.0).reshape(g.shape)
    pop = g[None].astype(acc) + offsets.astype(acc).reshape(
      (-1,) + (1,) * g.ndim
    ) * (0.1 * d[None])
    return pop.astype(g.dtype)

  return jax.tree.map(one, grads)


def cosine_decay(init_value: float, steps: int):
  """A strict-promotion-clean cosine decay (optax's schedules are not)."""

  def schedule(count):
    frac = jnp.minimum(jnp.asarray(count, jnp.float32), steps) / steps
    return init_value * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))

  return schedule


def _heavy_ball(learning_rate: float) -> optax.GradientTransformation:
  return optax.sgd(learning_rate, momentum=0.9)


def _alternate_labels(params):
  leaves, treedef = jax.tree.flatten(params)
  names = ('even', 'odd')
  return jax.tree.unflatten(treedef, [names[i % 2] for i in range(len(leaves))])


@dataclasses.dataclass(frozen=True)
class Properties:
  """What an aggregator promises; the tests select their cases from it.

  Attributes:
    robust: tolerates a minority of arbitrary members (NaN, Inf, huge,
      adversarial): ``test_faults`` holds it to a bounded output.
    clip_threshold: for clipping rules, the name of the threshold argument
      (a finite member, however large, is clipped, so it counts).
    lean: accepts a memory-lean ``population.microbatches`` (``False`` for
      rules that need every member at a coordinate): ``test_lean``.
    multitask: for multi-task rules, TorchJD's property table: (non-
      conflicting, linear under scaling, permutation-invariant, degree
      ``p`` of positive homogeneity ``u(cJ) = c^p u(J)``): ``test_multitask``
      and ``test_properties``.
  """

  robust: bool
  clip_threshold: str | None = None
  lean: bool = True
  multitask: tuple[bool, bool, bool, int] | None = None


@dataclasses.dataclass(frozen=True)
class Entry:
  """One public factory and how the battery exercises it.

  Attributes:
    name: the public name (``optax_ext.<module>.<name>``).
    factory: the callable.
    kwargs: keyword arguments for a typical instance.
    kind: ``'param'``, ``'aggregator'``, ``'wrapper'`` or ``'population'``
      (see the module docstring).
    alias: whether the factory takes ``learning_rate`` (an optimiser).
    hyperparams: the kwargs ``optax.inject_hyperparams`` must expose.
    lr: learning rate (or schedule) for the parabola test.
    rosenbrock: ``(learning_rate or schedule, steps)`` for the Rosenbrock
      test, from ``(-1, 1.5)`` to within ``2e-2`` of ``(1, 1)``.
    population: for aggregators, ``grads -> population``.
    extra_args: ``grads -> dict`` of extra arguments ``update`` needs.
    strict_promotion: ``False`` for factories that chain optax pieces that
      are not strict-promotion clean (``scale_by_adam``); the battery then
      runs them under standard promotion (see ``conftest.py``).
    optimizer_fn: for wrappers whose learning rate lives in ``inner``,
      ``lr -> full optimiser``.
    inject_rtol: tolerance of the ``inject_hyperparams`` equivalence (float32
      hyper-parameters round differently from Python floats).
    static_args: arguments ``optax.inject_hyperparams`` must not inject
      (callables other than schedules, as users pass them).
    properties: for aggregators and population transforms, what they
      promise (:class:`Properties`; required for those kinds,
      ``test_public_api`` checks it).
    layouts: whether the aggregator takes every population layout (named
      axes, lean microbatches) and owns the population checks; ``False``
      for a wrapper of task populations (``aggregate_shared_trunk``), whose
      inner aggregator is tested on those itself.
    post: the optimiser chained after a non-alias transform, given an lr;
      default: heavy-ball SGD after aggregators (strict-promotion clean,
      unlike optax.adam), ``scale_by_learning_rate`` after param transforms.
  """

  name: str
  factory: Callable[..., optax.GradientTransformation]
  kwargs: Mapping[str, Any]
  kind: Literal['param', 'aggregator', 'wrapper', 'population']
  alias: bool = False
  hyperparams: tuple[str, ...] = ()
  lr: float = 0.1
  rosenbrock: tuple[float, int] = (0.01, 5000)
  population: Callable[[Any], Any] = symmetric_population
  extra_args: Callable[[Any], dict[str, Any]] = lambda grads: {}
  strict_promotion: bool = True
  optimizer_fn: Callable[[float], optax.GradientTransformation] | None = None
  inject_rtol: float = 2e-5
  post: Callable[[float], optax.GradientTransformation] | None = None
  static_args: tuple[str, ...] = ()
  layouts: bool = True
  properties: Properties | None = None

  def make(self, **overrides) -> optax.GradientTransformation:
    """The transform itself, as a user would build it."""
    return self.factory(**{**self.kwargs, **overrides})

  def optimizer(self, learning_rate: float) -> optax.GradientTransformation:
    """A full optimiser (updates are added to params) around the transform."""
    if self.optimizer_fn is not None:
      return self.optimizer_fn(learning_rate)
    if self.alias:
      return self.make(learning_rate=learning_rate)
    post = self.post
    if post is None:
      post = (
        _heavy_ball
        if self.kind in ('aggregator', 'population')
        else optax.scale_by_learning_rate
      )
    if self.kind == 'population':
      return optax.chain(
        self.make(), optax_ext.aggregate_by_mean(), post(learning_rate)
      )
    return optax.chain(self.make(), post(learning_rate))

  def aggregator(self, **overrides) -> optax.GradientTransformation:
    """For population entries: population -> param-shaped updates.

    The transform itself for aggregators; followed by ``aggregate_by_mean``
    for population -> population transforms (``clip_each_*``).
    """
    tx = self.make(**overrides)
    if self.kind == 'population':
      return optax.chain(tx, optax_ext.aggregate_by_mean())
    return tx

  @property
  def takes_population(self) -> bool:
    return self.kind in ('aggregator', 'population')

  def oracle_input(self, grads):
    """What the transform's ``update`` receives for param-shaped ``grads``."""
    return self.population(grads) if self.takes_population else grads


REGISTRY: tuple[Entry, ...] = (
  Entry(
    name='aggregate_by_mean',
    factory=optax_ext.aggregate_by_mean,
    kwargs={},
    kind='aggregator',
    properties=Properties(robust=False, multitask=(False, True, True, 1)),
    rosenbrock=(1e-3, 5000),
  ),
  Entry(
    name='aggregate_by_sum',
    factory=optax_ext.aggregate_by_sum,
    kwargs={},
    kind='aggregator',
    properties=Properties(robust=False, multitask=(False, True, True, 1)),
    lr=0.1 / NUM_MEMBERS,
    rosenbrock=(1e-3 / NUM_MEMBERS, 5000),
  ),
)


def _group_grads(grads):
  return {'group_grads': symmetric_population(grads)}


_VR_LR = 0.02  # the GSNR factor can reach 10x: keep 10 * lr * curvature < 2

REGISTRY += (
  Entry(
    name='scale_by_gsnr',
    factory=optax_ext.variance.scale_by_gsnr,
    kwargs={'ema_decay': 0.5},
    kind='param',
    hyperparams=('gamma_min', 'gamma_max', 'cap', 'ema_decay'),
    lr=_VR_LR,
    rosenbrock=(2e-4, 20000),
    extra_args=_group_grads,
    post=_heavy_ball,
  ),
  Entry(
    name='aggregate_by_gsnr',
    factory=optax_ext.variance.aggregate_by_gsnr,
    kwargs={},
    kind='aggregator',
    properties=Properties(robust=False),
    hyperparams=('gamma_min', 'gamma_max', 'cap'),
    lr=_VR_LR,
    rosenbrock=(1e-4, 20000),
  ),
  Entry(
    name='aggregate_shared_trunk',
    factory=optax_ext.alignment.aggregate_shared_trunk,
    # Every leaf shared: the battery's populations are all task rows (the
    # mixed trunk/head tree is tested in test_shared_trunk.py).
    kwargs={
      'aggregator': optax_ext.aggregate_by_mean(),
      'shared': lambda params: jax.tree.map(lambda _: True, params),
    },
    kind='aggregator',
    properties=Properties(robust=False),
    static_args=('aggregator', 'shared'),
    layouts=False,
    rosenbrock=(1e-3, 5000),
  ),
  Entry(
    name='aggregate_by_private_mean',
    factory=optax_ext.privacy.aggregate_by_private_mean,
    # No noise and a clip above every member: the battery's convergence
    # tests see the mean (test_privacy covers the noise and the clipping).
    kwargs={'l2_norm_clip': 1e3, 'noise_multiplier': 0.0},
    kind='aggregator',
    properties=Properties(robust=True, clip_threshold='l2_norm_clip'),
    hyperparams=('l2_norm_clip', 'noise_multiplier'),
    static_args=('seed', 'per_layer'),
    rosenbrock=(1e-3, 5000),
  ),
  Entry(
    name='aggregate_by_mean_with_batch_size_tests',
    factory=optax_ext.variance.aggregate_by_mean_with_batch_size_tests,
    kwargs={'eta': 0.5, 'theta': 0.5, 'nu': 1.0},
    kind='aggregator',
    properties=Properties(robust=False),
    hyperparams=('eta', 'theta', 'nu'),
    rosenbrock=(1e-3, 5000),  # the mean, as aggregate_by_mean
  ),
  Entry(
    name='aggregate_by_mean_with_noise_scale',
    factory=optax_ext.variance.aggregate_by_mean_with_noise_scale,
    kwargs={'ema_decay': 0.9},
    kind='aggregator',
    properties=Properties(robust=False),
    hyperparams=('ema_decay',),
    rosenbrock=(1e-3, 5000),  # the mean, as aggregate_by_mean
  ),
  Entry(
    name='agvm',
    factory=optax_ext.variance.agvm,
    # Alternate leaves in two modules; refreshed every step from step 0 so
    # the battery sees the factors move.
    kwargs={
      'inner': optax.identity(),
      'module_labels': _alternate_labels,
      'reference_module': 'even',
      'update_interval': 1,
      'start_step': 0,
    },
    kind='aggregator',
    properties=Properties(robust=False),
    hyperparams=('momentum', 'min_factor', 'max_factor'),
    static_args=('inner', 'module_labels'),
    rosenbrock=(1e-3, 5000),
  ),
  Entry(
    name='vr_sgd',
    factory=optax_ext.variance.vr_sgd,
    kwargs={'learning_rate': 0.01, 'momentum': 0.9},
    kind='aggregator',
    properties=Properties(robust=False),
    alias=True,
    hyperparams=('learning_rate', 'momentum', 'gamma_min'),
    lr=_VR_LR / 10,
    rosenbrock=(1e-4, 20000),
  ),
  Entry(
    name='vr_adam',
    factory=optax_ext.variance.vr_adam,
    kwargs={'learning_rate': 0.01},
    kind='aggregator',
    properties=Properties(robust=False),
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'eps'),
    lr=0.01,
    rosenbrock=(3e-3, 10000),
    strict_promotion=False,
  ),
  Entry(
    name='vr_lamb',
    factory=optax_ext.variance.vr_lamb,
    kwargs={'learning_rate': 0.01},
    kind='aggregator',
    properties=Properties(robust=False),
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'weight_decay'),
    lr=0.01,
    # Trust-ratio steps have near-fixed length: decay the rate to settle.
    rosenbrock=(cosine_decay(1e-2, 10000), 10000),
    strict_promotion=False,
  ),
  Entry(
    name='vr_lars',
    factory=optax_ext.variance.vr_lars,
    kwargs={'learning_rate': 1.0},
    kind='aggregator',
    properties=Properties(robust=False),
    alias=True,
    hyperparams=('learning_rate', 'momentum', 'trust_coefficient'),
    lr=1.0,
    rosenbrock=(cosine_decay(1.0, 10000), 10000),
  ),
)


_M = optax_ext.momentum

REGISTRY += (
  Entry(
    name='scale_by_momentum_mixture',
    factory=_M.scale_by_momentum_mixture,
    kwargs={
      'decays': (0.5, 0.9),
      'coefficients': (0.5, 0.4),
      'grad_coefficient': 0.1,
    },
    kind='param',
    hyperparams=('grad_coefficient',),
    rosenbrock=(3e-3, 20000),
  ),
  Entry(
    name='momentum_mixture',
    factory=_M.momentum_mixture,
    kwargs={
      'learning_rate': 0.1,
      'decays': (0.0, 0.9),
      'coefficients': (0.5, 0.5),
    },
    kind='param',
    alias=True,
    hyperparams=('learning_rate', 'grad_coefficient', 'weight_decay'),
    rosenbrock=(3e-3, 20000),
  ),
  Entry(
    name='scale_by_qhm',
    factory=_M.scale_by_qhm,
    kwargs={'decay': 0.9, 'nu': 0.7},
    kind='param',
    hyperparams=('decay', 'nu'),
    rosenbrock=(3e-3, 20000),
  ),
  Entry(
    name='qhm',
    factory=_M.qhm,
    kwargs={'learning_rate': 0.1, 'decay': 0.9},
    kind='param',
    alias=True,
    hyperparams=('learning_rate', 'decay', 'nu', 'weight_decay'),
    rosenbrock=(3e-3, 20000),
  ),
  Entry(
    name='scale_by_qhadam',
    factory=_M.scale_by_qhadam,
    kwargs={},
    kind='param',
    hyperparams=('b1', 'b2', 'nu1', 'nu2', 'eps'),
    lr=0.05,
  ),
  Entry(
    name='qhadam',
    factory=_M.qhadam,
    kwargs={'learning_rate': 0.05},
    kind='param',
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'nu1', 'nu2'),
    lr=0.05,
  ),
  Entry(
    name='scale_by_aggmo',
    factory=_M.scale_by_aggmo,
    kwargs={'decays': (0.0, 0.5, 0.9)},
    kind='param',
    lr=0.02,
    rosenbrock=(1e-3, 20000),
  ),
  Entry(
    name='aggmo',
    factory=_M.aggmo,
    kwargs={'learning_rate': 0.02, 'decays': (0.0, 0.5, 0.9)},
    kind='param',
    alias=True,
    hyperparams=('learning_rate', 'weight_decay'),
    lr=0.02,
    rosenbrock=(1e-3, 20000),
  ),
  Entry(
    name='ademamix_with_warmup',
    factory=_M.ademamix_with_warmup,
    kwargs={
      'learning_rate': 0.05,
      'alpha_warmup_steps': 100,
      'beta3_warmup_steps': 100,
      'b3': 0.99,  # a 500-step parabola: shorter slow memory, no ringing
    },
    kind='param',
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'eps', 'alpha'),
    lr=0.05,
    strict_promotion=False,
    rosenbrock=(1e-3, 20000),
  ),
  Entry(
    name='scale_by_grams',
    factory=_M.scale_by_grams,
    kwargs={},
    kind='param',
    hyperparams=('b1', 'b2', 'eps'),
    lr=0.05,
  ),
  Entry(
    name='grams',
    factory=_M.grams,
    kwargs={'learning_rate': 0.05},
    kind='param',
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'weight_decay'),
    lr=0.05,
  ),
  Entry(
    name='scale_by_mars',
    factory=_M.scale_by_mars,
    kwargs={},
    kind='param',
    hyperparams=('b1', 'b2', 'gamma', 'eps'),
    lr=0.05,
  ),
  Entry(
    name='mars',
    factory=_M.mars,
    kwargs={'learning_rate': 0.05},
    kind='param',
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'gamma', 'weight_decay'),
    lr=0.05,
    strict_promotion=False,
    rosenbrock=(cosine_decay(0.05, 20000), 20000),
  ),
)


def _cluster_extras(grads):
  return {
    'cluster_grads': symmetric_population(grads),
    'cluster_counts': jnp.array([2, 1, 1, 3]),
  }


REGISTRY += (
  Entry(
    name='igt',
    factory=_M.igt,
    kwargs={'inner': optax.sgd(0.05)},
    kind='wrapper',
    hyperparams=('delta',),
    optimizer_fn=lambda lr: _M.igt(optax.sgd(lr)),
    lr=0.05,
    rosenbrock=(1e-3, 20000),
  ),
  Entry(
    name='igt_sgd',
    factory=_M.igt_sgd,
    kwargs={'learning_rate': 0.05},
    kind='wrapper',
    alias=True,
    hyperparams=('learning_rate', 'momentum', 'delta'),
    lr=0.05,
    rosenbrock=(1e-3, 20000),
  ),
  Entry(
    name='igt_adam',
    factory=_M.igt_adam,
    # With delta = 1, IGT-Adam diverges on Rosenbrock (Adam's near-constant
    # step times the n + 1 extrapolation: the spec's pitfall); delta = 100
    # slows the extrapolation.
    kwargs={'learning_rate': 0.01, 'delta': 100.0},
    kind='wrapper',
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'eps', 'delta'),
    # Adam's steps do not vanish at a constant rate and IGT extrapolates by
    # n + 1: decay the rate. Rounding is amplified the same way.
    lr=cosine_decay(0.05, 500),
    inject_rtol=1e-4,
    rosenbrock=(cosine_decay(3e-3, 20000), 20000),
    strict_promotion=False,
  ),
  Entry(
    name='scale_by_cluster_momentum',
    factory=_M.scale_by_cluster_momentum,
    kwargs={'num_clusters': NUM_MEMBERS, 'decay': 0.5, 'nu': 0.7},
    kind='param',
    hyperparams=('decay', 'nu'),
    static_args=('num_clusters',),  # a shape
    extra_args=_cluster_extras,
    rosenbrock=(3e-3, 20000),
  ),
)

REGISTRY += (
  Entry(
    name='cluster_igt',
    factory=_M.cluster_igt,
    kwargs={'inner': optax.sgd(0.05), 'num_clusters': NUM_MEMBERS},
    kind='wrapper',
    hyperparams=('delta',),
    static_args=('num_clusters',),  # a shape
    optimizer_fn=lambda lr: _M.cluster_igt(optax.sgd(lr), NUM_MEMBERS),
    extra_args=_cluster_extras,
    lr=0.05,
    rosenbrock=(1e-3, 20000),
  ),
)

_R = optax_ext.robust

REGISTRY += (
  Entry(
    name='aggregate_by_coordinate_median',
    factory=_R.aggregate_by_coordinate_median,
    kwargs={},
    kind='aggregator',
    properties=Properties(robust=True, lean=False),
    rosenbrock=(1e-3, 5000),
  ),
  Entry(
    name='aggregate_by_trimmed_mean',
    factory=_R.aggregate_by_trimmed_mean,
    kwargs={'num_trim': 1},
    kind='aggregator',
    properties=Properties(robust=True, lean=False),
    rosenbrock=(1e-3, 5000),
  ),
  Entry(
    # Plumbing only (K = 4 allows f = 0, K > 2f + 2): multi-Krum over all
    # members is their mean; Krum's selection is tested in test_robust.py.
    name='aggregate_by_krum',
    factory=_R.aggregate_by_krum,
    kwargs={'num_byzantine': 0, 'num_selected': NUM_MEMBERS},
    kind='aggregator',
    properties=Properties(robust=False),
    rosenbrock=(1e-3, 5000),
  ),
  Entry(
    name='aggregate_by_geometric_median',
    factory=_R.aggregate_by_geometric_median,
    kwargs={'maxiter': 10},
    kind='aggregator',
    properties=Properties(robust=True),
    hyperparams=('nu', 'ftol'),
    rosenbrock=(1e-3, 5000),
  ),
  Entry(
    # f = 2 of 4 with the median pivot: the two nearest are g +- d.
    name='aggregate_by_nearest_neighbours',
    factory=_R.aggregate_by_nearest_neighbours,
    kwargs={'num_byzantine': 2},
    kind='aggregator',
    properties=Properties(robust=True, lean=False),
    rosenbrock=(1e-3, 5000),
  ),
  Entry(
    # Plumbing: a radius that never clips here (Rosenbrock's gradients reach
    # ~1e3; a clipped, lagging aggregate + heavy ball diverges on it).
    name='aggregate_by_centered_clipping',
    factory=_R.aggregate_by_centered_clipping,
    kwargs={'threshold': 1e5},
    kind='aggregator',
    properties=Properties(robust=True, clip_threshold='threshold'),
    hyperparams=('threshold',),
    rosenbrock=(1e-3, 5000),
  ),
  Entry(
    name='mix_by_nearest_neighbours',
    factory=_R.mix_by_nearest_neighbours,
    kwargs={'num_byzantine': 1},
    kind='population',
    properties=Properties(robust=False, lean=False),
    rosenbrock=(1e-3, 5000),
  ),
  Entry(
    name='clip_each_by_global_norm',
    factory=_R.clip_each_by_global_norm,
    kwargs={'max_norm': 100.0},
    kind='population',
    properties=Properties(robust=True, clip_threshold='max_norm'),
    hyperparams=('max_norm',),
    rosenbrock=(1e-3, 5000),
  ),
)

REGISTRY += (
  Entry(
    # A threshold below Rosenbrock's gradient scale (~1e3) makes the
    # tracked median lag, and a lagging direction with heavy-ball momentum
    # diverges there (measured); 1e3 converges.
    name='scale_by_median_tracking',
    factory=_R.scale_by_median_tracking,
    kwargs={'threshold': 1e3},
    kind='param',
    hyperparams=('threshold', 'damping'),
    post=_heavy_ball,
    rosenbrock=(1e-3, 20000),
  ),
  Entry(
    name='median_tracking',
    factory=_R.median_tracking,
    kwargs={'learning_rate': 0.1, 'threshold': 1e3},
    kind='param',
    alias=True,
    hyperparams=('learning_rate', 'threshold'),
    rosenbrock=(1e-3, 20000),
  ),
  Entry(
    name='clip_by_norm_percentile',
    factory=_R.clip_by_norm_percentile,
    kwargs={'percentile': 90.0, 'history_size': 16},
    kind='param',
    post=_heavy_ball,
    rosenbrock=(1e-3, 20000),
  ),
)

_L = optax_ext.lookahead

REGISTRY += (
  Entry(
    name='cautious',
    factory=optax_ext.momentum.cautious,
    kwargs={'inner': _heavy_ball(0.05)},
    kind='wrapper',
    optimizer_fn=lambda lr: optax_ext.momentum.cautious(_heavy_ball(lr)),
    lr=0.05,
    rosenbrock=(1e-3, 20000),
  ),
  Entry(
    name='lookahead',
    factory=_L.lookahead,
    kwargs={'inner': _heavy_ball(0.05), 'sync_period': 3},
    kind='wrapper',
    hyperparams=('sync_period', 'slow_step_size'),
    optimizer_fn=lambda lr: _L.lookahead(_heavy_ball(lr), 3),
    lr=0.05,
    rosenbrock=(1e-3, 20000),
  ),
  Entry(
    name='multilayer_lookahead',
    factory=_L.multilayer_lookahead,
    kwargs={'inner': _heavy_ball(0.05), 'sync_periods': (2, 3)},
    kind='wrapper',
    optimizer_fn=lambda lr: _L.multilayer_lookahead(_heavy_ball(lr), (2, 3)),
    lr=0.05,
    rosenbrock=(1e-3, 20000),
  ),
)

_P = optax_ext.pruning


REGISTRY += (
  Entry(
    # The battery differentiates at the dense params, so DPF acts as its
    # inner optimiser there; its own behaviour is in tests/pruning/test_dpf.py.
    name='dpf',
    factory=_P.dpf,
    kwargs={
      'inner': _heavy_ball(0.05),
      'sparsity': 0.5,
      'update_every': 2,
      'prunable': {'w': True, 'b': True},  # the battery's params
    },
    kind='wrapper',
    hyperparams=('sparsity', 'update_every'),
    optimizer_fn=lambda lr: _P.dpf(
      _heavy_ball(lr), 0.5, prunable=lambda path, leaf: leaf.ndim >= 1
    ),
    lr=0.05,
    rosenbrock=(1e-3, 20000),
  ),
)

_A = optax_ext.alignment


def aligned_population(grads, scales=(0.5, 1.0, 1.5, 2.0)):
  """Members ``a_k * g`` (no conflicts): every multi-task rule descends.

  With conflicting members (``symmetric_population``) rules such as MGDA
  stop wherever the members' convex hull contains zero, short of the
  optimum, which is their purpose, not a defect.
  """

  def one(g):
    acc = jnp.float64 if g.dtype == jnp.float64 else jnp.float32
    a = jnp.asarray(scales, acc)
    return (a.reshape((-1,) + (1,) * g.ndim) * g[None].astype(acc)).astype(
      g.dtype
    )

  return jax.tree.map(one, grads)


def _mtl(
  name, factory, kwargs=None, *, multitask=None, lean=True, **entry_kwargs
):
  defaults = {
    'kind': 'aggregator',
    'population': aligned_population,
    'rosenbrock': (1e-3, 20000),
    'properties': Properties(robust=False, lean=lean, multitask=multitask),
  }
  return Entry(
    name=name,
    factory=factory,
    kwargs=kwargs or {},
    **{**defaults, **entry_kwargs},
  )


REGISTRY += (
  _mtl(
    'aggregate_by_weighting',
    _A.aggregate_by_weighting,
    {'weighting': _A.mean_weighting},
    static_args=('weighting',),
  ),
  _mtl(
    'aggregate_by_constant',
    _A.aggregate_by_constant,
    {'weights': jnp.array([0.1, 0.2, 0.3, 0.4])},
  ),
  _mtl('aggregate_by_random', _A.aggregate_by_random, {'key': 3}),
  _mtl(
    'aggregate_by_upgrad',
    _A.aggregate_by_upgrad,
    multitask=(True, True, True, 1),
    hyperparams=('norm_eps', 'reg_eps'),
  ),
  _mtl(
    'aggregate_by_dualproj',
    _A.aggregate_by_dualproj,
    multitask=(True, False, True, 1),
    hyperparams=('norm_eps', 'reg_eps'),
  ),
  _mtl(
    'aggregate_by_mgda',
    _A.aggregate_by_mgda,
    multitask=(True, False, True, 1),
    hyperparams=('max_iters', 'epsilon'),
  ),
  _mtl(
    'aggregate_by_pcgrad',
    _A.aggregate_by_pcgrad,
    multitask=(False, True, False, 1),
    hyperparams=('eps',),
    lr=0.05,
    rosenbrock=(2e-4, 20000),  # the sum convention: 5x the mean here
  ),
  _mtl(
    'aggregate_by_cagrad',
    _A.aggregate_by_cagrad,
    multitask=(False, False, True, 1),
    hyperparams=('c', 'norm_eps'),
    static_args=('rescale',),  # a bool switch
  ),
  _mtl(
    'aggregate_by_aligned_mtl',
    _A.aggregate_by_aligned_mtl,
    multitask=(False, False, True, 1),
  ),
  _mtl(
    'aggregate_by_imtl_g',
    _A.aggregate_by_imtl_g,
    multitask=(False, False, True, 1),
  ),
  _mtl(
    'aggregate_by_config',
    _A.aggregate_by_config,
    multitask=(False, True, True, 1),
    lr=0.05,
    rosenbrock=(2e-4, 20000),  # sum of projections: 5x the mean here
  ),
  _mtl(
    'aggregate_by_gradvac',
    _A.aggregate_by_gradvac,
    {'num_tasks': NUM_MEMBERS},
    hyperparams=('beta', 'eps'),
    lr=0.05,
    rosenbrock=(2e-4, 20000),  # the sum convention
  ),
  _mtl(
    'aggregate_by_graddrop',
    _A.aggregate_by_graddrop,
    {'key': 2},
    lean=False,
    hyperparams=('eps',),
    lr=0.05,
    rosenbrock=(2e-4, 20000),  # members of one sign are all kept: a sum
  ),
  _mtl(
    # Nash-MTL's update has norm sqrt(K) (clipped to max_norm) whatever the
    # gradient's size: a normalised method, so the rate must decay.
    'aggregate_by_nash_mtl',
    _A.aggregate_by_nash_mtl,
    multitask=(True, False, True, 0),
    hyperparams=('max_norm', 'norm_eps'),
    lr=cosine_decay(0.05, 500),
    rosenbrock=(cosine_decay(3e-3, 20000), 20000),
  ),
)


def _bloop_extras(grads):
  # An auxiliary gradient that vanishes with the main one, so the parabola
  # and Rosenbrock optima are unchanged.
  return {'aux_grads': jax.tree.map(lambda g: 0.5 * jnp.flip(g), grads)}


REGISTRY += (
  Entry(
    name='bloop',
    factory=_A.bloop,
    kwargs={},
    kind='param',
    hyperparams=('aux_weight', 'ema_decay', 'eps'),
    extra_args=_bloop_extras,
    post=_heavy_ball,
    rosenbrock=(1e-3, 20000),
  ),
)


def _prograd_extras(grads):
  # A general direction that vanishes with the gradient and never conflicts
  # with it (a persistent conflict is a constraint and moves the optimum):
  # the battery checks the plumbing, test_prograd.py the projections.
  return {'general_grads': jax.tree.map(lambda g: g + 0.5 * jnp.flip(g), grads)}


REGISTRY += (
  Entry(
    name='prograd',
    factory=_A.prograd,
    kwargs={},
    kind='param',
    hyperparams=('projection_strength',),
    extra_args=_prograd_extras,
    post=_heavy_ball,
    rosenbrock=(1e-3, 20000),
  ),
)

_AD = optax_ext.adaptive


def _trace(decay: float = 0.9) -> optax.GradientTransformation:
  return optax.trace(decay)


# Adaptive step sizes (issue 13) and the momentum methods that came with it.
REGISTRY += (
  Entry(
    name='scale_by_diffgrad',
    factory=_AD.scale_by_diffgrad,
    kwargs={},
    kind='param',
    hyperparams=('b1', 'b2', 'eps'),
    lr=0.05,
  ),
  Entry(
    name='diffgrad',
    factory=_AD.diffgrad,
    kwargs={'learning_rate': 0.05},
    kind='param',
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'eps', 'weight_decay'),
    lr=0.05,
  ),
  Entry(
    name='scale_by_adamp',
    factory=_AD.scale_by_adamp,
    kwargs={'weight_decay': 1e-3},
    kind='param',
    hyperparams=('b1', 'b2', 'eps', 'weight_decay', 'delta', 'wd_ratio'),
    static_args=('nesterov', 'channel_axis'),
    lr=0.05,
    # Decoupled decay moves the optimum by lr * lambda * theta / step.
    rosenbrock=(cosine_decay(0.01, 20000), 20000),
  ),
  Entry(
    name='adamp',
    factory=_AD.adamp,
    kwargs={'learning_rate': 0.05, 'nesterov': True},
    kind='param',
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'eps', 'delta', 'wd_ratio'),
    static_args=('nesterov', 'channel_axis'),
    lr=0.05,
  ),
  Entry(
    name='scale_by_sgdp',
    factory=_AD.scale_by_sgdp,
    kwargs={'momentum': 0.9, 'nesterov': True},
    kind='param',
    hyperparams=('momentum', 'dampening', 'weight_decay', 'delta'),
    static_args=('nesterov', 'channel_axis'),
    rosenbrock=(1e-3, 20000),
  ),
  Entry(
    name='sgdp',
    factory=_AD.sgdp,
    kwargs={'learning_rate': 0.1, 'momentum': 0.9},
    kind='param',
    alias=True,
    hyperparams=('learning_rate', 'momentum', 'weight_decay', 'wd_ratio'),
    static_args=('nesterov', 'channel_axis'),
    rosenbrock=(1e-3, 20000),
  ),
  Entry(
    name='scale_by_sgd_sai',
    factory=_AD.scale_by_sgd_sai,
    kwargs={},
    kind='param',
    hyperparams=('momentum', 'eps'),
    rosenbrock=(1e-3, 20000),
  ),
  Entry(
    name='sgd_sai',
    factory=_AD.sgd_sai,
    kwargs={'learning_rate': 0.1, 'weight_decay': 0.0},
    kind='param',
    alias=True,
    hyperparams=('learning_rate', 'momentum', 'eps', 'weight_decay'),
    rosenbrock=(1e-3, 20000),
  ),
  Entry(
    name='scale_by_gravity',
    factory=_AD.scale_by_gravity,
    kwargs={'init_std': 0.01},
    kind='param',
    hyperparams=('init_std', 'beta'),
    static_args=('seed',),
    # Gravity's step falls like 1/|g|^3 for |g| >> 1 (zeta = g / (1 +
    # (g max|g|)^2)): it is made for small gradients, so the battery scales
    # the losses by 1e-2 and the rate up by 100.
    optimizer_fn=lambda lr: optax.chain(
      optax.scale(1e-2),
      _AD.scale_by_gravity(init_std=1e-4),
      optax.scale_by_learning_rate(lr),
    ),
    lr=20.0,
    rosenbrock=(0.1, 20000),
  ),
  Entry(
    name='gravity',
    factory=_AD.gravity,
    kwargs={'learning_rate': 0.1},
    kind='param',
    alias=True,
    hyperparams=('learning_rate', 'alpha', 'beta'),
    static_args=('seed',),
    optimizer_fn=lambda lr: optax.chain(optax.scale(1e-2), _AD.gravity(lr)),
    lr=20.0,
    rosenbrock=(0.1, 20000),
  ),
  Entry(
    name='scale_by_pnm',
    factory=_M.scale_by_pnm,
    kwargs={},
    kind='param',
    hyperparams=('b1', 'b0'),
    rosenbrock=(cosine_decay(2e-3, 30000), 30000),
  ),
  Entry(
    name='pnm',
    factory=_M.pnm,
    kwargs={'learning_rate': 0.1},
    kind='param',
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b0', 'weight_decay'),
    rosenbrock=(cosine_decay(2e-3, 30000), 30000),
  ),
  Entry(
    name='scale_by_adapnm',
    factory=_M.scale_by_adapnm,
    kwargs={},
    kind='param',
    hyperparams=('b1', 'b2', 'b0', 'eps'),
    static_args=('amsgrad', 'softplus_beta'),
    # The PN direction of a constant gradient is g / sqrt(5): a slow Adam.
    lr=cosine_decay(0.1, 500),
    rosenbrock=(cosine_decay(3e-2, 30000), 30000),
  ),
  Entry(
    name='adapnm',
    factory=_M.adapnm,
    kwargs={'learning_rate': 0.05, 'amsgrad': False},
    kind='param',
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'b0', 'weight_decay'),
    static_args=('amsgrad',),
    lr=cosine_decay(0.1, 500),
    rosenbrock=(cosine_decay(3e-2, 30000), 30000),
  ),
  Entry(
    name='ranger21',
    factory=_M.ranger21,
    # The battery's optima are not at unit norm and gradient centralisation
    # keeps the column means of a matrix fixed: no norm loss, no decay, no
    # centralisation here (each is tested on its own); the parabola runs 500
    # steps.
    kwargs={
      'learning_rate': 0.05,
      'num_iterations': 500,
      'weight_decay': 0.0,
      'norm_loss_factor': 0.0,
      'centralize': False,
    },
    kind='param',
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'b0', 'agc_clipping'),
    static_args=(
      'num_iterations',
      'softplus_beta',
      'amsgrad',
      'centralize',
      'normalize',
      'lookahead_sync_period',
      'channel_axis',
    ),
    lr=0.1,
    inject_rtol=1e-4,
    rosenbrock=(cosine_decay(3e-2, 20000), 20000),
  ),
  Entry(
    name='xgrad',
    factory=_M.xgrad,
    kwargs={'direction': _trace(), 'learning_rate': 0.02},
    kind='wrapper',
    hyperparams=('learning_rate', 'steps_ahead'),
    optimizer_fn=lambda lr: _M.xgrad(_trace(), lr),
    lr=0.02,
    rosenbrock=(5e-4, 20000),
  ),
  Entry(
    name='xgrad_sgd',
    factory=_M.xgrad_sgd,
    kwargs={'learning_rate': 0.02},
    kind='wrapper',
    alias=True,
    hyperparams=('learning_rate', 'steps_ahead', 'weight_decay'),
    lr=0.02,
    rosenbrock=(5e-4, 20000),
  ),
  Entry(
    name='xgrad_adam',
    factory=_M.xgrad_adam,
    kwargs={'learning_rate': 0.05},
    kind='wrapper',
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'eps', 'steps_ahead'),
    lr=cosine_decay(0.05, 500),
    strict_promotion=False,
    inject_rtol=1e-4,
    rosenbrock=(cosine_decay(3e-3, 20000), 20000),
  ),
  Entry(
    name='xgrad_adamw',
    factory=_M.xgrad_adamw,
    kwargs={'learning_rate': 0.05, 'weight_decay': 0.0},
    kind='wrapper',
    alias=True,
    hyperparams=('learning_rate', 'b1', 'weight_decay', 'steps_ahead'),
    lr=cosine_decay(0.05, 500),
    strict_promotion=False,
    inject_rtol=1e-4,
    rosenbrock=(cosine_decay(3e-3, 20000), 20000),
  ),
)

BY_NAME = {e.name: e for e in REGISTRY}


def with_property(predicate) -> dict[str, Entry]:
  """The entries whose properties satisfy ``predicate``, by name."""
  return {
    e.name: e
    for e in REGISTRY
    if e.properties is not None and predicate(e.properties)
  }
