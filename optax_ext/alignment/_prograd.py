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
"""ProGrad: keep the task gradient where it does not conflict with a general
direction."""

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import metadata
from optax_ext._src import numerics
from optax_ext._src import validation


@metadata.describe(
  citations=('zhu2023prompt',),
  case=metadata.Case(
    kind='param',
    kwargs={},
    hyperparams=('projection_strength',),
    rosenbrock=(1e-3, 20000),
    extra_args='prograd',
    post='heavy_ball',
  ),
  row=metadata.Row(
    'alignment',
    'ProGrad (conflicts with a general gradient projected out)',
    papers='[Zhu et al. 2023](https://arxiv.org/abs/2205.14865)',
  ),
)
def prograd(
  projection_strength: float = 1.0, *, per_leaf: bool = True
) -> optax.GradientTransformationExtraArgs:
  r"""ProGrad: the task gradient with its conflict with a general one removed.

  With the task gradient :math:`g_d` (the ``updates``, e.g. of the
  cross-entropy on the few-shot data) and the general-direction gradient
  :math:`g_g` (the ``general_grads`` extra argument, e.g. of the KL
  divergence to a zero-shot model's predictions):

  .. math::
    d = \begin{cases}
      g_d & \text{if } \langle g_d, g_g \rangle \ge 0, \\
      g_d - \lambda \dfrac{\langle g_d, g_g\rangle}{\|g_g\|^2}\, g_g
        & \text{otherwise,}
    \end{cases}

  so with :math:`\lambda = 1` a conflicting update is projected onto the
  normal plane of :math:`g_g` and never increases the general loss to
  first order. The general gradient only vetoes; it is not added. Chain it
  first: ``optax.chain(prograd(), optax.sgd(lr))``; with Flax NNX,
  ``optimizer.update(model, grads, general_grads=g)``.

  .. note::
    The paper writes the rule for the prompt vector as a whole; the
    authors' code (``prograd_backward_and_update``) applies it to each
    parameter tensor separately, which is the default here
    (``per_leaf=True``); ``per_leaf=False`` takes one projection over the
    whole tree. A zero general gradient leaves the update unchanged (the
    reference divides by its norm).

  Args:
    projection_strength: :math:`\lambda \ge 0` (the reference's 1).
    per_leaf: one projection per leaf (the reference code) or one global.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` (stateless); ``update``
    requires ``general_grads=`` (param-shaped).

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> tx = alignment.prograd()
    >>> g, general = jnp.array([1.0, -1.0]), jnp.array([0.0, 1.0])
    >>> d, _ = tx.update(g, tx.init(g), general_grads=general)
    >>> d  # the component against the general direction removed
    Array([1., 0.], dtype=float32)

  References:
    Zhu et al., `Prompt-aligned Gradient for Prompt Tuning
    <https://arxiv.org/abs/2205.14865>`_, ICCV 2023; reference code
    `BeierZhu/Prompt-align <https://github.com/BeierZhu/Prompt-align>`_.
  """
  where = 'prograd'
  validation.check_non_negative(
    where, 'projection_strength', projection_strength, allow_schedule=False
  )

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None, *, general_grads=None, **extra):
    del params, extra
    validation.extra_tree(
      where,
      'general_grads',
      general_grads,
      updates,
      'the general-direction gradients',
    )
    ds = jax.tree.leaves(updates)
    # float64 inputs are projected in float64 (float32 otherwise).
    acc = numerics.tree_common_accumulation_dtype((updates, general_grads))
    lam = jnp.asarray(projection_strength, acc)
    gs = [g.astype(acc) for g in jax.tree.leaves(general_grads)]
    dots = [jnp.vdot(d.astype(acc), g) for d, g in zip(ds, gs, strict=True)]
    sqs = [jnp.vdot(g, g) for g in gs]
    if not per_leaf:
      dots = [sum(dots)] * len(ds)
      sqs = [sum(sqs)] * len(ds)

    def one(d, g, dot, sq):
      conflict = (dot < 0) & (sq > 0)
      coef = jnp.where(conflict, lam * dot / jnp.where(sq > 0, sq, 1.0), 0.0)
      return (d.astype(acc) - coef * g).astype(d.dtype)

    out = [one(*args) for args in zip(ds, gs, dots, sqs, strict=True)]
    return jax.tree.unflatten(jax.tree.structure(updates), out), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
