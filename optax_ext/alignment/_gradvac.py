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
"""GradVac: gradient vaccine (adaptive similarity targets per task pair)."""

from typing import NamedTuple

import jax
from jax import lax
import jax.numpy as jnp
import optax

from optax_ext._src import base
from optax_ext._src import metadata
from optax_ext._src import population as pop_lib
from optax_ext._src import validation
from optax_ext.alignment import _pcgrad
from optax_ext.alignment import _weighting

_MIN_SIN = 1e-3  # targets with sqrt(1 - target^2) below this are not chased
_TINY = 1e-30


class AggregateByGradvacState(NamedTuple):
  """State of :func:`aggregate_by_gradvac`.

  Attributes:
    count: int32 number of updates so far.
    phi_hat: ``[K, K]`` float32 EMA targets of the pairwise cosines.
    key: raw uint32 PRNG key data for the visiting orders.
  """

  count: jax.Array
  phi_hat: jax.Array
  key: jax.Array


@metadata.describe(citations=('wang2021gradient',))
def gradvac_weighting(
  gramian: jax.Array,
  phi_hat: jax.Array,
  key: jax.Array | None = None,
  beta: float = 0.5,
  eps: float = 1e-8,
) -> tuple[jax.Array, jax.Array]:
  r"""GradVac weights and updated targets from the Gramian.

  For each task :math:`i`, visiting the others :math:`j` in a random order
  (index order without ``key``), with :math:`\phi_{ij}` the cosine between
  the modified :math:`g_i = \sum_k c_k g_k` and the original :math:`g_j`:
  if :math:`\phi_{ij} < \hat\phi_{ij}`,

  .. math::
    c_j \mathrel{+}= \frac{\|g_i\|\,(\hat\phi_{ij}\sqrt{1-\phi_{ij}^2}
    - \phi_{ij}\sqrt{1-\hat\phi_{ij}^2})}{\|g_j\|\sqrt{1-\hat\phi_{ij}^2}
    + \epsilon},

  then :math:`\hat\phi_{ij} \leftarrow (1-\beta)\hat\phi_{ij} +
  \beta\phi_{ij}`. Weights: :math:`\sum_i c^{(i)}` (the sum convention,
  TorchJD's ``GradVacWeighting``).

  Args:
    gramian: float32 ``[K, K]``.
    phi_hat: ``[K, K]`` current targets (zeros at the start).
    key: a PRNG key for the orders, or ``None``.
    beta: EMA rate :math:`\beta \in [0, 1]` of the targets.
    eps: relative denominator guard.

  Returns:
    ``(weights [K], new phi_hat [K, K])``, float32.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> g = jnp.array([[18.0, -22.0], [-22.0, 38.0]])
    >>> w, phi = alignment.gradvac_weighting(g, jnp.zeros((2, 2)))
    >>> w.round(4)  # with zero targets: PCGrad's projections
    Array([2.2222, 1.5789], dtype=float32)
  """
  g = jnp.asarray(gramian, jnp.float32)
  phi_hat = jnp.asarray(phi_hat, jnp.float32)
  k = g.shape[0]
  orders = _pcgrad.visiting_orders(key, k)
  norms = jnp.sqrt(jnp.maximum(jnp.diag(g), 0.0))

  def row(i, order, targets):
    def body(n, carry):
      c, cg, targets = carry
      j = order[n]
      visit = j != i
      norm_i = jnp.sqrt(jnp.maximum(cg @ c, 0.0))
      scale = norm_i * norms[j]
      phi = jnp.clip(cg[j] / (scale * (1.0 + eps) + _TINY), -1.0, 1.0)
      target = targets[j]
      s_phi = jnp.sqrt(jnp.maximum(1.0 - phi * phi, 0.0))
      s_hat = jnp.sqrt(jnp.maximum(1.0 - target * target, 0.0))
      # A target at cosine ~1 asks for an infinite correction (the formula
      # divides by sqrt(1 - target^2)): such pairs, and differences at
      # rounding level, are left alone.
      fix = visit & (phi < target - 1e-6) & (s_hat > _MIN_SIN) & (scale > 0)
      w = norm_i * (target * s_phi - phi * s_hat)
      w = w / (norms[j] * s_hat * (1.0 + eps) + _TINY)
      w = jnp.where(fix, w, 0.0)
      c = c.at[j].add(w)
      cg = cg + w * g[j]
      new_target = jnp.where(visit, (1.0 - beta) * target + beta * phi, target)
      return c, cg, targets.at[j].set(new_target)

    c0 = jax.nn.one_hot(i, k, dtype=jnp.float32)
    init = pop_lib.vary_like((c0, g[i], targets), g)
    c, _, targets = lax.fori_loop(0, k, body, init)
    return c, targets

  cs, new_phi = jax.vmap(row)(jnp.arange(k), orders, phi_hat)
  return jnp.sum(cs, axis=0), new_phi


