"""ProGrad against a torch transcription of the authors'
``prograd_backward_and_update`` (per-parameter projection when the cosine
with the general gradient is negative), its properties and its errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_ext import alignment


def _reference(task, general, lambda_):
  """The reference's loop over parameters, on given gradients."""
  torch = pytest.importorskip('torch')
  out = {}
  for name in task:
    a_grad = torch.tensor(task[name])
    b_grad = torch.tensor(general[name])
    b_grad_norm = b_grad / torch.linalg.norm(b_grad)
    a_grad_norm = a_grad / torch.linalg.norm(a_grad)
    grad = a_grad
    if torch.dot(a_grad_norm.flatten(), b_grad_norm.flatten()) < 0:
      grad = (
        a_grad
        - lambda_
        * torch.dot(a_grad.flatten(), b_grad_norm.flatten())
        * b_grad_norm
      )
    out[name] = grad.numpy()
  return out


@pytest.mark.parametrize('lambda_', [1.0, 0.5])
def test_prograd_matches_the_reference(lambda_):
  rng = np.random.default_rng(0)
  shapes = {'ctx': (4, 8), 'w': (5,), 'b': (3, 2, 2)}
  tx = jax.jit(alignment.prograd(lambda_).update)
  conflicts = 0
  for _ in range(6):
    task = {n: rng.normal(size=s).astype(np.float32) for n, s in shapes.items()}
    general = {
      n: rng.normal(size=s).astype(np.float32) for n, s in shapes.items()
    }
    ours, _ = tx(task, optax.EmptyState(), general_grads=general)
    theirs = _reference(task, general, lambda_)
    for n in shapes:
      np.testing.assert_allclose(ours[n], theirs[n], rtol=1e-5, atol=1e-6)
      conflicts += not np.allclose(ours[n], task[n])
  assert conflicts > 3  # both branches exercised


def test_prograd_properties():
  rng = np.random.default_rng(1)
  g = {
    'a': jnp.asarray(rng.normal(size=10)),
    'b': jnp.asarray(rng.normal(size=3)),
  }
  general = jax.tree.map(lambda x: -x + 0.1, g)  # conflicting, per leaf
  for per_leaf in (True, False):
    d, _ = alignment.prograd(per_leaf=per_leaf).update(
      g, optax.EmptyState(), general_grads=general
    )
    if per_leaf:
      for x, y in zip(
        jax.tree.leaves(d), jax.tree.leaves(general), strict=True
      ):
        np.testing.assert_allclose(jnp.vdot(x, y), 0.0, atol=1e-5)
    else:
      total = sum(
        jnp.vdot(x, y)
        for x, y in zip(
          jax.tree.leaves(d), jax.tree.leaves(general), strict=True
        )
      )
      np.testing.assert_allclose(total, 0.0, atol=1e-5)
  # Agreeing gradients pass unchanged; a zero general gradient too.
  same, _ = alignment.prograd().update(g, optax.EmptyState(), general_grads=g)
  zero = jax.tree.map(jnp.zeros_like, g)
  kept, _ = alignment.prograd().update(
    g, optax.EmptyState(), general_grads=zero
  )
  for out in (same, kept):
    for x, y in zip(jax.tree.leaves(out), jax.tree.leaves(g), strict=True):
      np.testing.assert_array_equal(x, y)
  # projection_strength = 0 is the identity.
  off, _ = alignment.prograd(0.0).update(
    g, optax.EmptyState(), general_grads=general
  )
  for x, y in zip(jax.tree.leaves(off), jax.tree.leaves(g), strict=True):
    np.testing.assert_array_equal(x, y)


def test_prograd_errors():
  with pytest.raises(ValueError, match=r'prograd: `projection_strength`'):
    alignment.prograd(-1.0)
  tx = alignment.prograd()
  g = {'a': jnp.ones(2)}
  with pytest.raises(ValueError, match=r'prograd: `update` needs'):
    tx.update(g, tx.init(g))
  with pytest.raises(ValueError, match=r'prograd: `general_grads` must have'):
    tx.update(g, tx.init(g), general_grads={'b': jnp.ones(2)})
