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
"""MARS: variance-reduced (STORM-style) preconditioned momentum."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import alias
from optax_ext._src import metadata
from optax_ext._src import trees
from optax_ext._src import validation

_VARIANTS = ('adamw', 'lion', 'shampoo')
_NS_COEFFS = (3.4445, -4.7750, 2.0315)


class ScaleByMarsState(NamedTuple):
  """State of :func:`scale_by_mars`.

  Attributes:
    count: int32 number of updates so far.
    mu: EMA of the clipped corrected gradient (``mu_dtype``, float32 by
      default).
    nu: float32 EMA of its square (``None`` for ``variant='lion'``).
    prev_grad: the previous incoming gradient (approximate MARS), in the
      gradient's dtype; ``None`` with ``exact=True``.
  """

  count: jax.Array
  mu: optax.Updates
  nu: Any
  prev_grad: Any


def _newton_schulz(m: jax.Array, eps, steps: int = 5) -> jax.Array:
  """The reference's quintic Newton-Schulz orthogonalisation, in bfloat16."""
  a, b, c = _NS_COEFFS
  x = m.astype(jnp.bfloat16) / (jnp.linalg.norm(m) + eps).astype(jnp.bfloat16)
  tall = m.shape[0] > m.shape[1]
  if tall:
    x = x.T
  for _ in range(steps):
    xx = x @ x.T
    bx = xx @ x
    x = a * x + b * bx + c * (xx @ bx)
  if tall:
    x = x.T
  return x.astype(m.dtype)