@metadata.describe(
  citations=('wang2021gradient',),
  properties=metadata.Properties(
    robust=False,
    multitask_exempt='stateful: its targets are EMAs of past similarities',
  ),
  case=metadata.Case(
    kind='aggregator',
    kwargs={'num_tasks': metadata.BATTERY_MEMBERS},
    hyperparams=('beta', 'eps'),
    lr=0.05,
    rosenbrock=(2e-4, 20000),
    population='aligned',
  ),
  row=metadata.Row(
    'multi-task',
    'GradVac',
    papers='[Wang et al. 2021](https://arxiv.org/abs/2010.05874)',
    also=('gradvac_weighting',),
  ),
)
def aggregate_by_gradvac(
  num_tasks: int,
  beta: float = 0.5,
  eps: float = 1e-8,
  key: int | jax.Array | None = 0,
  axes: pop_lib.PopulationAxes | None = None,
) -> base.Aggregator:
  r"""GradVac: raise each pair's gradient similarity towards an adaptive target.

  Like PCGrad, but instead of projecting only negative similarities to
  zero, each pair's cosine is lifted to an EMA target
  :math:`\hat\phi_{ij}` of the similarities seen so far (see
  :func:`gradvac_weighting`); the modified task gradients are summed. The
  targets, ``[K, K]``, live in the state.

  Properties: weighted; permutation-invariant in distribution; not
  non-conflicting, not linear under scaling.

  .. note::
    As TorchJD's ``GradVac``: the whole-model variant, sum convention,
    targets starting at zero (so the first step equals PCGrad's), per-task
    random orders (here from the state's key, TorchJD uses the global torch
    RNG; with two tasks the order does not matter and the outputs agree,
    tested). Unlike TorchJD, pairs whose target is within
    :math:`\sqrt{1-\hat\phi^2} < 10^{-3}` of a cosine of 1 (near-parallel
    gradients) are not corrected: the closed form divides by that quantity
    and, with TorchJD's ``eps``, returned infinite weights in our tests.
    And ``eps`` is relative to the gradient norms here (TorchJD adds it to
    the denominators, which lowers the cosines of gradients with norms near
    :math:`10^{-4}` and triggers spurious corrections near convergence).

  Args:
    num_tasks: ``K`` (the targets' shape).
    beta: EMA rate of the targets, in ``[0, 1]`` (TorchJD 0.5).
    eps: relative denominator guard (TorchJD 1e-8, added absolutely there).
    key: int seed or PRNG key for the orders; ``None``: index order.
    axes: where the members live.

  Returns:
    An :class:`optax_ext.Aggregator` with state
    :class:`AggregateByGradvacState`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import alignment
    >>> tx = alignment.aggregate_by_gradvac(num_tasks=2)
    >>> jac = jnp.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    >>> u, state = tx.update(jac, tx.init(jnp.zeros(3)))
    >>> u.round(4), state.phi_hat.round(3)  # first step: PCGrad
    (Array([0.5848, 3.8012, 3.8012], dtype=float32), Array([[ 0.   , -0.421],
           [-0.421,  0.   ]], dtype=float32))

  References:
    Wang et al., `Gradient Vaccine: Investigating and Improving Multi-task
    Optimization in Massively Multilingual Models
    <https://arxiv.org/abs/2010.05874>`_, ICLR 2021.
  """
  where = 'aggregate_by_gradvac'
  validation.check_integer(where, 'num_tasks', num_tasks, lower=1)
  validation.check_number(
    where, 'beta', beta, lower=0.0, upper=1.0, allow_schedule=False
  )
  validation.check_number(where, 'eps', eps, lower=0.0, allow_schedule=False)
  axes = base.resolve_axes(where, axes)
  key_data = None if key is None else _weighting.as_key_data(where, key)

  def init_fn(params):
    del params
    return AggregateByGradvacState(
      count=jnp.zeros([], jnp.int32),
      phi_hat=jnp.zeros((num_tasks, num_tasks), jnp.float32),
      key=jnp.zeros((2,), jnp.uint32)
      if key_data is None
      else jnp.array(key_data),
    )

  def update_fn(updates, state, params=None, **extra_args):
    updates = base.population_arg(where, updates, extra_args)
    base.check_population(where, updates, params, axes, lean_ok=True)
    k = pop_lib.size(updates, axes)
    if k != state.phi_hat.shape[0]:
      raise ValueError(
        f'{where}: the population has K={k} members but `num_tasks` is '
        f'{state.phi_hat.shape[0]}.'
      )
    gram = pop_lib.gramian(updates, axes)
    if key_data is None:
      step_key, new_key = None, state.key
    else:
      step_key, new_key = _weighting.split_key_data(state.key)
    w, phi_hat = gradvac_weighting(gram, state.phi_hat, step_key, beta, eps)
    w = lax.stop_gradient(w)
    out = pop_lib.combine(updates, w, axes)
    return out, AggregateByGradvacState(
      optax.safe_int32_increment(state.count), lax.stop_gradient(phi_hat),
      new_key,
    )  # fmt: skip

  return base.Aggregator(init_fn, update_fn)
