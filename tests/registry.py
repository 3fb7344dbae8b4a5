"""The registry of every public factory, driving the shared test battery.

Derived from the declarations beside each method
(``@metadata.describe(case=metadata.Case(...), properties=...)`` in
``optax_ext/<family>/_<method>.py``): a new factory joins the battery
(``test_battery.py``) by declaring its case; ``test_public_api`` fails,
naming what to add, when a public factory declares none. This module only
adds the battery's populations and extra arguments, which the cases name
(``HOOKS``).

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
from optax_ext._src import metadata

NUM_MEMBERS = metadata.BATTERY_MEMBERS
Properties = metadata.Properties
cosine_decay = metadata.cosine_decay


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


def _heavy_ball(learning_rate: float) -> optax.GradientTransformation:
  return optax.sgd(learning_rate, momentum=0.9)


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


def _group_grads(grads):
  return {'group_grads': symmetric_population(grads)}


def _cluster_extras(grads):
  return {
    'cluster_grads': symmetric_population(grads),
    'cluster_counts': jnp.array([2, 1, 1, 3]),
  }


def _bloop_extras(grads):
  # An auxiliary gradient that vanishes with the main one, so the parabola
  # and Rosenbrock optima are unchanged.
  return {'aux_grads': jax.tree.map(lambda g: 0.5 * jnp.flip(g), grads)}


def _prograd_extras(grads):
  # A general direction that vanishes with the gradient and never conflicts
  # with it (a persistent conflict is a constraint and moves the optimum):
  # the battery checks the plumbing, test_prograd.py the projections.
  return {'general_grads': jax.tree.map(lambda g: g + 0.5 * jnp.flip(g), grads)}


# The battery's builders a case names (``population=``, ``extra_args=``,
# ``post=``).
HOOKS: dict[str, Callable[..., Any]] = {
  'aligned': aligned_population,
  'group_grads': _group_grads,
  'cluster': _cluster_extras,
  'bloop': _bloop_extras,
  'prograd': _prograd_extras,
  'heavy_ball': _heavy_ball,
}


def _entry(method: metadata.Method) -> Entry:
  case = method.case
  optional = {
    'population': HOOKS[case.population] if case.population else None,
    'extra_args': HOOKS[case.extra_args] if case.extra_args else None,
  }
  return Entry(
    name=method.name,
    factory=method.function,
    kwargs=case.make_kwargs(),
    kind=case.kind,
    alias=case.alias,
    hyperparams=case.hyperparams,
    lr=case.lr,
    rosenbrock=case.rosenbrock,
    strict_promotion=case.strict_promotion,
    optimizer_fn=case.optimizer,
    inject_rtol=case.inject_rtol,
    post=HOOKS[case.post] if case.post else None,
    static_args=case.static_args,
    layouts=case.layouts,
    properties=method.properties,
    **{k: v for k, v in optional.items() if v is not None},
  )


REGISTRY: tuple[Entry, ...] = tuple(
  _entry(m) for m in metadata.methods().values() if m.case is not None
)

BY_NAME = {e.name: e for e in REGISTRY}


def with_property(predicate) -> dict[str, Entry]:
  """The entries whose properties satisfy ``predicate``, by name."""
  return {
    e.name: e
    for e in REGISTRY
    if e.properties is not None and predicate(e.properties)
  }
