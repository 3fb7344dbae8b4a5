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
"""AGVM: per-module learning rates that align the modules' gradient noise."""

from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import base
from optax_ext._src import metadata
from optax_ext._src import numerics
from optax_ext._src import population as pop_lib
from optax_ext._src import validation

_TINY = 1e-6  # the reference's guard on the variance ratio


class AgvmState(NamedTuple):
  """State of :func:`agvm`.

  Attributes:
    count: int32 number of updates so far.
    factors: float32 ``[M]`` per-module learning-rate factors, one per
      distinct module label in the order the labels first appear among the
      leaves (start at 1).
    inner_state: the inner optimiser's state.
  """

  count: jax.Array
  factors: jax.Array
  inner_state: optax.OptState


def _labels(where, module_labels, tree):
  labels = module_labels(tree) if callable(module_labels) else module_labels
  if jax.tree.structure(labels) != jax.tree.structure(tree):
    raise ValueError(
      f'{where}: `module_labels` must have the tree structure of the params '
      f'{jax.tree.structure(tree)}, got {jax.tree.structure(labels)}.'
    )
  leaves = jax.tree.leaves(labels)
  order = list(dict.fromkeys(leaves))
  return leaves, order


def _half_means(population, axes: pop_lib.PopulationAxes, k: int):
  """Means of members ``[0, K//2)`` and ``[K//2, K)``, in member order."""
  half = k // 2
  return pop_lib.range_means(population, ((0, half), (half, k)), axes)


def _battery_labels(params):
  """Alternate leaves in two modules, ``'even'`` and ``'odd'``."""
  leaves, treedef = jax.tree.flatten(params)
  names = ('even', 'odd')
  return jax.tree.unflatten(treedef, [names[i % 2] for i in range(len(leaves))])


