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
"""DP-SGD's aggregate: per-member clipping, Gaussian noise, mean."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import base
from optax_ext._src import metadata
from optax_ext._src import numerics
from optax_ext._src import population as pop_lib
from optax_ext._src import validation


class AggregateByPrivateMeanState(NamedTuple):
  """State of :func:`aggregate_by_private_mean`.

  Attributes:
    count: int32 number of updates so far (the noise of step ``t`` is drawn
      from ``fold_in(key, t)``).
    key: uint32 key data of the PRNG key the noise is drawn from
      (``jax.random.key_data``: checkpoints as a plain array).
  """

  count: jax.Array
  key: jax.Array


def _clipped_sum(population, axes, max_norm):
  """``sum_k g_k min(1, max_norm / ||g_k||)`` without materialising the
  clipped members (one weighted sum; non-finite members weigh 0)."""
  norms = pop_lib.all_norms(population, axes)
  factors, _ = pop_lib.clip_factors(norms, max_norm)
  return pop_lib.combine(population, factors, axes, skip_zero_weights=True)


# Battery case: No noise and a clip above every member: the battery's
# convergence tests see the mean (test_privacy covers the noise and the
# clipping).
@metadata.describe(
  citations=('abadi2016deep',),
  properties=metadata.Properties(robust=True, clip_threshold='l2_norm_clip'),
  case=metadata.Case(
    kind='aggregator',
    kwargs={'l2_norm_clip': 1e3, 'noise_multiplier': 0.0},
    hyperparams=('l2_norm_clip', 'noise_multiplier'),
    rosenbrock=(1e-3, 5000),
    static_args=('seed', 'per_layer'),
  ),
  benchmarks=(
    metadata.Benchmark(
      'aggregators',
      'private_mean(clip 1.0, noise 1.0)',
      args=(
        1.0,
        1.0,
      ),
    ),
  ),
  row=metadata.Row(
    'privacy',
    (
      'DP-SGD: per-example clipping, calibrated Gaussian noise, '
      'accounting by `dp-accounting`'
    ),
    papers='[Abadi et al. 2016](https://arxiv.org/abs/1607.00133)',
    also=('dp_sgd_epsilon',),
  ),
)
def aggregate_by_private_mean(
  l2_norm_clip: float,
  noise_multiplier: float,
  *,
  seed: int = 0,
  per_layer: bool = False,
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""DP-SGD's aggregate of ``K`` per-example gradients.

  .. math::
    u = \frac1K \Big(\sum_{k=1}^K g_k \min\big(1, \tfrac{C}{\|g_k\|_2}\big)
    + \mathcal N(0, \sigma^2 C^2 I)\Big)

  with :math:`C` = ``l2_norm_clip`` and :math:`\sigma` =
  ``noise_multiplier``: each member's influence on the sum is at most
  :math:`C`, and the Gaussian noise on the sum makes the step
  :math:`(\epsilon, \delta)`-differentially private with respect to one
  member (:func:`dp_sgd_epsilon` counts it over training). Follow it with
  any optax optimiser (:func:`optax.sgd` for DP-SGD, :func:`optax.adam` for
  DP-Adam). With ``per_layer=True`` each leaf is clipped on its own to
  :math:`C / \sqrt{L}` for ``L`` leaves, so a member's whole norm stays
  within :math:`C` and the same noise calibrates it.

  The noise is drawn once per step from the key in the state and added to
  the sum: on a named axis (``shard_map``) or a sharded global view every
  index draws the same numbers for its copy of the aggregate, so the
  aggregate carries one draw, not one per device. Members with NaN or Inf
  are dropped (clipped to zero), as in
  :func:`optax_ext.robust.clip_each_by_global_norm`; the clipped members
  are summed with their clipping factors as weights, never materialised
  (a member whose norm exceeds about :math:`10^{37} C`, at the top of
  float32's range, has a factor that underflows and is dropped rather than
  clipped).

  .. note::
    The accounting of :func:`dp_sgd_epsilon` assumes each example enters a
    batch independently with probability ``q`` (Poisson sampling) and that
    ``K`` is the expected batch size; shuffled fixed-size batches, the usual
    practice, are not covered by that bound. The population must hold one
    member per example (``jax.vmap`` of the per-example gradient) for
    example-level privacy; microbatch members give microbatch-level
    privacy.

  Cost: one pass for the norms, one for the clipped sum, one noise draw of
  ``D`` floats per step (about 2 ``D`` of temporaries more than the mean,
  whatever ``K``; none when ``noise_multiplier`` is 0); on a named axis one
  all-reduce of ``D`` floats, as the plain mean.

  Args:
    l2_norm_clip: :math:`C > 0`.
    noise_multiplier: :math:`\sigma \ge 0` (0: clipping only, no privacy).
    seed: the noise's PRNG seed (an int; the key lives in the state).
    per_layer: clip every leaf to :math:`C/\sqrt{L}` instead of the whole
      member to :math:`C`.
    axes: where the members live.

  Returns:
    An :class:`optax_ext.Aggregator` with state
    :class:`AggregateByPrivateMeanState`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import privacy
    >>> tx = privacy.aggregate_by_private_mean(1.0, noise_multiplier=0.0)
    >>> pop = jnp.array([[3., 4.], [0.3, 0.4]])  # clipped: [.6, .8], as is
    >>> tx.update(pop, tx.init(jnp.zeros(2)))[0]
    Array([0.45, 0.6 ], dtype=float32)

  References:
    Abadi et al., `Deep Learning with Differential Privacy
    <https://arxiv.org/abs/1607.00133>`_, CCS 2016.
  """
  where = 'aggregate_by_private_mean'
  validation.check_positive(
    where, 'l2_norm_clip', l2_norm_clip, allow_schedule=False
  )
  validation.check_non_negative(
    where, 'noise_multiplier', noise_multiplier, allow_schedule=False
  )
  validation.check_integer(where, 'seed', seed)
  axes = base.resolve_axes(where, axes)

  def init_fn(params):
    del params
    return AggregateByPrivateMeanState(
      count=jnp.zeros([], jnp.int32),
      key=jax.random.key_data(jax.random.key(seed)),
    )

  def update_fn(updates, state, params=None, **extra_args):
    updates = base.population_arg(where, updates, extra_args)
    if per_layer:  # a Microbatches population is clipped as whole members
      base.reject_microbatches(
        where,
        updates,
        'stacked members with per_layer=True (build them with '
        'grad_population, or use per_layer=False)',
      )
    base.check_population(where, updates, params, axes, lean_ok=True)
    k = pop_lib.size(updates, axes)
    if per_layer:
      max_norm = l2_norm_clip / len(jax.tree.leaves(updates)) ** 0.5
      total = jax.tree.map(
        lambda x: _clipped_sum({'x': x}, axes, max_norm)['x'], updates
      )
    else:
      total = _clipped_sum(updates, axes, l2_norm_clip)
    step_key = jax.random.fold_in(
      jax.random.wrap_key_data(state.key), state.count
    )
    leaves, treedef = jax.tree.flatten(total)
    std = noise_multiplier * l2_norm_clip
    # A noise multiplier known to be 0 draws nothing (clipping only).
    no_noise = (
      isinstance(noise_multiplier, (int, float)) and not noise_multiplier
    )

    def noised_leaf(i, x):
      # float64 sums stay float64 (float32 otherwise); the noise is drawn
      # in that dtype.
      x = x.astype(numerics.accumulation_dtype(x.dtype))
      if not no_noise:
        key = jax.random.fold_in(step_key, i)
        noise = jax.random.normal(key, x.shape, x.dtype)
        x = x + jnp.asarray(std, x.dtype) * noise
      return x / k

    noised = [noised_leaf(i, x) for i, x in enumerate(leaves)]
    out = jax.tree.unflatten(
      treedef,
      [n.astype(x.dtype) for n, x in zip(noised, leaves, strict=True)],
    )
    count = optax.safe_int32_increment(state.count)
    return out, AggregateByPrivateMeanState(count=count, key=state.key)

  return base.Aggregator(init_fn, update_fn)
