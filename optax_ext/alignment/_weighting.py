# Copyright 2026 The optax_ext Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
# ==============================================================================
"""The weighting / aggregator split and the fixed and random weightings.

A *weighting* maps the ``K x K`` Gramian :math:`G = JJ^\\top` of a gradient
population (task gradients, rows of a Jacobian) to ``K`` weights; the
aggregator returns :math:`J^\\top w = \\sum_k w_k g_k`.
"""

from collections.abc import Callable
import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import base
from optax_ext._src import linalg
from optax_ext._src import metadata
from optax_ext._src import population as pop_lib
from optax_ext._src import validation

Weighting = Callable[..., jax.Array]


class AggregateByWeightingState(NamedTuple):
  """State of the Gramian-weighted aggregators (``aggregate_by_*``).

  Attributes:
    count: int32 number of updates so far.
    weights: the last ``[K]`` float32 weights (``None`` unless the factory
      was given ``num_tasks``); read them with ``optax.tree.get(state,
      'weights')``.
    key: raw uint32 PRNG key data for randomised rules (``None`` otherwise);
      identical on every index of a named axis.
  """

  count: jax.Array
  weights: jax.Array | None
  key: jax.Array | None


def as_key_data(where: str, key: Any) -> jax.Array:
  """An int seed or a PRNG key as raw uint32 key data (checkpointable)."""
  if isinstance(key, int) and not isinstance(key, bool):
    return jax.random.key_data(jax.random.key(key))
  if isinstance(key, jax.Array):
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
      return jax.random.key_data(key)
    if key.dtype == jnp.uint32 and key.shape == (2,):  # raw key data
      return key
    if jnp.issubdtype(key.dtype, jnp.integer) and key.ndim == 0:
      # An int seed that optax.inject_hyperparams turned into an array.
      return jax.random.key_data(jax.random.key(key))
  raise TypeError(
    f'{where}: `key` must be an int seed or a jax PRNG key, got {key!r}.'
  )


