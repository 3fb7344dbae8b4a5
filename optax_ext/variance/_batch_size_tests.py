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
"""Adaptive batch-size tests: the norm test and the augmented inner-product
test, from a gradient population's Gramian."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import base
from optax_ext._src import metadata
from optax_ext._src import numerics
from optax_ext._src import population as pop_lib
from optax_ext._src import validation


class BatchSizeTests(NamedTuple):
  """The batch sizes the tests ask for (scalars in examples; float32, float64
  for a float64 population).

  Attributes:
    norm: the norm test's :math:`\\lceil \\mathrm{Var}(g) / (\\eta^2
      \\|\\bar g\\|^2) \\rceil`.
    inner_product: the inner-product test's :math:`\\lceil
      \\mathrm{Var}(\\langle g, \\bar g\\rangle) / (\\theta^2 \\|\\bar
      g\\|^4) \\rceil`.
    orthogonality: the orthogonality test's :math:`\\lceil
      \\mathrm{Var}(g_\\perp) / (\\nu^2 \\|\\bar g\\|^2) \\rceil`.
    augmented: the augmented inner-product test's, the larger of the last
      two.
  """

  norm: jax.Array
  inner_product: jax.Array
  orthogonality: jax.Array
  augmented: jax.Array


@metadata.describe(
  citations=('byrd2012sample', 'bollapragada2018adaptive'),
  row=metadata.Row(
    'variance',
    'adaptive batch-size tests (norm, augmented inner-product)',
    papers='[Bollapragada et al. 2018](https://arxiv.org/abs/1710.11258)',
    also=('aggregate_by_mean_with_batch_size_tests',),
  ),
)
def batch_size_tests(
  population: optax.Updates,
  axes: pop_lib.PopulationAxes | None = None,
  *,
  eta: float,
  theta: float,
  nu: float,
  microbatch_size: int = 1,
) -> BatchSizeTests:
  r"""The batch sizes the norm and augmented inner-product tests ask for.

  With ``K`` members :math:`g_k`, their mean :math:`\bar g` and the
  sample variances (``1/(K-1)``) of

  * the members: :math:`V_n = \frac{1}{K-1}\sum_k \|g_k - \bar g\|^2`;
  * their projections on the mean: :math:`V_i = \frac{1}{K-1}\sum_k
    (\langle g_k, \bar g\rangle - \|\bar g\|^2)^2`;
  * their parts orthogonal to it: :math:`V_o = \frac{1}{K-1}\sum_k \|g_k -
    \frac{\langle g_k, \bar g\rangle}{\|\bar g\|^2}\bar g\|^2`,

  a batch of ``b`` examples passes the norm test (Byrd et al. 2012) when
  :math:`V_n / b \le \eta^2 \|\bar g\|^2`, the inner-product test when
  :math:`V_i / b \le \theta^2 \|\bar g\|^4` and the orthogonality test when
  :math:`V_o / b \le \nu^2 \|\bar g\|^2` (the augmented test of
  Bollapragada, Byrd and Nocedal 2018 is the last two together). Each
  returned size is the smallest ``b`` that passes, rounded up: grow the
  batch to it when it exceeds the current one. Members that each average
  ``microbatch_size`` examples have ``1/microbatch_size`` of the
  per-example variances, so the variances are scaled back by it.

  Everything comes from the ``K x K`` Gramian
  (:func:`optax_ext.population.gramian`): every population layout works,
  including memory-lean ``population.microbatches``.

  .. note::
    The papers tune the tolerances per problem, so they have no defaults
    here. These are the three tests of the AdAdaGrad authors' code (tested
    equal to a transcription of it); the coordinate-wise variant analysed
    in the AdAdaGrad paper is not implemented (that code has none).

  Args:
    population: ``K >= 2`` members (per-example or microbatch gradients).
    axes: where the members live.
    eta: the norm test's :math:`\eta > 0`.
    theta: the inner-product test's :math:`\theta > 0`.
    nu: the orthogonality test's :math:`\nu > 0`.
    microbatch_size: examples per member, ``>= 1``.

  Returns:
    A :class:`BatchSizeTests` (``inf`` when the mean gradient is 0).

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import variance
    >>> pop = jnp.array([[1., 1.], [3., -1.], [2., 0.5], [2., -0.5]])
    >>> tests = variance.batch_size_tests(pop, eta=0.5, theta=0.5, nu=0.5)
    >>> tests.norm  # V_n = 1.5, |mean|^2 = 4: ceil(1.5 / (0.5^2 * 4))
    Array(2., dtype=float32)
    >>> tests.augmented  # V_i = 8/3 vs 4, V_o = 5/6 vs 1
    Array(1., dtype=float32)

  References:
    Byrd, Chin, Nocedal and Wu, `Sample size selection in optimization
    methods for machine learning <https://doi.org/10.1007/s10107-012-0572-5>`_,
    Math. Program. 2012; Bollapragada, Byrd and Nocedal, `Adaptive Sampling
    Strategies for Stochastic Optimization
    <https://arxiv.org/abs/1710.11258>`_, SIAM J. Optim. 2018.
  """
  where = 'batch_size_tests'
  _check_args(where, eta, theta, nu, microbatch_size)
  axes = base.resolve_axes(where, axes)
  return _tests(where, population, axes, eta, theta, nu, microbatch_size)


def _check_args(where, eta, theta, nu, microbatch_size):
  for name, value in (('eta', eta), ('theta', theta), ('nu', nu)):
    validation.check_positive(where, name, value, allow_schedule=False)
  validation.check_integer(where, 'microbatch_size', microbatch_size, lower=1)


def _tests(where, population, axes, eta, theta, nu, microbatch_size):
  k = pop_lib.size(population, axes)
  if k < 2:
    raise ValueError(
      f'{where}: the tests need a sample variance, i.e. K >= 2 members, '
      f'got K={k}.'
    )
  # In the Gramian's accumulation dtype: float64 for a float64 population
  # (the variances are differences of nearly equal inner products).
  g = pop_lib.gramian(population, axes)
  dots = jnp.mean(g, axis=1)  # <g_k, mean>
  mean_sq = jnp.mean(dots)  # |mean|^2
  m = jnp.asarray(microbatch_size, g.dtype)
  v_norm = (jnp.trace(g) - k * mean_sq) / (k - 1)
  v_inner = jnp.sum(jnp.square(dots - mean_sq)) / (k - 1)
  safe = jnp.where(mean_sq > 0, mean_sq, 1.0)
  v_orth = jnp.sum(jnp.diag(g) - jnp.square(dots) / safe) / (k - 1)

  def size(variance, bound):
    b = jnp.ceil(
      jnp.maximum(m * variance, 0.0) / jnp.where(bound > 0, bound, 1)
    )
    return jnp.where(bound > 0, b, jnp.inf)

  norm = size(v_norm, eta**2 * mean_sq)
  inner = size(v_inner, theta**2 * mean_sq**2)
  orth = size(v_orth, nu**2 * mean_sq)
  return BatchSizeTests(norm, inner, orth, jnp.maximum(inner, orth))


class AggregateByMeanWithBatchSizeTestsState(NamedTuple):
  """State of :func:`aggregate_by_mean_with_batch_size_tests`.

  Attributes:
    count: int32 number of updates so far.
    norm: the last step's norm-test batch size (NaN before the first step;
      ``optax.tree.get(state, 'norm')``).
    inner_product: the last step's inner-product-test batch size.
    orthogonality: the last step's orthogonality-test batch size.
    augmented: the last step's augmented-test batch size.
  """

  count: jax.Array
  norm: jax.Array
  inner_product: jax.Array
  orthogonality: jax.Array
  augmented: jax.Array


@metadata.describe(
  citations=('byrd2012sample', 'bollapragada2018adaptive'),
  properties=metadata.Properties(robust=False),
  case=metadata.Case(
    kind='aggregator',
    kwargs={'eta': 0.5, 'theta': 0.5, 'nu': 1.0},
    hyperparams=('eta', 'theta', 'nu'),
    rosenbrock=(1e-3, 5000),
  ),
)
def aggregate_by_mean_with_batch_size_tests(
  eta: float,
  theta: float,
  nu: float,
  microbatch_size: int = 1,
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""The mean of the population, reporting the batch sizes the tests ask.

  The update is the plain mean; the state holds this step's test results
  (:func:`batch_size_tests`), so a training loop
  reads ``optax.tree.get(state, 'augmented')`` (or ``'norm'``) and grows its
  batch when the test asks for more examples than it used.

  Args:
    eta: the norm test's :math:`\eta > 0`.
    theta: the inner-product test's :math:`\theta > 0`.
    nu: the orthogonality test's :math:`\nu > 0`.
    microbatch_size: examples per member, ``>= 1``.
    axes: where the members live.

  Returns:
    An :class:`optax_ext.Aggregator` with state
    :class:`AggregateByMeanWithBatchSizeTestsState`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import variance
    >>> tx = variance.aggregate_by_mean_with_batch_size_tests(0.5, 0.5, 0.5)
    >>> pop = jnp.array([[1., 1.], [3., -1.], [2., 0.5], [2., -0.5]])
    >>> u, state = tx.update(pop, tx.init(jnp.zeros(2)))
    >>> u, optax.tree.get(state, 'norm')
    (Array([2., 0.], dtype=float32), Array(2., dtype=float32))

  References:
    Byrd, Chin, Nocedal and Wu, `Sample size selection in optimization
    methods for machine learning <https://doi.org/10.1007/s10107-012-0572-5>`_,
    Math. Program. 2012; Bollapragada, Byrd and Nocedal, `Adaptive Sampling
    Strategies for Stochastic Optimization
    <https://arxiv.org/abs/1710.11258>`_, SIAM J. Optim. 2018.
  """
  where = 'aggregate_by_mean_with_batch_size_tests'
  _check_args(where, eta, theta, nu, microbatch_size)
  axes = base.resolve_axes(where, axes)

  def init_fn(params):
    nan = jnp.full([], jnp.nan, numerics.tree_common_accumulation_dtype(params))
    return AggregateByMeanWithBatchSizeTestsState(
      jnp.zeros([], jnp.int32), nan, nan, nan, nan
    )

  def update_fn(updates, state, params=None, **extra_args):
    updates = base.population_arg(where, updates, extra_args)
    base.check_population(where, updates, params, axes, lean_ok=True)
    tests = _tests(where, updates, axes, eta, theta, nu, microbatch_size)
    mean = pop_lib.mean(updates, axes)
    return mean, AggregateByMeanWithBatchSizeTestsState(
      optax.safe_int32_increment(state.count),
      *(t.astype(state.norm.dtype) for t in tests),
    )

  return base.Aggregator(init_fn, update_fn)
