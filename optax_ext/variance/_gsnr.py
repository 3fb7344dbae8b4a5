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
"""Gradient signal-to-noise ratio (GSNR) and GSNR-scaled updates (VRGD)."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import base
from optax_ext._src import metadata
from optax_ext._src import population as pop_lib
from optax_ext._src import validation
from optax_ext.variance import _mean_with_population

_FLOOR_ABS = 1e-30  # absolute part of the variance floor (float32-normal)
_NORMALIZE = ('per_leaf', 'global')


class ScaleByGsnrState(NamedTuple):
  """State of :func:`scale_by_gsnr`.

  Attributes:
    count: int32 number of updates so far.
    gsnr: the per-parameter factor :math:`\\hat r` (or its EMA) applied at the
      last step, float32, shaped like the params. Read it for logging with
      ``optax.tree.get(state, 'gsnr')``.
  """

  count: jax.Array
  gsnr: optax.Updates


def _check_eps_rel(where, eps_rel):
  validation.check_number(
    where, 'eps_rel', eps_rel, lower=0.0, allow_schedule=False
  )


def _check_size(where, population, axes):
  k = pop_lib.size(population, axes)
  if k < 2:
    raise ValueError(
      f'{where}: the population has K={k} member(s); the GSNR needs a '
      'variance over K >= 2 members (K >= 4 advisable).'
    )


def _leaf_ratio(mean: jax.Array, var: jax.Array, eps_rel) -> jax.Array:
  floor = eps_rel * jnp.mean(var) + _FLOOR_ABS
  return (mean * mean) / (var + floor)


@metadata.describe(
  citations=('liu2020understanding',),
  row=metadata.Row(
    'GSNR',
    'per-parameter / per-layer GSNR statistic',
    papers='[Liu et al. 2020](https://arxiv.org/abs/2001.07384)',
    also=('gsnr_by_leaf',),
  ),
)
def gsnr(
  population: optax.Params,
  axes: pop_lib.PopulationAxes | None = None,
  *,
  eps_rel: float = 1e-8,
) -> optax.Params:
  r"""Per-parameter gradient signal-to-noise ratio of a population.

  For every coordinate :math:`j`, over the ``K`` members :math:`g_k`:

  .. math::
    \bar g_j = \frac1K \sum_k g_{k,j}, \qquad
    s^2_j = \frac1K \sum_k (g_{k,j} - \bar g_j)^2, \qquad
    r_j = \frac{\bar g_j^2}{s^2_j + \epsilon_r}, \qquad
    \epsilon_r = \mathrm{eps\_rel} \cdot \mathrm{mean}_{\text{leaf}}(s^2)
      + 10^{-30} .

  Liu et al. (2020) define the GSNR over the per-sample gradient
  distribution. For a population of group means of ``b`` samples each the
  ratio is ``b`` times larger (the variance of a mean shrinks by ``b``);
  :func:`scale_by_gsnr` normalises it, which removes ``b`` and ``K``.

  Statistics accumulate in float32 (one pass over the members, see
  :func:`optax_ext.population.mean_and_var`); on a named axis the mean and
  variance are merged across indices with the Chan formula (two
  all-reduces of param-sized float32 buffers).

  Args:
    population: leaves ``[K, *param.shape]`` (stacked) or param-shaped (one
      member per index of ``axes.axis_name``). ``K >= 2``; ``K >= 4`` is
      advisable (``K = 2`` is a one-degree-of-freedom variance).
    axes: where the members live.
    eps_rel: relative variance floor, ``>= 0``.

  Returns:
    :math:`r`, a float32 tree shaped like one member. A coordinate where every
    member is equal has :math:`s^2 = 0` and a large but finite ratio (the
    floor), unless :math:`\bar g = 0` too, which gives ``0``. NaN or Inf
    members give NaN ratios in the coordinates they touch.

  Raises:
    ValueError: if ``K < 2`` (at trace time) or ``eps_rel`` is invalid.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import variance
    >>> population = jnp.array([[1., 1.], [2., -1.], [3., 1.], [2., -1.]])
    >>> variance.gsnr(population)
    Array([8., 0.], dtype=float32)

  References:
    Liu et al., `Understanding Why Neural Networks Generalize Well Through GSNR
    of Parameters <https://arxiv.org/abs/2001.07384>`_, 2020.

    Jiang et al., `Accelerating Large Batch Training via Gradient Signal to
    Noise Ratio (GSNR) <https://arxiv.org/abs/2309.13681>`_, 2023.
  """
  _check_eps_rel('gsnr', eps_rel)
  _check_size('gsnr', population, axes)
  return _ratio_from_moments(pop_lib.mean_and_var(population, axes), eps_rel)


def _ratio_from_moments(mean_var, eps_rel):
  mean, var = mean_var
  return jax.tree.map(lambda m, v: _leaf_ratio(m, v, eps_rel), mean, var)


@metadata.describe(citations=('liu2020understanding',))
def gsnr_by_leaf(
  population: optax.Params,
  axes: pop_lib.PopulationAxes | None = None,
  *,
  eps_rel: float = 1e-8,
) -> optax.Params:
  r"""Layer-wise GSNR: the mean of :func:`gsnr` over each leaf.

  Liu et al. (2020) summarise a layer by the average GSNR of its parameters.

  Args:
    population: as for :func:`gsnr`.
    axes: where the members live.
    eps_rel: relative variance floor, ``>= 0``.

  Returns:
    A tree of float32 scalars, one per leaf.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import variance
    >>> members = jnp.array([[1., 1.], [2., -1.], [3., 1.], [2., -1.]])
    >>> variance.gsnr_by_leaf({'a': members})
    {'a': Array(4., dtype=float32)}

  References:
    Liu et al., `Understanding Why Neural Networks Generalize Well Through GSNR
    of Parameters <https://arxiv.org/abs/2001.07384>`_, 2020.
  """
  return jax.tree.map(jnp.mean, gsnr(population, axes, eps_rel=eps_rel))


def _normalised_factor(r, cap, gamma_min, gamma_max, normalize):
  """Caps, normalises to mean one (per leaf or global) and clips ``r``."""
  capped = jax.tree.map(lambda x: jnp.minimum(x, cap), r)
  tiny = jnp.finfo(jnp.float32).tiny

  def scale(x, m):
    out = jnp.where(m > 0, x / jnp.maximum(m, tiny), jnp.ones_like(x))
    return jnp.clip(out, gamma_min, gamma_max)

  if normalize == 'per_leaf':
    return jax.tree.map(lambda x: scale(x, jnp.mean(x)), capped)
  leaves = jax.tree.leaves(capped)
  total = sum(jnp.sum(x) for x in leaves)
  m = total / sum(x.size for x in leaves)
  return jax.tree.map(lambda x: scale(x, m), capped)


@metadata.describe(
  citations=('jiang2023accelerating', 'liu2020understanding'),
  case=metadata.Case(
    kind='param',
    kwargs={'ema_decay': 0.5},
    hyperparams=('gamma_min', 'gamma_max', 'cap', 'ema_decay'),
    # The GSNR factor can reach 10x: keep 10 * lr * curvature < 2.
    lr=0.02,
    rosenbrock=(2e-4, 20000),
    extra_args='group_grads',
    post='heavy_ball',
  ),
  row=metadata.Row(
    'GSNR',
    'GSNR-scaled updates (VRGD)',
    papers='[Jiang et al. 2023](https://arxiv.org/abs/2309.13681)',
    also=('aggregate_by_gsnr',),
  ),
)
def scale_by_gsnr(
  gamma_min: float = 0.1,
  gamma_max: float = 10.0,
  cap: float = 100.0,
  eps_rel: float = 1e-8,
  ema_decay: float = 0.0,
  normalize: str = 'per_leaf',
  axes: pop_lib.PopulationAxes | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Scales updates element-wise by the normalised, bounded GSNR (VRGD).

  With :math:`r` the :func:`gsnr` of the population passed as the extra
  argument ``group_grads``:

  .. math::
    \tilde r = \min(r, R), \qquad
    \hat r = \mathrm{clip}\Big(\frac{\tilde r}
      {\mathrm{mean}(\tilde r)}, \gamma_{\min}, \gamma_{\max}\Big), \qquad
    \bar r \leftarrow \rho \bar r + (1 - \rho) \hat r, \qquad
    u \leftarrow \bar r \odot u,

  where the mean runs over each leaf (``normalize='per_leaf'``) or over all
  parameters (``'global'``), and a leaf whose capped mean is zero (its mean
  gradient is zero everywhere) gets :math:`\hat r \equiv 1`. Coordinates with
  a high signal-to-noise ratio get larger steps and noisy ones smaller, while
  the average step size of each layer is unchanged (before clipping).

  ``update(updates, state, params=None, *, group_grads, **extra_args)``: the
  ``updates`` are param-shaped (the mean gradient, or what an earlier
  transform made of it, e.g. Adam's direction) and ``group_grads`` is the
  population. :func:`aggregate_by_gsnr` and the ``vr_*`` aliases take the
  population as their updates and pass it on for you, together with
  ``group_mean_var=(mean, var)`` (float32, ddof 0), the statistics they
  computed anyway, which saves a second pass over the members.

  .. note::
    The VRGD paper's algorithm boxes and code were unavailable (only its
    abstract). This implementation chooses: population variance (ddof 0);
    normalisation per leaf by default; the cap :math:`R` applied before
    normalising, to numerator and mean alike, so that zero-variance
    coordinates (frozen parameters, identical members) cannot dominate the
    mean, and a population of identical members gives :math:`\hat r \equiv 1`
    (the plain optimiser); bounds :math:`[\gamma_{\min}, \gamma_{\max}] =
    [0.1, 10]`, symmetric in log space; the EMA starts from ones, without
    bias correction. Results may differ from the paper's.

  Cost: one pass over the ``K`` members (float32), plus one param-sized
  float32 state buffer (the factor, kept for logging and the EMA). On a
  named axis: two all-reduces of param-sized float32 buffers. The members
  must be i.i.d. sub-batches of one batch at the same parameters (skewed
  device shards bias the ratio); that ``updates`` derives from
  ``group_grads`` cannot be checked under ``jit``.

  Args:
    gamma_min: lower bound of the factor, ``> 0``.
    gamma_max: upper bound of the factor, ``>= gamma_min``.
    cap: :math:`R`, the cap on :math:`r` before normalising, ``> 0``.
    eps_rel: relative variance floor of :func:`gsnr`, ``>= 0``.
    ema_decay: :math:`\rho` in ``[0, 1)``; ``0`` applies each step's factor.
    normalize: ``'per_leaf'`` or ``'global'``.
    axes: where the members of ``group_grads`` live.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`ScaleByGsnrState`; its updates keep the dtype of ``updates``.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import variance
    >>> tx = variance.scale_by_gsnr()
    >>> population = jnp.array([[1., 1.], [2., -1.], [3., 1.], [2., -1.]])
    >>> mean = population.mean(0)
    >>> state = tx.init(mean)
    >>> updates, state = tx.update(mean, state, group_grads=population)
    >>> updates, optax.tree.get(state, 'gsnr')
    (Array([4., 0.], dtype=float32), Array([2. , 0.1], dtype=float32))

  References:
    Jiang et al., `Accelerating Large Batch Training via Gradient Signal to
    Noise Ratio (GSNR) <https://arxiv.org/abs/2309.13681>`_, 2023.

    Liu et al., `Understanding Why Neural Networks Generalize Well Through GSNR
    of Parameters <https://arxiv.org/abs/2001.07384>`_, 2020.
  """
  where = 'scale_by_gsnr'
  validation.check_positive(where, 'gamma_min', gamma_min, allow_schedule=False)
  validation.check_positive(where, 'gamma_max', gamma_max, allow_schedule=False)
  if all(isinstance(g, (int, float)) for g in (gamma_min, gamma_max)) and (
    gamma_max < gamma_min
  ):
    raise ValueError(
      f'{where}: `gamma_max` must be >= `gamma_min`={gamma_min!r}, got '
      f'{gamma_max!r}.'
    )
  validation.check_positive(where, 'cap', cap, allow_schedule=False)
  _check_eps_rel(where, eps_rel)
  validation.check_number(
    where,
    'ema_decay',
    ema_decay,
    lower=0.0,
    upper=1.0,
    upper_inclusive=False,
    allow_schedule=False,
  )
  validation.check_one_of(where, 'normalize', normalize, _NORMALIZE)
  axes = pop_lib.PopulationAxes() if axes is None else axes
  no_ema = isinstance(ema_decay, (int, float)) and ema_decay == 0

  def init_fn(params):
    ones = jax.tree.map(lambda p: jnp.ones_like(p, jnp.float32), params)
    return ScaleByGsnrState(count=jnp.zeros([], jnp.int32), gsnr=ones)

  def update_fn(
    updates,
    state,
    params=None,
    *,
    group_grads=None,
    group_mean_var=None,
    **extra_args: Any,
  ):
    del params, extra_args
    if group_grads is None:
      raise ValueError(
        f'{where}: pass the gradient population as the extra argument '
        '`group_grads=` (or use aggregate_by_gsnr / vr_*, which take the '
        'population as their updates).'
      )
    base.check_population(where, group_grads, updates, axes, lean_ok=True)
    if group_mean_var is None:
      r = gsnr(group_grads, axes, eps_rel=eps_rel)
    else:  # statistics precomputed by the caller (aggregate_by_gsnr, vr_*)
      _check_size(where, group_grads, axes)
      r = _ratio_from_moments(group_mean_var, eps_rel)
    factor = _normalised_factor(r, cap, gamma_min, gamma_max, normalize)
    if not no_ema:
      factor = jax.tree.map(
        lambda old, new: ema_decay * old + (1.0 - ema_decay) * new,
        state.gsnr,
        factor,
      )
    scaled = jax.tree.map(
      lambda f, u: (f * u.astype(jnp.float32)).astype(u.dtype),
      factor,
      updates,
    )
    count = optax.safe_int32_increment(state.count)
    return scaled, ScaleByGsnrState(count=count, gsnr=factor)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@metadata.describe(
  citations=('jiang2023accelerating', 'liu2020understanding'),
  properties=metadata.Properties(robust=False),
  case=metadata.Case(
    kind='aggregator',
    kwargs={},
    hyperparams=('gamma_min', 'gamma_max', 'cap'),
    # The GSNR factor can reach 10x: keep 10 * lr * curvature < 2.
    lr=0.02,
    rosenbrock=(1e-4, 20000),
  ),
  benchmarks=(
    metadata.Benchmark(
      'aggregators', 'aggregate_by_gsnr', state_traffic=(0, 1)
    ),
    metadata.Benchmark(
      'aggregators',
      'aggregate_by_gsnr(ema)',
      kwargs={'ema_decay': 0.9},
      state_traffic=(1, 1),
    ),
    metadata.Benchmark('train_step', 'gsnr'),
  ),
)
@validation.named_errors
def aggregate_by_gsnr(
  gamma_min: float = 0.1,
  gamma_max: float = 10.0,
  cap: float = 100.0,
  eps_rel: float = 1e-8,
  ema_decay: float = 0.0,
  normalize: str = 'per_leaf',
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""Aggregates a population to its GSNR-scaled mean, :math:`\hat r\bar g`.

  The aggregator form of :func:`scale_by_gsnr`: ``update`` takes the
  population as its updates, so it comes first in a chain, e.g.
  ``optax.chain(aggregate_by_gsnr(), optax.sgd(0.1))`` (= :func:`vr_sgd`).
  See :func:`scale_by_gsnr` for the maths, the choices made where the paper
  is silent, and the cost.

  Properties: permutation-invariant; not robust (a NaN or Inf member makes
  the statistics NaN; compose :func:`optax.apply_if_finite` after it to skip
  such steps). With identical members the factor is 1 and the update is the
  mean.

  Args:
    gamma_min: lower bound of the factor, ``> 0``.
    gamma_max: upper bound of the factor, ``>= gamma_min``.
    cap: the cap on the GSNR before normalising, ``> 0``.
    eps_rel: relative variance floor, ``>= 0``.
    ema_decay: EMA decay of the factor in ``[0, 1)``.
    normalize: ``'per_leaf'`` or ``'global'``.
    axes: where the members live.

  Returns:
    An :class:`optax_ext.Aggregator` with state :class:`ScaleByGsnrState`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import variance
    >>> tx = variance.aggregate_by_gsnr()
    >>> population = jnp.array([[1., 1.], [2., -1.], [3., 1.], [2., -1.]])
    >>> updates, state = tx.update(population, tx.init(jnp.zeros(2)))
    >>> updates
    Array([4., 0.], dtype=float32)

  References:
    Jiang et al., `Accelerating Large Batch Training via Gradient Signal to
    Noise Ratio (GSNR) <https://arxiv.org/abs/2309.13681>`_, 2023.
  """
  inner = scale_by_gsnr(
    gamma_min=gamma_min,
    gamma_max=gamma_max,
    cap=cap,
    eps_rel=eps_rel,
    ema_decay=ema_decay,
    normalize=normalize,
    axes=axes,
  )
  return _mean_with_population.mean_with_population(
    'aggregate_by_gsnr', inner, axes
  )
