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
"""Cluster-wise multi-momentum ("More Momentum is All You Need")."""

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from optax_ext._src import base
from optax_ext._src import population as pop_lib
from optax_ext._src import validation

_REF = """Tondji, Kashubin and Cisse, `Variance Reduction in Deep Learning: More
    Momentum is All You Need <https://arxiv.org/abs/2111.11828>`_, 2021.

    Yuan et al., `COVER: A Cluster-based Variance Reduced Method for Online
    Learning <https://doi.org/10.1109/ICASSP.2019.8682437>`_, 2019."""


class ScaleByClusterMomentumState(NamedTuple):
  """State of :func:`scale_by_cluster_momentum`.

  Attributes:
    count: int32 number of updates so far.
    momenta: one float32 momentum buffer per cluster: leaves
      ``[K, *param.shape]`` (stacked), or the local clusters' buffers on the
      named path.
    seen: bool ``[K]`` (or the local clusters'): whether each cluster has
      been visited.
  """

  count: chex.Array
  momenta: optax.Updates
  seen: chex.Array


def scale_by_cluster_momentum(
  num_clusters: int,
  decay: float = 0.9,
  nu: float | None = None,
  priors: Any = None,
  axes: pop_lib.PopulationAxes | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""One momentum per data cluster, combined with the clusters' priors.

  With :math:`G_k` the mean gradient of cluster :math:`k`'s examples in the
  batch and :math:`n_k` their number, passed as extra arguments
  ``cluster_grads`` (a population, leaves ``[K, *param.shape]``, zeros where
  absent) and ``cluster_counts`` (int ``[K]``):

  .. math::
    M_k \leftarrow \begin{cases} G_k & n_k > 0, \text{ first visit} \\
      \beta M_k + (1 - \beta) G_k & n_k > 0 \\ M_k & n_k = 0 \end{cases}
    \qquad \tilde\pi_k = \frac{\pi_k \mathrm{seen}_k}{\sum_j \pi_j
    \mathrm{seen}_j}

  .. math::
    d = \sum_k \tilde\pi_k M_k \quad (\text{SGD+M}), \qquad
    d = (1 - \nu)\,\bar g + \nu \sum_k \tilde\pi_k M_k \quad (\text{QHM}),

  where :math:`\bar g` is ``updates`` (the batch's mean gradient, which a
  plain loop already has). With :math:`\beta = 0` this is a cluster-level
  SAG/COVER memory: every cluster's latest gradient is kept.

  .. note::
    The paper's algorithm box and code were unavailable (only its abstract:
    SGD+momentum, QHM and IGT combined with COVER's multi-momentum). This
    implementation is our reading: one buffer per cluster fed only by that
    cluster, first visit initialised to the gradient, absent clusters left
    unchanged, the step a prior-weighted mean over the visited clusters. The
    IGT variant is not implemented. Cluster ids come from your pipeline
    (e.g. class labels, or offline k-means on frozen features).

  Getting ``cluster_grads``: stratified batches of ``K'`` clusters times
  ``b`` examples and ``jax.vmap(jax.grad(loss))`` over ``K'``, scattered into
  ``K`` slots; or per-example gradients and ``jax.ops.segment_sum``. On a
  named axis (``axes=PopulationAxes(axis=None, axis_name=...)``) each index
  is one cluster and holds its own buffer.

  Cost: ``K`` param-sized float32 buffers (``K * |theta| * 4`` bytes, e.g.
  1000 classes x 25.6M params = 100 GB: choose ``K`` accordingly); one pass
  over them per step.

  Args:
    num_clusters: ``K >= 1``.
    decay: :math:`\beta` in ``[0, 1)`` (default 0.9).
    nu: ``None`` for SGD+momentum, or QHM's :math:`\nu` in ``[0, 1]`` (0.7 is
      QHM's usual value).
    priors: :math:`\pi`, ``[K]`` non-negative weights (training frequencies),
      default uniform.
    axes: where the clusters live (default: stacked on axis 0).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with state
    :class:`ScaleByClusterMomentumState`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.scale_by_cluster_momentum(3, decay=0.5)
    >>> g = jnp.zeros(2)
    >>> state = tx.init(g)
    >>> cg = jnp.array([[1., 1.], [3., 3.], [0., 0.]])  # cluster 2 absent
    >>> u, state = tx.update(g, state, cluster_grads=cg,
    ...                      cluster_counts=jnp.array([2, 2, 0]))
    >>> u
    Array([2., 2.], dtype=float32)

  References:
    {ref}
  """
  where = 'scale_by_cluster_momentum'
  validation.check_integer(where, 'num_clusters', num_clusters, lower=1)
  validation.check_decay(where, 'decay', decay)
  if nu is not None:
    validation.check_number(where, 'nu', nu, lower=0.0, upper=1.0)
  axes = pop_lib.PopulationAxes() if axes is None else axes
  if priors is None:
    prior = jnp.full((num_clusters,), 1.0 / num_clusters, jnp.float32)
  else:
    prior = jnp.asarray(priors, jnp.float32)
    if prior.shape != (num_clusters,):
      raise ValueError(
        f'{where}: `priors` must have shape ({num_clusters},), got '
        f'{prior.shape}.'
      )
    if not isinstance(priors, jax.core.Tracer) and (
      bool(jnp.any(prior < 0)) or not bool(jnp.any(prior > 0))
    ):
      raise ValueError(
        f'{where}: `priors` must be non-negative with a positive entry, got '
        f'{priors!r}.'
      )
  local_k = num_clusters if axes.axis is not None else 1

  def init_fn(params):
    def zeros(p):
      shape = jnp.shape(p)
      if axes.axis is None:
        return jnp.zeros(shape, jnp.float32)
      return jnp.zeros(
        shape[: axes.axis] + (local_k,) + shape[axes.axis :], jnp.float32
      )

    seen_shape = () if axes.axis is None else (local_k,)
    return ScaleByClusterMomentumState(
      count=jnp.zeros([], jnp.int32),
      momenta=jax.tree.map(zeros, params),
      seen=jnp.zeros(seen_shape, jnp.bool_),
    )

  def update_fn(
    updates,
    state,
    params=None,
    *,
    cluster_grads=None,
    cluster_counts=None,
    **extra_args,
  ):
    del params, extra_args
    if cluster_grads is None or cluster_counts is None:
      raise ValueError(
        f'{where}: pass the extra arguments `cluster_grads=` (leaves [K, '
        '*param.shape]) and `cluster_counts=` (int [K]).'
      )
    base.check_population(where, cluster_grads, updates, axes)
    k = pop_lib.size(cluster_grads, axes)
    if k != num_clusters:
      raise ValueError(
        f'{where}: `cluster_grads` has K={k} clusters, but num_clusters='
        f'{num_clusters}.'
      )
    present = jnp.asarray(cluster_counts) > 0
    first = present & ~state.seen
    beta = base.scalar_at(decay, state.count)

    def mom(m, g):
      g = g.astype(jnp.float32)
      shape = (-1,) + (1,) * (g.ndim - 1) if axes.axis is not None else ()
      pres, fst = present.reshape(shape), first.reshape(shape)
      if axes.axis not in (None, 0):
        pres = jnp.moveaxis(pres, 0, axes.axis)
        fst = jnp.moveaxis(fst, 0, axes.axis)
      ema = beta * m + (1.0 - beta) * g
      return jnp.where(pres, jnp.where(fst, g, ema), m)

    momenta = jax.tree.map(mom, state.momenta, cluster_grads)
    seen = state.seen | present
    all_seen = pop_lib.gather(seen, axes) if axes.is_named else seen
    w = prior * all_seen.astype(jnp.float32)
    w = w / jnp.maximum(jnp.sum(w), jnp.finfo(jnp.float32).tiny)
    direction = pop_lib.combine(momenta, w, axes)
    if nu is not None:
      direction = jax.tree.map(
        lambda d, g: (1.0 - nu) * g.astype(jnp.float32) + nu * d,
        direction,
        updates,
      )
    out = jax.tree.map(lambda d, g: d.astype(g.dtype), direction, updates)
    return out, ScaleByClusterMomentumState(
      count=optax.safe_int32_increment(state.count),
      momenta=momenta,
      seen=seen,
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


scale_by_cluster_momentum.__doc__ = scale_by_cluster_momentum.__doc__.replace(
  '{ref}', _REF
)
