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
"""GradDrop: sign-consistency dropout of task gradients per coordinate."""

import functools

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import base
from optax_ext._src import metadata
from optax_ext._src import numerics
from optax_ext._src import population as pop_lib
from optax_ext._src import validation
from optax_ext.alignment import _weighting


@metadata.describe(
  citations=('chen2020just',),
  properties=metadata.Properties(
    robust=False,
    lean=False,
    multitask_exempt='a random sign mask drawn from its key',
  ),
  case=metadata.Case(
    kind='aggregator',
    kwargs={'key': 2},
    hyperparams=('eps',),
    lr=0.05,
    rosenbrock=(2e-4, 20000),
    population='aligned',
  ),
  row=metadata.Row(
    'multi-task',
    'GradDrop',
    papers='[Chen et al. 2020](https://arxiv.org/abs/2010.06808)',
  ),
)
def aggregate_by_graddrop(
  key: int | jax.Array = 0,
  leak: jax.Array | None = None,
  eps: float = 1e-12,
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""GradDrop: keep, per coordinate, the gradients of one sign at random.

  Per coordinate, with the sign purity :math:`P = \tfrac12(1 + \sum_k
  g_k / (\sum_k |g_k| + \epsilon))` and :math:`U \sim \mathrm{Unif}(0, 1)`
  (one draw per coordinate, shared by the tasks), task :math:`k`'s entry is
  kept if it is positive and :math:`P > U`, or negative and :math:`P < U`:

  .. math::
    u = \sum_k \big(\ell_k + (1 - \ell_k) M_k\big) \odot g_k,

  with leak :math:`\ell` (default 0). Not a Gramian weighting: it needs the
  coordinates. On a named axis each device computes it for all members of
  ``1/N`` of the coordinates (``map_coordinates`` in the core:
  one ``all_to_all`` and one ``all_gather`` of the result, O(D) per device).

  Properties: permutation-invariant in distribution; not weighted, not
  linear under scaling, not non-conflicting.

  .. note::
    TorchJD's version divides by :math:`\sum_k |g_k|` without an
    :math:`\epsilon` (0/0 on all-zero coordinates); here ``eps`` guards
    it. The key lives in the state and is split every step. A member with
    NaN or Inf makes those coordinates of the output non-finite (dropping
    it would hide it).

  Args:
    key: an int seed or PRNG key.
    leak: optional ``[K]`` leak coefficients in ``[0, 1]``.
    eps: guard in the denominator.
    axes: where the members live.

  Returns:
    An :class:`optax_ext.Aggregator` with state
    :class:`optax_ext.alignment.AggregateByWeightingState` (``weights`` is
    ``None``).

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> tx = alignment.aggregate_by_graddrop(key=0)
    >>> jac = jnp.array([[1.0, -2.0], [3.0, -1.0]])  # signs agree per column
    >>> tx.update(jac, tx.init(jnp.zeros(2)))[0]
    Array([ 4., -3.], dtype=float32)

  References:
    Chen et al., `Just Pick a Sign: Optimizing Deep Multitask Models with
    Gradient Sign Dropout <https://arxiv.org/abs/2010.06808>`_, NeurIPS 2020.
  """
  where = 'aggregate_by_graddrop'
  axes = base.resolve_axes(where, axes)
  validation.check_number(where, 'eps', eps, lower=0.0, allow_schedule=False)
  key_data = _weighting.as_key_data(where, key)
  leak_arr = None if leak is None else jnp.asarray(leak, jnp.float32)
  if leak_arr is not None and leak_arr.ndim != 1:
    raise ValueError(
      f'{where}: `leak` must be 1-D [K], got shape {leak_arr.shape}.'
    )

  def init_fn(params):
    del params
    return _weighting.AggregateByWeightingState(
      count=jnp.zeros([], jnp.int32), weights=None, key=jnp.array(key_data)
    )

  def update_fn(updates, state, params=None, **extra_args):
    updates = base.population_arg(where, updates, extra_args)
    base.check_population(where, updates, params, axes)
    k = pop_lib.size(updates, axes)
    if leak_arr is not None and leak_arr.shape != (k,):
      raise ValueError(
        f'{where}: `leak` must have shape ({k},), got {leak_arr.shape}.'
      )
    step_key, new_key = _weighting.split_key_data(state.key)
    leaves, treedef = jax.tree.flatten(updates)
    keys = jax.random.split(step_key, len(leaves))
    leak_all = jnp.zeros((k,), jnp.float32) if leak_arr is None else leak_arr

    def drop(members, index, key):  # all K members of some coordinates
      # One uniform draw per coordinate, shared by the members, keyed by the
      # coordinate's index in its leaf: the same draws on every layout, and
      # each device draws only for its own coordinates.
      u = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i)))(
        index.reshape(-1)
      ).reshape(index.shape)
      members = members.astype(numerics.accumulation_dtype(members.dtype))
      total = jnp.sum(members, axis=0)
      magnitude = jnp.sum(jnp.abs(members), axis=0)
      purity = 0.5 * (1.0 + total / (magnitude + eps))
      keep = ((purity > u) & (members > 0)) | ((purity < u) & (members < 0))
      lk = leak_all.reshape((-1,) + (1,) * purity.ndim)
      factor = lk.astype(members.dtype) + (1.0 - lk.astype(members.dtype)) * (
        keep.astype(members.dtype)
      )
      out = jnp.sum(factor * members, axis=0)
      # A non-finite member would be dropped silently under jit (XLA turns
      # the 0/1 factor into a select): propagate it through the total.
      return jnp.where(jnp.isfinite(total), out, total)

    out = treedef.unflatten(
      [
        pop_lib.map_coordinates(
          x, functools.partial(drop, key=kk), axes, with_indices=True
        ).astype(x.dtype)
        for x, kk in zip(leaves, keys, strict=True)
      ]
    )
    return out, _weighting.AggregateByWeightingState(
      count=optax.safe_int32_increment(state.count),
      weights=None,
      key=new_key,
    )

  return base.Aggregator(init_fn, update_fn)
