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
"""PCGrad: projecting conflicting gradients."""

import jax
from jax import lax
import jax.numpy as jnp

from optax_ext._src import base
from optax_ext._src import linalg
from optax_ext._src import metadata
from optax_ext._src import population as pop_lib
from optax_ext._src import validation
from optax_ext.alignment import _weighting

_REDUCTIONS = ('sum', 'mean')


def visiting_orders(key: jax.Array | None, k: int) -> jax.Array:
  """``[K, K]``: row ``i`` is the order task ``i`` visits the others in.

  Index order without a key; otherwise an independent permutation per row.
  """
  if key is None:
    return jnp.broadcast_to(jnp.arange(k), (k, k))
  return jax.vmap(lambda kk: jax.random.permutation(kk, k))(
    jax.random.split(key, k)
  )


@metadata.describe(citations=('yu2020gradient',))
def pcgrad_weighting(
  gramian: jax.Array,
  key: jax.Array | None = None,
  eps: float = 1e-12,
) -> jax.Array:
  r"""PCGrad weights from the Gramian.

  For each task :math:`i`: start from :math:`c = e_i`; for every other task
  :math:`j` (in a random order when ``key`` is given, else by index), if
  :math:`(Gc)_j < 0` subtract the projection on :math:`g_j`,
  :math:`c_j \mathrel{-}= (Gc)_j / G_{jj}`. The weights are
  :math:`\sum_i c` (TorchJD's ``PCGradWeighting``). Tasks with
  :math:`G_{jj} \le \epsilon \max_k G_{kk}` are never projected on (a
  threshold relative to the Gramian's scale, so the weights do not change
  when the Jacobian is scaled).

  Args:
    gramian: ``[K, K]`` (float64 is solved in float64, others in float32).
    key: a PRNG key for the projection orders (``None``: fixed order).
    eps: minimum squared norm of a task to project on, relative to the
      largest squared task norm.

  Returns:
    ``[K]`` in the solve dtype (the *sum* convention).

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from optax_ext import alignment
    >>> g = jnp.array([[18.0, -22.0], [-22.0, 38.0]])
    >>> np.asarray(alignment.pcgrad_weighting(g), float).round(4)
    array([2.2222, 1.5789])
  """
  g = linalg.solve_dtype_gramian(gramian)
  k = g.shape[0]
  orders = visiting_orders(key, k)
  # Relative to the largest squared task norm: scale-equivariant.
  threshold = eps * jnp.max(jnp.diag(g))

  def one(i, order):
    def body(n, c):
      j = order[n]
      inner = g[j] @ c
      project = (j != i) & (inner < 0) & (g[j, j] > threshold)
      step = jnp.where(project, inner / jnp.where(project, g[j, j], 1.0), 0.0)
      return c.at[j].add(-step)

    c0 = pop_lib.vary_like(jax.nn.one_hot(i, k, dtype=g.dtype), g)
    return lax.fori_loop(0, k, body, c0)

  return jnp.sum(jax.vmap(one)(jnp.arange(k), orders), axis=0)


@metadata.describe(
  citations=('yu2020gradient',),
  properties=metadata.Properties(
    robust=False,
    multitask=metadata.Multitask(
      non_conflicting=False,
      linear_under_scaling=True,
      permutation_invariant=False,
      homogeneity_degree=1,
    ),
  ),
  case=metadata.Case(
    kind='aggregator',
    hyperparams=('eps',),
    lr=0.05,
    rosenbrock=(2e-4, 20000),
    population='aligned',
  ),
  benchmarks=(
    metadata.Benchmark(
      'multitask', 'pcgrad', kwargs={'key': 0}, peer=('PCGrad', {})
    ),
  ),
  row=metadata.Row(
    'multi-task',
    'PCGrad',
    papers='[Yu et al. 2020](https://arxiv.org/abs/2001.06782)',
    also=('pcgrad_weighting',),
  ),
)
def aggregate_by_pcgrad(
  key: int | jax.Array | None = 0,
  reduction: str = 'sum',
  eps: float = 1e-12,
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""PCGrad: each task gradient projected off those it conflicts with.

  .. math::
    \tilde g_i = g_i - \sum_{j \in \pi_i} \frac{\min(0, \langle \tilde g_i,
    g_j\rangle)}{\|g_j\|^2} g_j \ (\text{sequentially}), \qquad u =
    \sum_i \tilde g_i,

  projections onto the original :math:`g_j` in a random order
  :math:`\pi_i` per task (computed in Gramian form,
  :func:`pcgrad_weighting`).

  Properties: linear under scaling, weighted, permutation-invariant in
  distribution (not with a fixed order and ``K >= 3``); not
  non-conflicting.

  .. note::
    Conventions differ: the official TF code sums (``reduction='sum'``, the
    default, as TorchJD) and, despite shuffling, uses a fixed order
    (``key=None``); the popular PyTorch port averages
    (``reduction='mean'``, ``K`` times smaller).

  Args:
    key: int seed or PRNG key for the projection orders (kept in the state,
      split every step); ``None`` for the fixed index order.
    reduction: ``'sum'`` or ``'mean'``.
    eps: tasks with squared norm ``<= eps`` times the largest are not
      projected on.
    axes: where the members live.

  Returns:
    An :class:`optax_ext.Aggregator` with state
    :class:`optax_ext.alignment.AggregateByWeightingState`.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from optax_ext import alignment
    >>> tx = alignment.aggregate_by_pcgrad()
    >>> jac = jnp.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    >>> np.asarray(tx.update(jac, tx.init(jnp.zeros(3)))[0], float).round(4)
    array([0.5848, 3.8012, 3.8012])

  References:
    Yu et al., `Gradient Surgery for Multi-Task Learning
    <https://arxiv.org/abs/2001.06782>`_, NeurIPS 2020.
  """
  where = 'aggregate_by_pcgrad'
  validation.check_one_of(where, 'reduction', reduction, _REDUCTIONS)
  validation.check_number(where, 'eps', eps, lower=0.0, allow_schedule=False)

  def weighting(g, k=None):
    w = pcgrad_weighting(g, k, eps)
    return w / g.shape[0] if reduction == 'mean' else w

  return _weighting.weighted_aggregator(where, weighting, axes, key=key)
