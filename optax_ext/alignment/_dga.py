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
"""DGA: dynamic gradient alignment for online data mixing (our derivation)."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from jax import lax
import jax.numpy as jnp
import optax

from optax_ext._src import base
from optax_ext._src import metadata
from optax_ext._src import population as pop_lib
from optax_ext._src import validation

_F32 = jnp.float32


class DgaMixtureState(NamedTuple):
  """State of a :func:`dga_mixture` controller.

  Attributes:
    count: int32 number of re-weightings so far.
    log_alpha: ``[k]`` float32 log-weights of the raw mirror iterate.
    weights: ``[k]`` float32 smoothed sampling weights (on the simplex,
      each ``>= floor / k``); the data sampler reads these.
  """

  count: jax.Array
  log_alpha: jax.Array
  weights: jax.Array


class MixtureController(NamedTuple):
  """``init(num_domains, initial_weights=None)`` and
  ``update(scores, state, *, lr)``, both pure and jit-able."""

  init: Callable[..., DgaMixtureState]
  update: Callable[..., DgaMixtureState]


@metadata.describe(
  citations=('fan2024dynamic', 'fan2024doge'),
  row=metadata.Row(
    'alignment',
    'DGA online data mixing (*our derivation*)',
    papers='[Fan et al. 2025](https://arxiv.org/abs/2410.02498)',
    also=('dga_alignment_scores', 'domain_alignment_scores'),
  ),
)
def dga_mixture(
  domain_lr: float = 100.0,
  *,
  ema: float = 0.1,
  score_clip: tuple[float, float] = (0.0, 5.0),
  floor: float = 1e-3,
) -> MixtureController:
  r"""A DGA domain-mixture controller (call it every ``T_r`` steps).

  Given alignment scores :math:`s_i` of the ``k`` domains with the target
  (:func:`dga_alignment_scores`) and the model's current learning rate
  :math:`\eta`:

  .. math::
    a_i &= \mathrm{clip}(\eta s_i, \eta c_0, \eta c_1), \\
    \log\alpha &\leftarrow \mathrm{log\_softmax}(\log\alpha +
      \mu^{-1} a), \\
    w &\leftarrow (1-\rho) w + \rho\,\mathrm{softmax}(\log\alpha), \qquad
    w \leftarrow \tfrac{\phi}{k} + (1 - \phi) w,

  a mirror (exponentiated-gradient) step towards domains whose gradients
  align with the target's, smoothed by an EMA (against over-fitting small
  domains) and kept above the floor :math:`\phi/k` so every domain stays
  recoverable. Positive alignment up-weights.

  .. note::
    DGA's equations were unavailable (abstract and reviews only). This is
    our derivation: the one-step bilevel unroll
    :math:`\partial L_{\mathrm{target}}(\theta - \eta\sum_i\alpha_i\nabla
    L_i)/\partial\alpha_i \approx -\eta\langle\nabla L_{\mathrm{target}},
    \nabla L_i\rangle` with DoGE's mirror step and clips (reference code
    Olivia-fsm/DoGE). The EMA placement, its factor 0.1, the floor (as a
    mixture with the uniform law) and ``domain_lr = 100`` (DoGE's
    :math:`1/\mu`, :math:`\mu = 0.01`) are design choices. Raw gradients are
    used even with Adam (as DoGE).

  Args:
    domain_lr: :math:`1/\mu > 0`, the mirror step size.
    ema: :math:`\rho \in (0, 1]`, weight of the new estimate (1: the pure
      mirror iterate).
    score_clip: :math:`(c_0, c_1)` with :math:`c_0 \le c_1` (DoGE's
      ``dw_min``, ``dw_max``: (0, 5)).
    floor: :math:`\phi \in [0, 1)`.

  Returns:
    A :class:`MixtureController`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> mixer = alignment.dga_mixture(domain_lr=10.0, ema=1.0)
    >>> state = mixer.init(3)
    >>> scores = jnp.array([1.0, 0.0, -1.0])  # domain 0 aligns with the target
    >>> state = mixer.update(scores, state, lr=0.1)
    >>> state.weights.round(3)
    Array([0.576, 0.212, 0.212], dtype=float32)

  References:
    Fan et al., `Dynamic Gradient Alignment for Online Data Mixing
    <https://arxiv.org/abs/2410.02498>`_, ICLR 2025; Fan, Pagliardini and
    Jaggi, `DoGE: Domain Reweighting with Generalization Estimation
    <https://arxiv.org/abs/2310.15393>`_, ICML 2024.
  """
  where = 'dga_mixture'
  validation.check_positive(where, 'domain_lr', domain_lr, allow_schedule=False)
  validation.check_number(
    where, 'ema', ema, lower=0.0, upper=1.0, lower_inclusive=False,
    allow_schedule=False,
  )  # fmt: skip
  validation.check_number(
    where, 'floor', floor, lower=0.0, upper=1.0, upper_inclusive=False,
    allow_schedule=False,
  )  # fmt: skip
  if (
    not isinstance(score_clip, (tuple, list))
    or len(score_clip) != 2
    or not score_clip[0] <= score_clip[1]
  ):
    raise ValueError(
      f'{where}: `score_clip` must be a pair (low, high) with low <= high, '
      f'got {score_clip!r}.'
    )

  def init_fn(num_domains: int, initial_weights: Any = None) -> DgaMixtureState:
    validation.check_integer(where, 'num_domains', num_domains, lower=1)
    if initial_weights is None:
      w = jnp.full((num_domains,), 1.0 / num_domains, _F32)
    else:
      w = jnp.asarray(initial_weights, _F32)
      if w.shape != (num_domains,):
        raise ValueError(
          f'{where}: `initial_weights` must have shape ({num_domains},), got '
          f'{w.shape}.'
        )
      w = w / jnp.sum(w)
    return DgaMixtureState(jnp.zeros([], jnp.int32), jnp.log(w), w)

  def update_fn(scores, state: DgaMixtureState, *, lr) -> DgaMixtureState:
    s = jnp.asarray(scores, _F32)
    if s.shape != state.weights.shape:
      raise ValueError(
        f'{where}: `scores` must have shape {state.weights.shape}, one per '
        f'domain, got {s.shape}.'
      )
    eta = jnp.asarray(lr, _F32)
    a = jnp.clip(eta * s, eta * score_clip[0], eta * score_clip[1])
    log_alpha = jax.nn.log_softmax(state.log_alpha + domain_lr * a)
    k = s.shape[0]
    w = (1.0 - ema) * state.weights + ema * jnp.exp(log_alpha)
    w = w / jnp.sum(w)
    w = floor / k + (1.0 - floor) * w
    return DgaMixtureState(state.count + 1, log_alpha, w)

  return MixtureController(init_fn, update_fn)


def _dot_and_norm(g, target) -> tuple[jax.Array, jax.Array]:
  """``(<g, target>, |g|)`` over whole trees, in float32."""
  leaves, t = jax.tree.leaves(g), jax.tree.leaves(target)
  dot = sum(
    jnp.vdot(x.astype(_F32), y.astype(_F32))
    for x, y in zip(leaves, t, strict=True)
  )
  sq = sum(jnp.vdot(x.astype(_F32), x.astype(_F32)) for x in leaves)
  return dot, jnp.sqrt(sq)


@metadata.describe(citations=('fan2024dynamic', 'fan2024doge'))
def dga_alignment_scores(
  domain_grads: optax.Params,
  target_grad: optax.Params,
  *,
  normalize: bool = True,
  axes: pop_lib.PopulationAxes | None = None,
) -> jax.Array:
  r"""Alignment of each domain's gradient with the target gradient.

  .. math::
    s_i = \frac{\langle g_i, g_{\mathrm{target}}\rangle}
    {\frac1k\sum_j\|g_j\| + 10^{-6}} \quad(\text{normalize}),
    \qquad s_i = \langle g_i, g_{\mathrm{target}}\rangle \quad
    (\text{otherwise}),

  in float32 over the whole tree. With ``normalize`` the scores do not
  change when every domain gradient is rescaled by the same factor.

  Args:
    domain_grads: the domain gradients, leaves ``[k, *shape]`` (or one per
      index of the named axis).
    target_grad: the target set's gradient, param-shaped.
    normalize: divide by the mean domain-gradient norm (DoGE's form).
    axes: where the domain members live.

  Returns:
    float32 ``[k]``, identical on every index of a named axis.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> domains = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> alignment.dga_alignment_scores(domains, jnp.array([2.0, 0.0])).round(3)
    Array([ 2.,  0., -2.], dtype=float32)

  References:
    Fan et al., `Dynamic Gradient Alignment for Online Data Mixing
    <https://arxiv.org/abs/2410.02498>`_, ICLR 2025; Fan, Pagliardini and
    Jaggi, `DoGE: Domain Reweighting with Generalization Estimation
    <https://arxiv.org/abs/2310.15393>`_, ICML 2024.
  """
  axes = base.resolve_axes('dga_alignment_scores', axes)
  pop_lib.local_size(domain_grads, axes)  # validates the member axis

  def dots_and_norms(g):
    return _dot_and_norm(g, target_grad)

  if axes.axis is None:
    dot, norm = dots_and_norms(domain_grads)
    dots, norms = dot[None], norm[None]
  else:
    moved = jax.tree.map(lambda x: jnp.moveaxis(x, axes.axis, 0), domain_grads)
    dots, norms = jax.vmap(dots_and_norms)(moved)
  # [k] per index (a leading axis of 1 for one member per index) -> all K.
  dots = pop_lib.all_members(dots, axes.locally_stacked()).reshape(-1)
  norms = pop_lib.all_members(norms, axes.locally_stacked()).reshape(-1)
  if not normalize:
    return dots
  return dots / (jnp.mean(norms) + 1e-6)


@metadata.describe(citations=('fan2024dynamic', 'fan2024doge'))
def domain_alignment_scores(
  loss_fn: Callable[..., Any],
  params: optax.Params,
  domain_batches: Any,
  target_batch: Any,
  *,
  normalize: bool = True,
) -> jax.Array:
  r"""DGA scores from the losses: one domain gradient at a time.

  Computes the target gradient, then each domain's gradient in a
  ``lax.map`` (memory of one extra gradient, not ``k``) and its dot with
  the target; see :func:`dga_alignment_scores` for the formula.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``.
    params: the model parameters.
    domain_batches: one batch per domain, leaves ``[k, ...]``.
    target_batch: a batch of the target set.
    normalize: divide by the mean domain-gradient norm.

  Returns:
    float32 ``[k]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> loss = lambda w, c: 0.5 * jnp.sum((w - c) ** 2)
    >>> domains = jnp.array([[1.0, 0.0], [-1.0, 0.0]])  # optima per domain
    >>> alignment.domain_alignment_scores(
    ...   loss, jnp.zeros(2), domains, jnp.array([2.0, 0.0]))
    Array([ 2., -2.], dtype=float32)

  References:
    Fan et al., `Dynamic Gradient Alignment for Online Data Mixing
    <https://arxiv.org/abs/2410.02498>`_, ICLR 2025; Fan, Pagliardini and
    Jaggi, `DoGE: Domain Reweighting with Generalization Estimation
    <https://arxiv.org/abs/2310.15393>`_, ICML 2024.
  """
  grad = jax.grad(loss_fn)
  target = grad(params, target_batch)

  def one(batch):
    return _dot_and_norm(grad(params, batch), target)

  dots, norms = lax.map(one, domain_batches)
  if not normalize:
    return dots
  return dots / (jnp.mean(norms) + 1e-6)