def split_key_data(key_data: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(key for this step, raw data of the key for the next step)``."""
  step_key, next_key = jax.random.split(jax.random.wrap_key_data(key_data))
  return step_key, jax.random.key_data(next_key)


@metadata.describe(
  citations=('quinton2024jacobian',),
  properties=metadata.Properties(
    robust=False,
    multitask_exempt=(
      "its properties are its weighting's (the battery runs mean_weighting)"
    ),
  ),
  case=metadata.Case(
    kind='aggregator',
    kwargs=lambda: {'weighting': mean_weighting},
    rosenbrock=(1e-3, 20000),
    static_args=('weighting',),
    population='aligned',
  ),
)
def aggregate_by_weighting(
  weighting: Weighting,
  *,
  axes: pop_lib.PopulationAxes | None = None,
  key: int | jax.Array | None = None,
  num_tasks: int | None = None,
) -> base.Aggregator:
  r"""Aggregates a population by weights computed from its Gramian.

  .. math::
    G = JJ^\top, \qquad w = \mathrm{sg}[\mathrm{weighting}(G)], \qquad
    u = J^\top w = \sum_k w_k g_k,

  with :math:`J` the population (one row per member: task gradients, rows
  of a Jacobian). The Gramian is formed in float32 over all leaves
  (:func:`optax_ext.population.gramian`); the weights are never
  differentiated (``stop_gradient``).

  Cost: one pass to form :math:`G` (``K^2 D`` multiply-adds) and one to
  combine; on the named path one ``all_to_all`` (each index forms the
  partial Gramian of ``D / N`` coordinates of all members, then a ``psum``
  of ``K^2`` floats) and one all-reduce to combine: O(D) per index.

  Args:
    weighting: ``weighting(G) -> [K]`` (or ``weighting(G, key)`` when
      ``key`` is given), e.g. one of the ``*_weighting`` functions with
      hyper-parameters bound by ``functools.partial``.
    axes: where the members live (default: stacked on axis 0).
    key: for randomised weightings: an int seed or PRNG key, split every
      step (the same on every index of a named axis).
    num_tasks: ``K``; when given the state keeps the last weights.

  Returns:
    An :class:`optax_ext.Aggregator` with state
    :class:`AggregateByWeightingState`.

  Example:
    >>> import functools, jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> tx = alignment.aggregate_by_weighting(
    ...   functools.partial(alignment.constant_weighting,
    ...                     weights=jnp.array([0.25, 0.75])))
    >>> jac = jnp.array([[1.0, 0.0], [0.0, 4.0]])
    >>> tx.update(jac, tx.init(jnp.zeros(2)))[0]
    Array([0.25, 3.  ], dtype=float32)

  References:
    Quinton and Rey, `Jacobian Descent for Multi-Objective Optimization
    <https://arxiv.org/abs/2406.16232>`_, 2024 (TorchJD).
  """
  return weighted_aggregator(
    'aggregate_by_weighting', weighting, axes, key=key, num_tasks=num_tasks
  )


def _accepts_key(fn) -> bool:
  """Whether ``fn`` can be called as ``fn(gramian, key)``."""
  try:
    sig = inspect.signature(fn)
  except (TypeError, ValueError):  # builtins, some C callables: trust them
    return True
  try:
    sig.bind(None, None)
  except TypeError:
    return False
  return True


def weighted_aggregator(
  where: str,
  weighting: Weighting,
  axes: pop_lib.PopulationAxes | None,
  *,
  key: int | jax.Array | None = None,
  num_tasks: int | None = None,
) -> base.Aggregator:
  """The aggregator of :func:`aggregate_by_weighting`, named ``where``."""
  validation.check_callable(where, 'weighting', weighting)
  axes = base.resolve_axes(where, axes)
  if num_tasks is not None:
    validation.check_integer(where, 'num_tasks', num_tasks, lower=1)
  key_data = None if key is None else as_key_data(where, key)
  if key is not None and not _accepts_key(weighting):
    raise ValueError(
      f'{where}: `key` was given but `weighting` {weighting!r} takes no key '
      'argument (weighting(G, key)); pass key only to randomised weightings.'
    )

  def init_fn(params):
    del params
    return AggregateByWeightingState(
      count=jnp.zeros([], jnp.int32),
      weights=None
      if num_tasks is None
      else jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32),
      key=None if key_data is None else jnp.array(key_data),
    )

  def update_fn(updates, state, params=None, **extra_args):
    updates = base.population_arg(where, updates, extra_args)
    base.check_population(where, updates, params, axes, lean_ok=True)
    k = pop_lib.size(updates, axes)
    if num_tasks is not None and k != num_tasks:
      raise ValueError(
        f'{where}: the population has K={k} members but `num_tasks` is '
        f'{num_tasks}.'
      )
    gram = pop_lib.gramian(updates, axes)
    new_key = state.key
    if state.key is None:
      w = weighting(gram)
    else:
      step_key, new_key = split_key_data(state.key)
      w = weighting(gram, step_key)
    w = jax.lax.stop_gradient(jnp.asarray(w, linalg.solve_dtype(gram.dtype)))
    if w.shape != (k,):
      raise ValueError(
        f'{where}: the weighting returned shape {w.shape}, expected ({k},).'
      )
    out = pop_lib.combine(updates, w, axes)
    return out, AggregateByWeightingState(
      count=optax.safe_int32_increment(state.count),
      weights=None if state.weights is None else w,
      key=new_key,
    )

  return base.Aggregator(init_fn, update_fn)


@metadata.describe(citations=('quinton2024jacobian',))
def mean_weighting(gramian: jax.Array) -> jax.Array:
  """Uniform weights ``1/K`` (the mean of the population).

  Args:
    gramian: ``[K, K]``.

  Returns:
    float32 ``[K]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> alignment.mean_weighting(jnp.eye(4))
    Array([0.25, 0.25, 0.25, 0.25], dtype=float32)
  """
  k = gramian.shape[0]
  return jnp.full((k,), 1.0 / k, linalg.solve_dtype(gramian.dtype))


@metadata.describe(citations=('quinton2024jacobian',))
def sum_weighting(gramian: jax.Array) -> jax.Array:
  """Unit weights (the sum of the population).

  Args:
    gramian: ``[K, K]``.

  Returns:
    float32 ``[K]`` of ones.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> alignment.sum_weighting(jnp.eye(2))
    Array([1., 1.], dtype=float32)
  """
  return jnp.ones((gramian.shape[0],), linalg.solve_dtype(gramian.dtype))


@metadata.describe(citations=('quinton2024jacobian',))
def constant_weighting(gramian: jax.Array, weights: jax.Array) -> jax.Array:
  """Fixed weights, whatever the Gramian.

  Args:
    gramian: ``[K, K]``.
    weights: ``[K]``.

  Returns:
    ``weights`` as float32.

  Raises:
    ValueError: if ``weights`` is not ``[K]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> alignment.constant_weighting(jnp.eye(2), jnp.array([1.0, 3.0]))
    Array([1., 3.], dtype=float32)
  """
  w = jnp.asarray(weights, jnp.float32)
  if w.shape != (gramian.shape[0],):
    raise ValueError(
      f'constant_weighting: `weights` must have shape ({gramian.shape[0]},), '
      f'got {w.shape}.'
    )
  return w


@metadata.describe(citations=('lin2022reasonable',))
def random_weighting(gramian: jax.Array, key: jax.Array) -> jax.Array:
  r"""Random loss weighting (RLW): softmax of a standard normal draw.

  :math:`w = \mathrm{softmax}(z)`, :math:`z \sim N(0, I_K)`.

  Args:
    gramian: ``[K, K]`` (only its size is used).
    key: a PRNG key.

  Returns:
    float32 ``[K]``, positive, summing to 1.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> w = alignment.random_weighting(jnp.eye(3), jax.random.key(0))
    >>> w.shape, bool(jnp.isclose(w.sum(), 1.0))
    ((3,), True)
  """
  z = jax.random.normal(key, (gramian.shape[0],), jnp.float32)
  return jax.nn.softmax(z)


@metadata.describe(
  citations=('quinton2024jacobian',),
  properties=metadata.Properties(
    robust=False,
    multitask_exempt='its weights fix the number of tasks',
  ),
  case=metadata.Case(
    kind='aggregator',
    kwargs=lambda: {'weights': jnp.array([0.1, 0.2, 0.3, 0.4])},
    rosenbrock=(1e-3, 20000),
    population='aligned',
  ),
  row=metadata.Row(
    'multi-task',
    'constant, random (RLW), any weighting',
    papers='[Lin et al. 2022](https://arxiv.org/abs/2111.10603)',
    also=('aggregate_by_random', 'aggregate_by_weighting'),
  ),
)
def aggregate_by_constant(
  weights: jax.Array, axes: pop_lib.PopulationAxes | None = None
) -> base.Aggregator:
  r"""Aggregates by fixed weights, :math:`u = \sum_k w_k g_k`.

  Properties (TorchJD's): linear under scaling and weighted; not
  non-conflicting; permutation-invariant only for uniform weights.

  Args:
    weights: ``[K]`` weights.
    axes: where the members live.

  Returns:
    An :class:`optax_ext.Aggregator` with state
    :class:`AggregateByWeightingState`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> tx = alignment.aggregate_by_constant(jnp.array([1.0, -1.0]))
    >>> tx.update(jnp.array([[3.0], [1.0]]), tx.init(jnp.zeros(1)))[0]
    Array([2.], dtype=float32)

  References:
    Quinton and Rey, `Jacobian Descent for Multi-Objective Optimization
    <https://arxiv.org/abs/2406.16232>`_, 2024 (TorchJD).
  """
  w = jnp.asarray(weights, jnp.float32)
  if w.ndim != 1:
    raise ValueError(
      f'aggregate_by_constant: `weights` must be 1-D [K], got shape {w.shape}.'
    )
  return weighted_aggregator(
    'aggregate_by_constant', lambda g: constant_weighting(g, w), axes
  )


@metadata.describe(
  citations=('lin2022reasonable',),
  properties=metadata.Properties(
    robust=False,
    multitask_exempt='random weights drawn from its key',
  ),
  case=metadata.Case(
    kind='aggregator',
    kwargs={'key': 3},
    rosenbrock=(1e-3, 20000),
    population='aligned',
  ),
)
def aggregate_by_random(
  key: int | jax.Array = 0, axes: pop_lib.PopulationAxes | None = None
) -> base.Aggregator:
  r"""Random loss weighting: fresh softmax-Gaussian weights every step.

  .. math::
    w = \mathrm{softmax}(z), \quad z \sim N(0, I_K), \quad u = \sum_k w_k g_k.

  Properties: linear under scaling, weighted, permutation-invariant in
  distribution; not non-conflicting. The key lives in the state (split
  every step), so runs are reproducible from ``key``.

  Args:
    key: an int seed or a PRNG key.
    axes: where the members live.

  Returns:
    An :class:`optax_ext.Aggregator` with state
    :class:`AggregateByWeightingState`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> tx = alignment.aggregate_by_random(key=0)
    >>> u, _ = tx.update(jnp.ones((3, 2)), tx.init(jnp.zeros(2)))
    >>> u  # the weights sum to one
    Array([1., 1.], dtype=float32)

  References:
    Lin et al., `Reasonable Effectiveness of Random Weighting: A Litmus
    Test for Multi-Task Learning <https://arxiv.org/abs/2111.10603>`_, TMLR
    2022.
  """
  return weighted_aggregator(
    'aggregate_by_random', random_weighting, axes, key=key
  )
