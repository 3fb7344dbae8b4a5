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
"""Aggregate the shared trunk's task rows, pass the heads' gradients."""

from typing import Any, NamedTuple

import jax
import optax

from optax_ext._src import aggregation
from optax_ext._src import base
from optax_ext._src import metadata
from optax_ext.alignment import _jacobian


class AggregateSharedTrunkState(NamedTuple):
  """State of :func:`aggregate_shared_trunk`.

  Attributes:
    inner: the aggregator's state (built on the shared parameters only).
  """

  inner: Any


# Battery case: Every leaf shared: the battery's populations are all task rows
# (the mixed trunk/head tree is tested in test_shared_trunk.py).
@metadata.describe(
  citations=('quinton2024jacobian',),
  properties=metadata.Properties(robust=False),
  case=metadata.Case(
    kind='aggregator',
    kwargs=lambda: {
      'aggregator': aggregation.aggregate_by_mean(),
      'shared': lambda params: jax.tree.map(lambda _: True, params),
    },
    rosenbrock=(1e-3, 5000),
    static_args=('aggregator', 'shared'),
    layouts=False,
  ),
)
def aggregate_shared_trunk(
  aggregator: base.Aggregator, shared: Any
) -> optax.GradientTransformationExtraArgs:
  r"""Aggregates the shared parameters' task rows; heads pass through.

  The companion of :func:`task_jacobian` with ``shared=``: its leaves are
  ``[T, *shape]`` task rows for the shared parameters and ordinary
  gradients for the rest. ``aggregator`` (any ``aggregate_by_*``) reduces
  the shared rows, as if the trunk were the whole model, and the heads'
  gradients are returned unchanged: TorchJD's ``mtl_backward`` then
  ``jac_to_grad(shared_params, aggregator)``.

  Args:
    aggregator: reduces the shared parameters' population.
    shared: the same mask given to :func:`task_jacobian` (a bool pytree
      with the params' structure, or a callable ``params -> mask``).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` mapping that mixed tree to
    param-shaped updates; ``update`` needs ``params``. Stacked task
    populations only (no named axis, no Microbatches).

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> params = {'trunk': jnp.array([1.0, 2.0]), 'head': jnp.array([0.5])}
    >>> mask = {'trunk': True, 'head': False}
    >>> def losses(p):
    ...   return jnp.stack([p['trunk'][0] * p['head'][0], p['trunk'][1]])
    >>> _, jac = alignment.task_jacobian(losses, shared=mask)(params)
    >>> jac['trunk'].shape, jac['head'].shape  # rows only for the trunk
    ((2, 2), (1,))
    >>> tx = alignment.aggregate_shared_trunk(
    ...     alignment.aggregate_by_upgrad(), mask)
    >>> u, _ = tx.update(jac, tx.init(params), params)
    >>> u['head']  # d(loss_0)/d(head) = trunk[0]
    Array([1.], dtype=float32)

  References:
    Quinton and Rey, `Jacobian Descent for Multi-Objective Optimization
    <https://arxiv.org/abs/2406.16232>`_, 2024; reference code `TorchJD
    <https://github.com/TorchJD/torchjd>`_ (``mtl_backward``).
  """
  where = 'aggregate_shared_trunk'

  def split(tree, flags):
    leaves = jax.tree.leaves(tree)
    if len(leaves) != len(flags):
      raise ValueError(
        f'{where}: the updates have {len(leaves)} leaves, the params '
        f'{len(flags)}; pass the output of task_jacobian(..., shared=).'
      )
    trunk = [x for x, f in zip(leaves, flags, strict=True) if f]
    heads = [x for x, f in zip(leaves, flags, strict=True) if not f]
    return trunk, heads

  def init_fn(params):
    flags = _jacobian.shared_leaves(where, shared, params)
    trunk, _ = split(params, flags)
    return AggregateSharedTrunkState(inner=aggregator.init(trunk))

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError(
        f'{where}: `params` are required by update (they tell the shared '
        'leaves and their shapes).'
      )
    base.reject_microbatches(
      where, updates, 'the mixed tree of task_jacobian(..., shared=)'
    )
    flags = _jacobian.shared_leaves(where, shared, params)
    trunk_rows, head_grads = split(updates, flags)
    trunk_params, _ = split(params, flags)
    trunk_u, inner = aggregator.update(
      trunk_rows, state.inner, trunk_params, **extra_args
    )
    t, h = iter(trunk_u), iter(head_grads)
    treedef = jax.tree.structure(params)
    out = jax.tree.unflatten(
      treedef, [next(t) if f else next(h) for f in flags]
    )
    return out, AggregateSharedTrunkState(inner=inner)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