@metadata.describe(
  citations=('yuan2024mars',),
  case=metadata.Case(
    kind='param', kwargs={}, hyperparams=('b1', 'b2', 'gamma', 'eps'), lr=0.05
  ),
  row=metadata.Row(
    'momentum',
    'MARS (AdamW / Lion / Shampoo, exact / approximate)',
    papers='[Yuan et al. 2024](https://arxiv.org/abs/2411.10438)',
    also=('mars',),
  ),
)
def scale_by_mars(
  b1: float = 0.95,
  b2: float = 0.99,
  gamma: float = 0.025,
  eps: float = 1e-8,
  variant: str = 'adamw',
  exact: bool = False,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""MARS: a scaled gradient-difference correction fed to AdamW/Lion/Shampoo.

  Per tensor, with :math:`\tilde g_{t-1}` the previous gradient:

  .. math::
    c_t = g_t + \gamma \frac{\beta_1}{1 - \beta_1} (g_t - \tilde g_{t-1}),
    \qquad \tilde c_t = \frac{c_t}{\max(1, \|c_t\|_2)}, \qquad
    m_t = \beta_1 m_{t-1} + (1 - \beta_1) \tilde c_t

  * ``'adamw'``: :math:`v_t = \beta_2 v_{t-1} + (1-\beta_2)\tilde c_t^2`,
    :math:`u = \frac{m_t / (1 - \beta_1^t)}{\sqrt{v_t / (1 - \beta_2^t)} +
    \epsilon}` (the reference code's :math:`\tilde c_t^2`, not the README's
    :math:`g^2`);
  * ``'lion'``: :math:`u = \mathrm{sign}(m_t)`;
  * ``'shampoo'``: for 2-D tensors :math:`u = \mathrm{NS}_5(m_t / (1 -
    \beta_1)) \sqrt{\max(1, \mathrm{rows}/\mathrm{cols})}` (five quintic
    Newton-Schulz steps in bfloat16, as the reference); other tensors take
    the ``'adamw'`` step.

  Approximate MARS (``exact=False``, the reference default) uses the previous
  step's incoming gradient as :math:`\tilde g_{t-1}` (zero at the first step,
  so :math:`c_1 = (1 + \gamma\beta_1/(1-\beta_1)) g_1`). Exact MARS takes
  :math:`\tilde g_{t-1} = \nabla f(x_{t-1}; \xi_t)`, the gradient of *this*
  step's batch at the *previous* parameters, as the extra argument
  ``grad_at_prev_params=`` (two gradient evaluations per step; pass zeros at
  the first step to match the reference).

  The clipping is per tensor with threshold 1, not global. The
  :math:`\gamma\beta_1/(1-\beta_1)` factor is 0.475 at the defaults and 2.475
  at :math:`\beta_1 = 0.99`: retune :math:`\gamma` with :math:`\beta_1`.

  Args:
    b1: momentum decay in ``[0, 1)`` (reference 0.95).
    b2: second-moment decay in ``[0, 1)`` (reference 0.99).
    gamma: correction scale :math:`\gamma`, ``>= 0`` (reference 0.025).
    eps: added to the denominator (and to the Newton-Schulz norm), ``>= 0``.
    variant: ``'adamw'``, ``'lion'`` or ``'shampoo'``.
    exact: use the ``grad_at_prev_params`` extra argument.
    mu_dtype: storage dtype of the momentum (e.g. ``jnp.bfloat16``); ``None``
      keeps float32. Computation is in float32.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`ScaleByMarsState`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.scale_by_mars()
    >>> g = jnp.array([0.1, -0.2])
    >>> u, state = tx.update(g, tx.init(g))  # first step: sign-like, as Adam
    >>> u
    Array([ 1., -1.], dtype=float32)

  References:
    Yuan et al., `MARS: Unleashing the Power of Variance Reduction for
    Training Large Models <https://arxiv.org/abs/2411.10438>`_, 2024.
  """
  where = 'scale_by_mars'
  validation.check_adam(where, b1, b2)
  validation.check_non_negative(where, 'gamma', gamma)
  validation.check_non_negative(where, 'eps', eps)
  validation.check_one_of(where, 'variant', variant, _VARIANTS)
  validation.check_bool(where, 'exact', exact)
  keep_nu = variant != 'lion'
  mu_dtype = validation.state_dtype(where, 'mu_dtype', mu_dtype)

  def init_fn(params):
    return ScaleByMarsState(
      count=jnp.zeros([], jnp.int32),
      mu=alias.state_zeros(params, mu_dtype),
      nu=alias.state_zeros(params) if keep_nu else None,
      prev_grad=None if exact else jax.tree.map(jnp.zeros_like, params),
    )

  def update_fn(
    updates, state, params=None, *, grad_at_prev_params=None, **extra_args
  ):
    del params, extra_args
    if exact:
      if grad_at_prev_params is None:
        raise ValueError(
          f'{where}: exact MARS needs the extra argument '
          "`grad_at_prev_params=` (this batch's gradient at the previous "
          'parameters).'
        )
      prev = grad_at_prev_params
    else:
      prev = state.prev_grad
    count = optax.safe_int32_increment(state.count)
    t = count.astype(jnp.float32)
    beta1 = alias.scalar_at(b1, state.count)
    beta2 = alias.scalar_at(b2, state.count)
    scale = alias.scalar_at(gamma, state.count) * beta1 / (1.0 - beta1)
    e = alias.scalar_at(eps, state.count)
    c1, c2 = 1.0 - jnp.power(beta1, t), 1.0 - jnp.power(beta2, t)
    nus = state.nu if keep_nu else state.mu  # placeholder; unused by Lion

    def one(g, p, m, v):
      g32 = g.astype(jnp.float32)
      c = g32 + scale * (g32 - p.astype(jnp.float32))
      c = c / jnp.maximum(1.0, jnp.linalg.norm(c))
      m = beta1 * m.astype(jnp.float32) + (1.0 - beta1) * c
      if keep_nu:
        v = beta2 * v + (1.0 - beta2) * c * c
      if variant == 'lion':
        u = jnp.sign(m)
      elif variant == 'shampoo' and g.ndim == 2:
        u = _newton_schulz(m / (1.0 - beta1), e) * jnp.sqrt(
          jnp.maximum(1.0, g.shape[0] / g.shape[1])
        )
      else:
        u = (m / c1) / (jnp.sqrt(v / c2) + e)
      return u.astype(g.dtype), m.astype(mu_dtype), v

    u, m, v = trees.map_multi(one, 3, updates, prev, state.mu, nus)
    return u, ScaleByMarsState(
      count=count,
      mu=m,
      nu=v if keep_nu else None,
      prev_grad=None if exact else updates,
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _default_mars_mask(params):
  return jax.tree.map(lambda p: jnp.ndim(p) == 2, params)


@metadata.describe(
  citations=('yuan2024mars',),
  case=metadata.Case(
    kind='param',
    kwargs={'learning_rate': 0.05},
    alias=True,
    hyperparams=('learning_rate', 'b1', 'b2', 'gamma', 'weight_decay'),
    lr=0.05,
    rosenbrock=(metadata.cosine_decay(0.05, 20000), 20000),
    strict_promotion=False,
  ),
  benchmarks=(
    metadata.Benchmark(
      'transforms',
      'mars',
      args=(1e-3,),
      peer=('MARS', {'lr': 1e-3}),
      two_pass=True,
    ),
  ),
)
@validation.named_errors
def mars(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.95,
  b2: float = 0.99,
  gamma: float = 0.025,
  eps: float = 1e-8,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  variant: str = 'adamw',
  exact: bool = False,
  mars_mask: Any = None,
  learning_rate_1d: optax.ScalarOrSchedule | None = None,
  b1_1d: float = 0.9,
  b2_1d: float = 0.95,
  weight_decay_1d: optax.ScalarOrSchedule = 0.1,
  *,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""MARS optimiser: MARS on matrices, AdamW on the other tensors.

  Tensors selected by ``mars_mask`` (default: ``ndim == 2``, as the official
  code; pytorch_optimizer uses ``ndim >= 2``) get :func:`scale_by_mars` with
  decoupled weight decay, :math:`\theta \leftarrow \theta - \eta(u +
  \lambda\theta)`; the others get ``optax.adamw(learning_rate_1d, b1_1d,
  b2_1d, eps, weight_decay=weight_decay_1d)`` on the raw gradient (the
  reference's ``optimize_1d=False``). Built with :func:`optax.partition`.

  Reference defaults: ``lr 3e-3``, ``betas (0.95, 0.99)``, ``gamma 0.025``,
  ``lr_1d 3e-3``, ``betas_1d (0.9, 0.95)``, ``weight_decay_1d 0.1``. The
  GPT-2 runs add global gradient clipping at 1.0 before the optimiser
  (``optax.chain(optax.clip_by_global_norm(1.0), mars(...))``).

  Args:
    learning_rate: step size or schedule for MARS tensors, ``>= 0``.
    b1: momentum decay in ``[0, 1)``.
    b2: second-moment decay in ``[0, 1)``.
    gamma: correction scale, ``>= 0``.
    eps: denominator epsilon, ``>= 0`` (both branches).
    weight_decay: decoupled decay of MARS tensors, ``>= 0``.
    variant: ``'adamw'``, ``'lion'`` or ``'shampoo'``.
    exact: exact MARS (extra argument ``grad_at_prev_params=``).
    mars_mask: a tree of bools (or a function of the params) selecting the
      tensors MARS updates; default ``ndim == 2``.
    learning_rate_1d: step size of the other tensors; default
      ``learning_rate``.
    b1_1d: their first-moment decay.
    b2_1d: their second-moment decay.
    weight_decay_1d: their decoupled weight decay.
    mu_dtype: storage dtype of both branches' first moments (``None``:
      float32, for the :func:`optax.adamw` branch too).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.mars(1e-3)
    >>> params = {'w': jnp.ones((2, 3)), 'b': jnp.zeros(3)}
    >>> grads = {'w': jnp.full((2, 3), 0.1), 'b': jnp.full(3, 0.1)}
    >>> u, _ = tx.update(grads, tx.init(params), params)
    >>> u['w'][0, 0], u['b'][0]
    (Array(-0.001, dtype=float32), Array(-0.001, dtype=float32))

  References:
    Yuan et al., `MARS: Unleashing the Power of Variance Reduction for
    Training Large Models <https://arxiv.org/abs/2411.10438>`_, 2024.
  """
  where = 'mars'
  validation.check_non_negative(where, 'learning_rate', learning_rate)
  validation.check_non_negative(where, 'weight_decay', weight_decay)
  validation.check_non_negative(where, 'weight_decay_1d', weight_decay_1d)
  if learning_rate_1d is None:
    learning_rate_1d = learning_rate
  validation.check_non_negative(where, 'learning_rate_1d', learning_rate_1d)
  validation.check_decay(where, 'b1_1d', b1_1d)
  validation.check_decay(where, 'b2_1d', b2_1d)
  mask = _default_mars_mask if mars_mask is None else mars_mask

  def labels(params):
    chosen = mask(params) if callable(mask) else mask
    return jax.tree.map(lambda c: 'mars' if c else 'other', chosen)

  return optax.partition(
    {
      'mars': alias.with_decay_and_lr(
        scale_by_mars(b1, b2, gamma, eps, variant, exact, mu_dtype),
        learning_rate,
        weight_decay,
      ),
      # float32 moments (the one mu_dtype rule); updates in the gradients'
      # dtype, as the MARS branch.
      'other': alias.keep_dtypes(
        optax.adamw(
          learning_rate_1d,
          b1=b1_1d,
          b2=b2_1d,
          eps=eps,
          weight_decay=weight_decay_1d,
          mu_dtype=jnp.float32 if mu_dtype is None else mu_dtype,
        )
      ),
    },
    labels,
    mask_compatible_extra_args=True,
  )
