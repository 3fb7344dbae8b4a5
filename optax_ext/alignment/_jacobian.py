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
"""Task populations from a vector-valued loss (Jacobian and lean Gramian)."""

from collections.abc import Callable
from typing import Any

import jax
from jax import lax
import jax.numpy as jnp

from optax_ext._src import validation
from optax_ext.alignment import _weighting

_F32 = jnp.float32


def task_jacobian(
  vector_loss: Callable[..., Any], has_aux: bool = False
) -> Callable[..., Any]:
  r"""Makes ``(params, *args) -> (losses, jacobian)`` with ``jax.jacrev``.

  ``vector_loss(params, *args)`` returns ``[T]`` task losses (or ``(losses,
  aux)``); the Jacobian is a task population with leaves ``[T,
  *param.shape]``, ready for any ``aggregate_by_*``. Memory: ``T``
  param-sized buffers.

  Args:
    vector_loss: the vector-valued loss.
    has_aux: whether it returns ``(losses, aux)``.

  Returns:
    A function returning ``(losses, jacobian)`` (``((losses, aux),
    jacobian)`` with ``has_aux``).

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> losses = lambda w: jnp.stack([w[0] ** 2, w[0] * w[1]])
    >>> value, jac = alignment.task_jacobian(losses)(jnp.array([1.0, 2.0]))
    >>> jac
    Array([[2., 0.],
           [2., 1.]], dtype=float32)
  """
  validation.check_callable('task_jacobian', 'vector_loss', vector_loss)

  def fn(params, *args):
    if has_aux:
      jac, (losses, aux) = jax.jacrev(
        lambda p: (lambda out: (out[0], out))(vector_loss(p, *args)),
        has_aux=True,
      )(params)
      return (losses, aux), jac
    jac, losses = jax.jacrev(
      lambda p: (lambda out: (out, out))(vector_loss(p, *args)), has_aux=True
    )(params)
    return losses, jac

  return fn


def _lean_gramian(vector_loss, params, args):
  """``(losses, G, vjp)`` without materialising the Jacobian."""
  losses, vjp = jax.vjp(lambda p: vector_loss(p, *args), params)
  _, jvp = jax.linearize(lambda p: vector_loss(p, *args), params)
  t = losses.shape[0]

  def column(e):
    (g,) = vjp(e)
    return jvp(g).astype(_F32)

  cols = lax.map(column, jnp.eye(t, dtype=losses.dtype))
  gram = 0.5 * (cols + cols.T)  # G = J J^T, symmetrised
  return losses, gram, vjp


def task_gramian(vector_loss: Callable[..., Any]) -> Callable[..., Any]:
  r"""Makes ``(params, *args) -> (losses, G)``, :math:`G = JJ^\top`, lean.

  Column :math:`j` of :math:`G` is :math:`J(J^\top e_j)`: one
  vector-Jacobian and one Jacobian-vector product per task, in a
  ``lax.map``, so only one param-sized gradient is alive at a time (memory
  :math:`O(D + T^2)` instead of :math:`O(TD)`), at the cost of ``2T``
  passes.

  Args:
    vector_loss: ``(params, *args) -> [T]`` task losses.

  Returns:
    A function returning ``(losses, gramian)`` with a float32 ``[T, T]``
    Gramian.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> losses = lambda w: jnp.stack([w[0] ** 2, w[0] * w[1]])
    >>> alignment.task_gramian(losses)(jnp.array([1.0, 2.0]))[1]
    Array([[4., 4.],
           [4., 5.]], dtype=float32)
  """
  validation.check_callable('task_gramian', 'vector_loss', vector_loss)

  def fn(params, *args):
    losses, gram, _ = _lean_gramian(vector_loss, params, args)
    return losses, gram

  return fn


def gramian_weighted_grad(
  vector_loss: Callable[..., Any], weighting: _weighting.Weighting
) -> Callable[..., Any]:
  r"""Jacobian descent without the Jacobian: weights from the lean Gramian.

  :math:`G` from :func:`task_gramian`, :math:`w = \mathrm{sg}[\text{weighting}
  (G)]`, and the update :math:`J^\top w` as one more vector-Jacobian
  product, so any Gramian weighting (``upgrad_weighting``, ...) runs in
  :math:`O(D + T^2)` memory. Equal to ``aggregate_by_weighting(weighting)``
  on ``task_jacobian(vector_loss)`` (tested).

  Args:
    vector_loss: ``(params, *args) -> [T]`` task losses.
    weighting: ``G -> [T]`` weights.

  Returns:
    A function ``(params, *args) -> (losses, update, weights)``; ``update``
    is shaped like ``params``.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import alignment
    >>> losses = lambda w: jnp.stack([w @ jnp.array([-4.0, 1.0, 1.0]),
    ...                               w @ jnp.array([6.0, 1.0, 1.0])])
    >>> fn = alignment.gramian_weighted_grad(losses, alignment.mgda_weighting)
    >>> fn(jnp.zeros(3))[1]
    Array([0., 1., 1.], dtype=float32)
  """
  validation.check_callable('gramian_weighted_grad', 'vector_loss', vector_loss)
  validation.check_callable('gramian_weighted_grad', 'weighting', weighting)

  def fn(params, *args):
    losses, gram, vjp = _lean_gramian(vector_loss, params, args)
    w = lax.stop_gradient(jnp.asarray(weighting(gram), _F32))
    (update,) = vjp(w.astype(losses.dtype))
    return losses, update, w

  return fn
