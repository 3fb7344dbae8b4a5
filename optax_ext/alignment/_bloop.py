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
"""Bloop: auxiliary gradients projected off an EMA of the main gradient."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import metadata
from optax_ext._src import validation

_INITS = ('zeros', 'first_grad')


class BloopState(NamedTuple):
  """State of :func:`bloop`.

  Attributes:
    count: int32 number of updates so far.
    main_ema: float32 EMA :math:`m` of the main gradients.
  """

  count: jax.Array
  main_ema: optax.Updates


@metadata.describe(
  citations=('hsieh2024careful',),
  case=metadata.Case(
    kind='param',
    kwargs={},
    hyperparams=('aux_weight', 'ema_decay', 'eps'),
    rosenbrock=(1e-3, 20000),
    extra_args='bloop',
    post='heavy_ball',
  ),
  row=metadata.Row(
    'alignment',
    'Bloop',
    papers='[Hsieh et al. 2024](https://arxiv.org/abs/2402.02998)',
  ),
)
def bloop(
  aux_weight: float = 0.1,
  ema_decay: float = 0.9,
  eps: float = 1e-7,
  *,
  init: str = 'zeros',
  barrier: bool = False,
  rescale: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""Bloop: pursue an auxiliary loss without first-order harm to the main one.

  With the main gradient :math:`g` (the ``updates``) and the auxiliary
  gradient :math:`a` (the ``aux_grads`` extra argument):

  .. math::
    m \leftarrow \beta m + (1-\beta) g, \qquad
    r = \frac{\langle m, a\rangle}{\|m\|^2 + \epsilon}, \qquad
    d = g + \lambda (a - r m),

  i.e. the auxiliary gradient minus its component along the (EMA of the)
  main gradient; ``barrier=True`` caps :math:`r \le 1/\lambda` (the dynamic
  barrier variant) and ``rescale=True`` returns :math:`d / (1 + \lambda)`.
  The projection is global (one float32 dot over the whole tree). Chain it
  first: ``optax.chain(bloop(...), optax.sgd(lr, momentum=0.9))``; with
  Flax NNX, ``optimizer.update(model, grads, aux_grads=aux)``. Data
  parallel: average both gradients first.

  .. note::
    Follows apple/ml-bloop's ``_bloop_direction_general`` with the
    reference's ``ema`` (the weight of the *new* gradient) expressed as
    ``ema_decay = 1 - ema``. Its quirks are not replicated: ``rescale``
    divides by :math:`1 + \lambda` (the reference multiplies in one branch
    by ``1.0 / 1.0 + lbda``), and the EMA starts from zeros (its README's
    setting; the examples start it from the parameters) or, with
    ``init='first_grad'``, from the first main gradient. A zero-started EMA
    points exactly along the bias-corrected one, so only the direction
    matters up to ``eps``; an absolute ``eps`` that dominates
    :math:`\|m\|^2` for tiny gradients silently disables the projection.

  Args:
    aux_weight: :math:`\lambda \ge 0` (reference 0.1).
    ema_decay: :math:`\beta \in [0, 1)` (reference ``ema=0.1``, i.e. 0.9).
    eps: :math:`\epsilon \ge 0` (reference 1e-7).
    init: ``'zeros'`` or ``'first_grad'``.
    barrier: cap :math:`r` at :math:`1/\lambda`.
    rescale: divide by :math:`1 + \lambda`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`BloopState`; ``update`` requires ``aux_grads=`` (param-shaped).

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from optax_ext import alignment
    >>> tx = alignment.bloop(aux_weight=1.0, ema_decay=0.0, eps=0.0)
    >>> g, aux = jnp.array([1.0, 0.0]), jnp.array([1.0, 1.0])
    >>> d, _ = tx.update(g, tx.init(g), aux_grads=aux)
    >>> d  # aux's component along g removed: g + (0, 1)
    Array([1., 1.], dtype=float32)

  References:
    Hsieh et al., `Careful with that Scalpel: Improving Gradient Surgery
    with an EMA <https://arxiv.org/abs/2402.02998>`_, ICML 2024; reference
    code `apple/ml-bloop <https://github.com/apple/ml-bloop>`_.
  """
  where = 'bloop'
  # Numbers (or inject_hyperparams arrays), not schedules.
  validation.check_non_negative(
    where, 'aux_weight', aux_weight, allow_schedule=False
  )
  validation.check_decay(where, 'ema_decay', ema_decay, allow_schedule=False)
  validation.check_non_negative(where, 'eps', eps, allow_schedule=False)
  validation.check_one_of(where, 'init', init, _INITS)

  def init_fn(params):
    return BloopState(
      count=jnp.zeros([], jnp.int32),
      main_ema=jax.tree.map(lambda p: jnp.zeros_like(p, jnp.float32), params),
    )

  def update_fn(updates, state, params=None, *, aux_grads=None, **extra):
    del params, extra
    validation.extra_tree(
      where,
      'aux_grads',
      aux_grads,
      updates,
      'the auxiliary gradients',
      like='the main gradient',
    )
    beta = jnp.asarray(ema_decay, jnp.float32)
    first = state.count == 0

    def ema(m, g):
      g = g.astype(jnp.float32)
      if init == 'first_grad':
        m = jnp.where(first, g, m)
      return beta * m + (1.0 - beta) * g

    m = jax.tree.map(ema, state.main_ema, updates)
    dot = sum(
      jnp.vdot(x, y.astype(jnp.float32))
      for x, y in zip(
        jax.tree.leaves(m), jax.tree.leaves(aux_grads), strict=True
      )
    )
    sq = sum(jnp.vdot(x, x) for x in jax.tree.leaves(m))
    lam = jnp.asarray(aux_weight, jnp.float32)
    r = dot / (sq + jnp.asarray(eps, jnp.float32))
    if barrier:
      r = jnp.minimum(r, 1.0 / jnp.maximum(lam, 1e-30))
    scale = 1.0 / (1.0 + lam) if rescale else jnp.float32(1.0)
    out = jax.tree.map(
      lambda g, a, mm: (
        scale * (g.astype(jnp.float32) + lam * (a.astype(jnp.float32) - r * mm))
      ).astype(g.dtype),
      updates,
      aux_grads,
      m,
    )
    return out, BloopState(optax.safe_int32_increment(state.count), m)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
