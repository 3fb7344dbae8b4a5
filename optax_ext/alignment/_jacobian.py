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

from optax_ext._src import metadata
from optax_ext._src import validation
from optax_ext.alignment import _weighting

_F32 = jnp.float32


def shared_leaves(where: str, shared, params) -> list[bool]:
  """Per params leaf, whether it is shared (``shared``: a bool pytree with
  the params' structure, or a callable ``params -> that pytree``)."""
  mask = shared(params) if callable(shared) else shared
  treedef = jax.tree.structure(params)
  try:
    flags = treedef.flatten_up_to(mask)
  except (ValueError, TypeError) as e:
    raise ValueError(
      f'{where}: `shared` must be a pytree of bools with the structure of '
      f'the params ({treedef}), or a callable returning one: {e}'
    ) from None
  flags = [bool(f) for f in flags]
  if not any(flags):
    raise ValueError(f'{where}: `shared` marks no parameter as shared.')
  return flags


@metadata.describe(
  citations=('quinton2024jacobian',),
  row=metadata.Row(
    'multi-task',
    "task Jacobian (whole, or the shared trunk's rows only) / lean Gramian",
    papers='[Quinton & Rey 2024](https://arxiv.org/abs/2406.16232)',
    also=('aggregate_shared_trunk', 'task_gramian', 'gramian_weighted_grad'),
  ),
)
def task_jacobian(
  vector_loss: Callable[..., Any],
  has_aux: bool = False,
  *,
  shared: Any = None,
) -> Callable[..., Any]:
  r"""Makes ``(params, *args) -> (losses, jacobian)`` with ``jax.jacrev``.

  ``vector_loss(params, *args)`` returns ``[T]`` task losses (or ``(losses,
  aux)``); the Jacobian is a task population with leaves ``[T,
  *param.shape]``, ready for any ``aggregate_by_*``. Memory: ``T``
  param-sized buffers.

  With ``shared`` (a bool pytree shaped like the params, or a callable
  ``params -> mask``, as :func:`optax.masked` takes), only the shared
  parameters (the trunk every task uses) get ``T`` rows; every other leaf
  (a task's own head) gets the ordinary gradient of the summed losses,
  which for a head used by one task is that task's gradient. Feed the
  result to :func:`aggregate_shared_trunk`, which aggregates the shared
  rows and passes the heads' gradients through, as TorchJD's
  ``mtl_backward`` + ``jac_to_grad`` do: ``T`` rows are not spent on
  parameters only one task touches (memory ``T`` trunk-sized buffers plus
  one head-sized one).

  Args:
    vector_loss: the vector-valued loss.
    has_aux: whether it returns ``(losses, aux)``.
    shared: ``None`` (every parameter gets ``T`` rows) or the shared mask.

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

  def split(out):
    return (out[0], out) if has_aux else (out, out)

  def fn(params, *args):
    if shared is None:
      jac, out = jax.jacrev(
        lambda p: split(vector_loss(p, *args)), has_aux=True
      )(params)
      return out, jac
    flags = shared_leaves('task_jacobian', shared, params)
    leaves, treedef = jax.tree.flatten(params)
    trunk = [x for x, f in zip(leaves, flags, strict=True) if f]
    heads = [x for x, f in zip(leaves, flags, strict=True) if not f]

    def rebuilt(trunk, heads):
      t, h = iter(trunk), iter(heads)
      return jax.tree.unflatten(
        treedef, [next(t) if f else next(h) for f in flags]
      )

    def losses_of(trunk, heads):
      return split(vector_loss(rebuilt(trunk, heads), *args))

    losses, vjp, out = jax.vjp(losses_of, trunk, heads, has_aux=True)
    eye = jnp.eye(losses.shape[0], dtype=losses.dtype)
    trunk_rows = jax.vmap(lambda e: vjp(e)[0])(eye)
    _, head_grads = vjp(jnp.ones_like(losses))
    return out, rebuilt(trunk_rows, head_grads)

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


@metadata.describe(citations=('quinton2024jacobian',))
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


@metadata.describe(citations=('quinton2024jacobian',))
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
