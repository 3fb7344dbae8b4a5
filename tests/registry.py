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
* ``'wrapper'``: takes an inner transform (``inner`` in ``kwargs``).
"""

from collections.abc import Callable, Mapping
import dataclasses
from typing import Any

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
  half = jnp.arange(1, num_members // 2 + 1, dtype=jnp.float32)
  offsets = jnp.stack([half, -half], axis=1).reshape(-1)

  def one(g):
    d = jnp.cos(jnp.arange(g.size, dtype=jnp.float32) + 1.0).reshape(g.shape)
    pop = g[None].astype(jnp.float32) + offsets.reshape(
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
    kind: ``'param'``, ``'aggregator'`` or ``'wrapper'``.
    alias: whether the factory takes ``learning_rate`` (an optimiser).
    hyperparams: the kwargs ``optax.inject_hyperparams`` must expose.
    lr: learning rate for the parabola test.
    rosenbrock: ``(learning_rate, steps)`` for the Rosenbrock test.
    population: for aggregators, ``grads -> population``.
    post: for aggregators, the optimiser chained after it, given an lr
      (heavy-ball SGD by default: strict-promotion clean, unlike optax.adam).
  """

  name: str
  factory: Callable[..., optax.GradientTransformation]
  kwargs: Mapping[str, Any]
  kind: str
  alias: bool = False
  hyperparams: tuple[str, ...] = ()
  lr: float = 0.1
  rosenbrock: tuple[float, int] = (0.01, 5000)
  population: Callable[[Any], Any] = symmetric_population
  post: Callable[[float], optax.GradientTransformation] = _heavy_ball

  def make(self, **overrides) -> optax.GradientTransformation:
    """The transform itself, as a user would build it."""
    return self.factory(**{**self.kwargs, **overrides})

  def optimizer(self, learning_rate: float) -> optax.GradientTransformation:
    """A full optimiser (updates are added to params) around the transform."""
    if self.kind == 'aggregator':
      return optax.chain(self.make(), self.post(learning_rate))
    if self.alias:
      return self.make(learning_rate=learning_rate)
    return optax.chain(self.make(), optax.scale_by_learning_rate(learning_rate))

  def oracle_input(self, grads):
    """What the transform's ``update`` receives for param-shaped ``grads``."""
    return self.population(grads) if self.kind == 'aggregator' else grads


REGISTRY: tuple[Entry, ...] = (
  Entry(
    name='aggregate_by_mean',
    factory=optax_ext.aggregate_by_mean,
    kwargs={},
    kind='aggregator',
    rosenbrock=(1e-3, 5000),
  ),
  Entry(
    name='aggregate_by_sum',
    factory=optax_ext.aggregate_by_sum,
    kwargs={},
    kind='aggregator',
    lr=0.1 / NUM_MEMBERS,
    rosenbrock=(1e-3 / NUM_MEMBERS, 5000),
  ),
)

BY_NAME = {e.name: e for e in REGISTRY}