# Battery case: Alternate leaves in two modules; refreshed every step from step
# 0 so the battery sees the factors move.
@metadata.describe(
  citations=('xue2022large',),
  properties=metadata.Properties(robust=False),
  case=metadata.Case(
    kind='aggregator',
    kwargs=lambda: {
      'inner': optax.identity(),
      'module_labels': _battery_labels,
      'reference_module': 'even',
      'update_interval': 1,
      'start_step': 0,
    },
    hyperparams=('momentum', 'min_factor', 'max_factor'),
    rosenbrock=(1e-3, 5000),
    static_args=('inner', 'module_labels'),
  ),
  row=metadata.Row(
    'variance',
    "AGVM, per-module learning rates from the halves' gradient disagreement",
    papers='[Xue et al. 2022](https://arxiv.org/abs/2210.11078)',
  ),
)
def agvm(
  inner: optax.GradientTransformation,
  module_labels: Any | Callable[..., Any],
  reference_module: Hashable,
  *,
  momentum: float = 0.97,
  update_interval: int = 5,
  start_step: int = 500,
  stop_step: int | None = None,
  min_factor: float = 0.5,
  max_factor: float = 10.0,
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""AGVM: the inner optimiser on the mean, each module's rate modulated.

  Large batches misalign the gradient variances of a dense predictor's
  modules (backbone, neck, heads); AGVM gives each module :math:`i` its own
  learning-rate factor :math:`\mu_i` from the disagreement of two
  independent gradient estimates. With the population split into halves
  (members ``[0, K/2)`` and ``[K/2, K)``, e.g. the devices' two halves) and
  :math:`\hat g_{1}^{(i)}, \hat g_{2}^{(i)}` their mean gradients restricted
  to module :math:`i`,

  .. math::
    \Phi_i = 1 - \cos\big(\hat g_1^{(i)}, \hat g_2^{(i)}\big), \qquad
    \mu_i \leftarrow \alpha \mu_i + (1 - \alpha)
    \sqrt{\mathrm{clip}\Big(\frac{\Phi_r + 10^{-6}}{\Phi_i + 10^{-6}},
    \mu_{\min}, \mu_{\max}\Big)},

  with :math:`r` the reference module (the backbone in the paper), every
  ``update_interval`` steps between ``start_step`` and ``stop_step``. The
  inner optimiser receives the population's mean and its update for module
  :math:`i` is multiplied by :math:`\mu_i` from ``start_step`` to
  ``stop_step`` (exactly a per-module learning rate, whatever the inner
  optimiser, as the reference multiplies each parameter group's rate).

  Cost: the two half means (one read of a stacked population; two weighted
  sums on a named axis or a lean population) and three dot products per
  module; the rest is the inner optimiser.

  .. note::
    Follows the authors' reference code (``AgvmOptimizerHook``): defaults
    ``momentum=0.97``, ``update_interval=5``, ``start_step=500`` (after
    warm-up), bounds ``[0.5, 10]`` on the squared factor, factors starting
    at 1, and steps counted from 0. The reference can also measure the
    similarity on Adam-preconditioned gradients (``use_adam``); here it is
    always measured on the raw gradients, whatever ``inner`` is. A module
    whose half means has a zero norm counts as fully noisy
    (:math:`\cos = 0`) instead of the reference's NaN.

  Args:
    inner: the optimiser (with its learning rate) run on the mean gradient.
    module_labels: a tree of hashable labels with the params' structure (or
      a function of the params returning one): leaves with the same label
      form one module, as in ``optax.multi_transform``.
    reference_module: the label of the reference module :math:`r`.
    momentum: :math:`\alpha \in [0, 1)`, the factors' EMA decay.
    update_interval: refresh the factors every this many steps (``>= 1``).
    start_step: first step (``>= 0``) at which factors are refreshed and
      applied.
    stop_step: last such step, or ``None`` for no end.
    min_factor: lower bound :math:`\mu_{\min} > 0` of the variance ratio.
    max_factor: upper bound :math:`\mu_{\max} \ge \mu_{\min}` (and
      ``> 0``).
    axes: where the members live (``K >= 2``).

  Returns:
    An :class:`optax_ext.Aggregator` with state :class:`AgvmState`;
    ``optax.tree.get(state, 'factors')`` reads the factors.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import variance
    >>> params = {'backbone': jnp.zeros(2), 'head': jnp.zeros(2)}
    >>> labels = {'backbone': 'backbone', 'head': 'head'}
    >>> tx = variance.agvm(optax.sgd(1.0), labels, 'backbone',
    ...                    momentum=0.0, start_step=0)
    >>> # Two halves: the backbone's agree (Phi = 0), the head's are
    >>> # orthogonal (Phi = 1): the head's rate is sqrt(0.5).
    >>> pop = {'backbone': jnp.array([[1., 1.], [1., 1.]]),
    ...        'head': jnp.array([[1., 0.], [0., 1.]])}
    >>> u, state = tx.update(pop, tx.init(params))
    >>> state.factors.round(4)
    Array([1.    , 0.7071], dtype=float32)

  References:
    Xue et al., `Large-batch Optimization for Dense Visual Predictions
    <https://arxiv.org/abs/2210.11078>`_, NeurIPS 2022; reference code
    `Sense-X/AGVM <https://github.com/Sense-X/AGVM>`_.
  """
  where = 'agvm'
  if not isinstance(inner, optax.GradientTransformation):
    raise TypeError(
      f'{where}: `inner` must be an optax.GradientTransformation, got '
      f'{type(inner).__name__}.'
    )
  validation.check_decay(where, 'momentum', momentum, allow_schedule=False)
  validation.check_integer(where, 'update_interval', update_interval, lower=1)
  validation.check_integer(where, 'start_step', start_step, lower=0)
  if stop_step is not None:
    validation.check_integer(where, 'stop_step', stop_step, lower=0)
  validation.check_positive(
    where, 'min_factor', min_factor, allow_schedule=False
  )
  validation.check_positive(
    where, 'max_factor', max_factor, allow_schedule=False
  )
  if (
    not isinstance(min_factor, jax.core.Tracer)
    and not isinstance(max_factor, jax.core.Tracer)
    and float(max_factor) < float(min_factor)
  ):
    raise ValueError(
      f'{where}: `max_factor` must be >= `min_factor` ({min_factor}), got '
      f'{max_factor}.'
    )
  axes = base.resolve_axes(where, axes)
  inner = optax.with_extra_args_support(inner)

  def module_order(tree):
    leaves, order = _labels(where, module_labels, tree)
    if reference_module not in order:
      raise ValueError(
        f'{where}: `reference_module` {reference_module!r} is not one of the '
        f'module labels {order}.'
      )
    return leaves, order

  def init_fn(params):
    _, order = module_order(params)
    return AgvmState(
      count=jnp.zeros([], jnp.int32),
      factors=jnp.ones(
        (len(order),), numerics.tree_common_accumulation_dtype(params)
      ),
      inner_state=inner.init(params),
    )

  def update_fn(updates, state, params=None, **extra_args):
    population = base.population_arg(where, updates, extra_args)
    extra_args.pop('population', None)
    base.check_population(where, population, params, axes, lean_ok=True)
    k = pop_lib.size(population, axes)
    if k < 2:
      raise ValueError(
        f'{where}: the two halves need K >= 2 members, got K={k}.'
      )
    first, second = _half_means(population, axes, k)
    half = k // 2
    # float64 halves give float64 statistics (float32 otherwise).
    acc = numerics.tree_common_accumulation_dtype(first)
    mean = jax.tree.map(
      lambda a, b: (
        (half * a.astype(acc) + (k - half) * b.astype(acc)) / k
      ).astype(a.dtype),
      first,
      second,
    )
    leaves, order = module_order(params if params is not None else mean)
    index = {label: i for i, label in enumerate(order)}
    m = len(order)
    firsts = [a.astype(acc) for a in jax.tree.leaves(first)]
    seconds = [b.astype(acc) for b in jax.tree.leaves(second)]

    def per_module(values):
      out = [jnp.zeros([], acc) for _ in range(m)]
      for label, v in zip(leaves, values, strict=True):
        out[index[label]] = out[index[label]] + v
      return jnp.stack(out)

    norm1 = jnp.sqrt(per_module([jnp.vdot(a, a) for a in firsts]))
    norm2 = jnp.sqrt(per_module([jnp.vdot(b, b) for b in seconds]))
    # 1 - cos as half the squared distance of the unit vectors: no
    # cancellation when the halves nearly agree (1 - a.b/(|a||b|) loses
    # every digit there in float32).
    inv1 = jnp.where(norm1 > 0, 1.0 / jnp.where(norm1 > 0, norm1, 1.0), 0.0)
    inv2 = jnp.where(norm2 > 0, 1.0 / jnp.where(norm2 > 0, norm2, 1.0), 0.0)
    dist = per_module(
      [
        jnp.sum(jnp.square(a * inv1[index[lb]] - b * inv2[index[lb]]))
        for lb, a, b in zip(leaves, firsts, seconds, strict=True)
      ]
    )
    phi = jnp.where((norm1 > 0) & (norm2 > 0), 0.5 * dist, 1.0)
    ratio = (phi[index[reference_module]] + _TINY) / (phi + _TINY)
    lo = jnp.asarray(min_factor, acc)
    hi = jnp.asarray(max_factor, acc)
    new = jnp.sqrt(jnp.clip(ratio, lo, hi)).astype(state.factors.dtype)
    count = state.count
    active = count >= start_step
    if stop_step is not None:
      active &= count <= stop_step
    refresh = active & (count % update_interval == 0)
    alpha = jnp.asarray(momentum, state.factors.dtype)
    factors = jnp.where(
      refresh, alpha * state.factors + (1.0 - alpha) * new, state.factors
    )
    out, inner_state = inner.update(
      mean, state.inner_state, params, **extra_args
    )
    applied = jnp.where(active, factors, jnp.ones_like(factors))
    out = jax.tree.unflatten(
      jax.tree.structure(out),
      [
        (u * applied[index[label]].astype(u.dtype)).astype(u.dtype)
        for label, u in zip(leaves, jax.tree.leaves(out), strict=True)
      ],
    )
    return out, AgvmState(
      optax.safe_int32_increment(count), factors, inner_state
    )

  return base.Aggregator(init_fn, update_fn)
