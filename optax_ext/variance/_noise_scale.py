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
"""The gradient noise scale (critical batch size) of McCandlish et al."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import base
from optax_ext._src import metadata
from optax_ext._src import numerics
from optax_ext._src import population as pop_lib
from optax_ext._src import validation


class NoiseScaleEstimate(NamedTuple):
  """One step's estimates (see :func:`gradient_noise_scale`).

  Attributes:
    grad_sq: unbiased estimate of :math:`|G|^2`, the squared norm of the true
      gradient (float32 scalar).
    trace: unbiased estimate of :math:`\\mathrm{tr}(\\Sigma)`, the trace of
      the per-example gradient covariance (float32 scalar).
    b_simple: :math:`\\mathrm{tr}(\\Sigma) / |G|^2`, the simple noise scale
      (a ratio of the two, not itself unbiased).
  """

  grad_sq: jax.Array
  trace: jax.Array
  b_simple: jax.Array


@metadata.describe(
  citations=('mccandlish2018empirical',),
  row=metadata.Row(
    'variance',
    (
      'gradient noise scale / critical batch size (and its EMA in the '
      "mean's state)"
    ),
    papers='[McCandlish et al. 2018](https://arxiv.org/abs/1812.06162)',
    also=('aggregate_by_mean_with_noise_scale',),
  ),
)
def gradient_noise_scale(
  population: optax.Updates,
  axes: pop_lib.PopulationAxes | None = None,
  *,
  microbatch_size: int = 1,
) -> NoiseScaleEstimate:
  r"""The simple noise scale :math:`B_\mathrm{simple}` of one population.

  With ``K`` members, each the mean gradient of ``b`` examples
  (``microbatch_size``), the two batch sizes of the paper's Appendix A.1 are
  :math:`B_\mathrm{small} = b` (each member: :math:`|G_\mathrm{small}|^2`
  is the mean of :math:`\|g_k\|^2`, which uses every member) and
  :math:`B_\mathrm{big} = Kb` (their mean :math:`\bar g`). Then

  .. math::
    |G|^2 \approx \frac{B_\mathrm{big}|G_\mathrm{big}|^2 -
      B_\mathrm{small}|G_\mathrm{small}|^2}{B_\mathrm{big} -
      B_\mathrm{small}}, \qquad
    \mathrm{tr}(\Sigma) \approx \frac{|G_\mathrm{small}|^2 -
      |G_\mathrm{big}|^2}{1/B_\mathrm{small} - 1/B_\mathrm{big}},

  both unbiased (:math:`E\|g_k\|^2 = |G|^2 + \mathrm{tr}(\Sigma)/b`), and
  :math:`B_\mathrm{simple} = \mathrm{tr}(\Sigma)/|G|^2`, the batch size
  around which larger batches stop paying off (the critical batch size to
  first order). One step's estimate is noisy; average over steps
  (:func:`aggregate_by_mean_with_noise_scale` keeps EMAs of both terms, as
  the paper does).

  Works with every population layout and with a memory-lean
  ``population.microbatches`` (it needs only the mean and the norms).

  Args:
    population: ``K >= 2`` members (leaves ``[K, *shape]`` when stacked).
    axes: where the members live.
    microbatch_size: ``b >= 1``, the examples averaged in each member (1 for
      per-example gradients).

  Returns:
    A :class:`NoiseScaleEstimate`.

  Raises:
    ValueError: at trace time, if ``K < 2`` or ``microbatch_size < 1``.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import variance
    >>> pop = jnp.array([[1., 0.], [3., 0.], [2., 1.], [2., -1.]])
    >>> est = variance.gradient_noise_scale(pop)
    >>> # mean |g_k|^2 = 5, |mean|^2 = 4: |G|^2 = (4*4 - 5)/3, tr = 1/(3/4)
    >>> round(float(est.grad_sq), 4), round(float(est.trace), 4)
    (3.6667, 1.3333)

  References:
    McCandlish et al., `An Empirical Model of Large-Batch Training
    <https://arxiv.org/abs/1812.06162>`_, 2018 (Appendix A.1).
  """
  where = 'gradient_noise_scale'
  validation.check_integer(where, 'microbatch_size', microbatch_size, lower=1)
  axes = base.resolve_axes(where, axes)
  return _estimate(where, population, axes, microbatch_size)[0]


def _estimate(where, population, axes, b):
  k = pop_lib.size(population, axes)
  if k < 2:
    raise ValueError(
      f'{where}: the noise scale needs two batch sizes, i.e. K >= 2 members, '
      f'got K={k}.'
    )
  mean = pop_lib.mean(population, axes)
  # The statistics in the population's accumulation dtype (float64 for
  # float64 members).
  acc = numerics.tree_common_accumulation_dtype(mean)
  big = sum(jnp.sum(jnp.square(x.astype(acc))) for x in jax.tree.leaves(mean))
  # |G_small|^2 - |G_big|^2 = mean_k |g_k|^2 - |mean|^2 is the mean squared
  # deviation from the mean: taken so (norms centred on the mean), it does
  # not cancel when the members nearly agree.
  local = pop_lib.norms(population, axes, center=mean).astype(acc)
  spread = pop_lib.across_indices(jnp.sum(jnp.square(local)), axes) / k
  b_small = jnp.asarray(b, acc)  # an array under inject_hyperparams
  b_big = k * b_small
  grad_sq = big - b_small * spread / (b_big - b_small)
  trace = spread / (1.0 / b_small - 1.0 / b_big)
  return NoiseScaleEstimate(grad_sq, trace, trace / grad_sq), mean


class AggregateByMeanWithNoiseScaleState(NamedTuple):
  """State of :func:`aggregate_by_mean_with_noise_scale`.

  Attributes:
    count: int32 number of updates so far.
    grad_sq_ema: EMA of the :math:`|G|^2` estimates (float32; float64 for
      float64 params).
    trace_ema: EMA of the :math:`\\mathrm{tr}(\\Sigma)` estimates (same
      dtype).
    b_simple: ``trace_ema / grad_sq_ema``, the smoothed noise scale
      (``optax.tree.get(state, 'b_simple')``; NaN before the first step).
  """

  count: jax.Array
  grad_sq_ema: jax.Array
  trace_ema: jax.Array
  b_simple: jax.Array


@metadata.describe(
  citations=('mccandlish2018empirical',),
  properties=metadata.Properties(robust=False),
  case=metadata.Case(
    kind='aggregator',
    kwargs={'ema_decay': 0.9},
    hyperparams=('ema_decay',),
    rosenbrock=(1e-3, 5000),
  ),
)
def aggregate_by_mean_with_noise_scale(
  microbatch_size: int = 1,
  ema_decay: float = 0.99,
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""The mean of the population, tracking the gradient noise scale.

  The update is the plain mean (as :func:`optax_ext.aggregate_by_mean`);
  the state keeps exponential moving averages of the per-step unbiased
  estimates of :math:`|G|^2` and :math:`\mathrm{tr}(\Sigma)` (see
  :func:`gradient_noise_scale`) and their ratio :math:`B_\mathrm{simple}`,
  the paper's smoothed critical-batch-size estimate. Both EMAs start at 0
  and share the decay, so their ratio needs no bias correction.

  .. note::
    The paper takes the two batch sizes from different data-parallel
    reductions (per-device and all-reduced gradients); here they are the
    members and their mean, which is the same estimator with
    :math:`B_\mathrm{small} = b` averaged over all ``K`` members. A
    per-step estimate of :math:`|G|^2` can be negative when the noise
    dominates; the EMA is what to read.

  Args:
    microbatch_size: ``b >= 1``, examples per member.
    ema_decay: EMA decay in ``[0, 1)`` (0 keeps the last step's estimate).
    axes: where the members live.

  Returns:
    An :class:`optax_ext.Aggregator` with state
    :class:`AggregateByMeanWithNoiseScaleState`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import variance
    >>> tx = variance.aggregate_by_mean_with_noise_scale(ema_decay=0.0)
    >>> pop = jnp.array([[1., 0.], [3., 0.], [2., 1.], [2., -1.]])
    >>> u, state = tx.update(pop, tx.init(jnp.zeros(2)))
    >>> u, optax.tree.get(state, 'b_simple')  # (4/3) / (11/3)
    (Array([2., 0.], dtype=float32), Array(0.36363637, dtype=float32))

  References:
    McCandlish et al., `An Empirical Model of Large-Batch Training
    <https://arxiv.org/abs/1812.06162>`_, 2018.
  """
  where = 'aggregate_by_mean_with_noise_scale'
  validation.check_integer(where, 'microbatch_size', microbatch_size, lower=1)
  validation.check_decay(where, 'ema_decay', ema_decay, allow_schedule=False)
  axes = base.resolve_axes(where, axes)

  def init_fn(params):
    acc = numerics.tree_common_accumulation_dtype(params)
    zero = jnp.zeros([], acc)
    return AggregateByMeanWithNoiseScaleState(
      jnp.zeros([], jnp.int32), zero, zero, jnp.full([], jnp.nan, acc)
    )

  def update_fn(updates, state, params=None, **extra_args):
    updates = base.population_arg(where, updates, extra_args)
    base.check_population(where, updates, params, axes, lean_ok=True)
    est, mean = _estimate(where, updates, axes, microbatch_size)
    acc = state.grad_sq_ema.dtype
    beta = jnp.asarray(ema_decay, acc)
    g_ema = beta * state.grad_sq_ema + (1.0 - beta) * est.grad_sq.astype(acc)
    t_ema = beta * state.trace_ema + (1.0 - beta) * est.trace.astype(acc)
    return mean, AggregateByMeanWithNoiseScaleState(
      optax.safe_int32_increment(state.count), g_ema, t_ema, t_ema / g_ema
    )

  return base.Aggregator(init_fn, update_fn)
