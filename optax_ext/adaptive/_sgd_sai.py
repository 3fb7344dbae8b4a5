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
"""SGD-SaI: SGD with per-tensor learning rates fixed at initialisation."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import alias
from optax_ext._src import metadata
from optax_ext._src import trees
from optax_ext._src import validation


class ScaleBySgdSaiState(NamedTuple):
  """State of :func:`scale_by_sgd_sai`.

  Attributes:
    count: int32 number of updates so far.
    gsnr: float32 scalar per leaf: the leaf's gradient signal-to-noise ratio
      at the first step divided by the largest over leaves (zeros before the
      first step).
    trace: momentum buffer (``mu_dtype``, float32 by default).
  """

  count: jax.Array
  gsnr: optax.Updates
  trace: optax.Updates


def _leaf_gsnr(g, eps):
  """``||g|| / (std(g, ddof=1) + eps)`` of a leaf of at least 2 elements."""
  g32 = g.astype(jnp.float32)
  sigma = jnp.std(g32, ddof=1)
  return jnp.linalg.norm(g32.reshape(-1)) / (sigma + eps)


@metadata.describe(
  citations=('xu2024nomore',),
  case=metadata.Case(
    kind='param',
    kwargs={},
    hyperparams=('momentum', 'eps'),
    rosenbrock=(1e-3, 20000),
  ),
  row=metadata.Row(
    'adaptive',
    'SGD-SaI',
    papers='[Xu et al. 2024](https://arxiv.org/abs/2412.11768)',
    also=('sgd_sai',),
  ),
)
def scale_by_sgd_sai(
  momentum: float = 0.9, eps: float = 1e-8, mu_dtype: Any = None
) -> optax.GradientTransformationExtraArgs:
  r"""SGD-SaI: momentum SGD, each tensor scaled by its first-step g-SNR.

  At the first step, for every leaf :math:`i`,

  .. math::
    s_i = \frac{\|g_i\|_2}{\mathrm{std}(g_i) + \epsilon}, \qquad
    \hat s_i = s_i / \max_j s_j ,

  then fixed. Each step :math:`b \leftarrow \mu b + (1-\mu) g` (:math:`b = g`
  at the first step) and :math:`u_i = \hat s_i\, b_i`. The state adds one
  scalar per leaf to a momentum buffer: half of Adam's memory.

  Follows the authors' ``sgd_sai.py`` (AnonymousAlethiometer/SGD_SaI,
  v1.0.4: normalised by the largest ratio, unbiased std, first buffer = g).

  .. note::
    A one-element leaf (a scalar parameter) has no std. The reference
    computes NaN, replaces it by 0 and so gives it the ratio
    :math:`|g|/\epsilon`, which then sets the maximum and shrinks every
    other tensor's rate by ~1e-8: training stalls. Here such leaves are left
    out of the maximum and take scale 1 (the rate of the best tensor). A
    leaf whose first gradient is zero never moves (as in the reference).
    pytorch_optimizer's ``SGDSaI`` (no max normalisation, zero-initialised
    EMA, ratio = norm for 1-D tensors) is not followed.

  Args:
    momentum: :math:`\mu` in ``[0, 1)`` (reference 0.9).
    eps: added to the std, ``> 0``.
    mu_dtype: storage dtype of the momentum buffer (e.g. ``jnp.bfloat16``);
      ``None`` keeps float32. Computation is in float32.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`ScaleBySgdSaiState`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import adaptive
    >>> tx = adaptive.scale_by_sgd_sai()
    >>> g = {'a': jnp.array([1.0, 1.0, 1.1]), 'b': jnp.array([1.0, -1.0])}
    >>> u, state = tx.update(g, tx.init(g))
    >>> state.gsnr['a'] > state.gsnr['b']   # consistent signs: larger rate
    Array(True, dtype=bool)

  References:
    Xu et al., `No More Adam: Learning Rate Scaling at Initialization is
    All You Need <https://arxiv.org/abs/2412.11768>`_, 2024.
  """
  where = 'scale_by_sgd_sai'
  validation.check_decay(where, 'momentum', momentum)
  validation.check_positive(where, 'eps', eps)
  mu_dtype = validation.state_dtype(where, 'mu_dtype', mu_dtype)

  def init_fn(params):
    return ScaleBySgdSaiState(
      count=jnp.zeros([], jnp.int32),
      gsnr=jax.tree.map(lambda _: jnp.zeros([], jnp.float32), params),
      trace=alias.state_zeros(params, mu_dtype),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    first = state.count == 0
    mu = alias.scalar_at(momentum, state.count)
    e = alias.scalar_at(eps, state.count)

    def fresh_gsnr():
      # One-element leaves have no std: left out of the maximum, scale 1.
      ratios = jax.tree.map(
        lambda g: _leaf_gsnr(g, e) if jnp.size(g) > 1 else None, updates
      )
      leaves = [r for r in jax.tree.leaves(ratios) if r is not None]
      top = jnp.max(jnp.stack(leaves)) if leaves else jnp.float32(1.0)
      top = jnp.maximum(top, jnp.finfo(jnp.float32).tiny)
      return jax.tree.map(
        lambda g, r: jnp.float32(1.0) if r is None else r / top,
        updates,
        ratios,
        is_leaf=lambda x: x is None,
      )

    gsnr = jax.lax.cond(first, fresh_gsnr, lambda: state.gsnr)

    def one(g, b, s):
      g32 = g.astype(jnp.float32)
      b = jnp.where(first, g32, mu * b.astype(jnp.float32) + (1.0 - mu) * g32)
      return (s * b).astype(g.dtype), b.astype(mu_dtype)

    u, b = trees.map_multi(one, 2, updates, state.trace, gsnr)
    count = optax.safe_int32_increment(state.count)
    return u, ScaleBySgdSaiState(count=count, gsnr=gsnr, trace=b)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@metadata.describe(
  citations=('xu2024nomore',),
  case=metadata.Case(
    kind='param',
    kwargs={'learning_rate': 0.1, 'weight_decay': 0.0},
    alias=True,
    hyperparams=('learning_rate', 'momentum', 'eps', 'weight_decay'),
    rosenbrock=(1e-3, 20000),
  ),
  benchmarks=(
    metadata.Benchmark(
      'transforms', 'sgd_sai', args=(1e-2,), peer=('SGDSaI', {'lr': 1e-2})
    ),
  ),
)
@validation.named_errors
def sgd_sai(
  learning_rate: optax.ScalarOrSchedule,
  momentum: float = 0.9,
  eps: float = 1e-8,
  weight_decay: optax.ScalarOrSchedule = 1e-2,
  *,
  mask: Any = None,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""SGD-SaI optimiser: :func:`scale_by_sgd_sai` with decoupled decay.

  :math:`\theta \leftarrow \theta - \eta(\hat s \odot b + \lambda\theta)`,
  the reference's ``p.mul_(1 - wd * lr).add_(buf, alpha=-lr * gsnr)``.

  Args:
    learning_rate: step size or schedule, ``>= 0`` (reference 1e-2).
    momentum: :math:`\mu` in ``[0, 1)`` (reference 0.9).
    eps: added to the std, ``> 0``.
    weight_decay: decoupled :math:`\lambda`, ``>= 0`` (reference 1e-2).
    mask: which params weight decay applies to (a tree of bools or a
      function of the params, as :func:`optax.add_decayed_weights`).
    mu_dtype: storage dtype of the momentum buffer (``None``: float32).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import adaptive
    >>> tx = adaptive.sgd_sai(0.1, weight_decay=0.0)
    >>> params = jnp.zeros(3)
    >>> u, _ = tx.update(jnp.array([1.0, 2.0, 3.0]), tx.init(params), params)
    >>> u   # a single leaf has the largest ratio: scale 1
    Array([-0.1, -0.2, -0.3], dtype=float32)

  References:
    Xu et al., `No More Adam: Learning Rate Scaling at Initialization is
    All You Need <https://arxiv.org/abs/2412.11768>`_, 2024.
  """
  where = 'sgd_sai'
  validation.check_non_negative(where, 'learning_rate', learning_rate)
  validation.check_non_negative(where, 'weight_decay', weight_decay)
  return alias.with_decay_and_lr(
    scale_by_sgd_sai(momentum, eps, mu_dtype),
    learning_rate,
    weight_decay,
    mask,
  )
