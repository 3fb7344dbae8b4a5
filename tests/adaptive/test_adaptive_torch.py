"""AdamP, SGDP, PNM, AdaPNM and Gravity against pytorch_optimizer.

Skipped cleanly when torch or pytorch_optimizer is absent (``.ci/run``
installs both). pytorch_optimizer's AdamP/SGDP/PNM/AdaPNM follow the
authors' code; its Gravity is the reference's port (its initial velocity is
replaced by ours, drawn from another RNG). Not compared: DiffGrad (it applies
the friction only with ``rectify=True``) and SGDSaI (no max normalisation);
see the docstrings and ``tests/adaptive/test_adaptive.py`` for the reference
checks.
"""

import numpy as np
import optax
import pytest

torch = pytest.importorskip('torch')
po = pytest.importorskip('pytorch_optimizer')

import jax.numpy as jnp  # noqa: E402

from optax_ext import adaptive  # noqa: E402
from optax_ext import momentum  # noqa: E402

RNG = np.random.default_rng(0)
SHAPES = {'w': (4, 3), 'k': (2, 3, 2), 'b': (5,)}
P0 = {k: RNG.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
NOISE = [
  {k: RNG.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
  for _ in range(8)
]


def _grad(p, r, step):
  """Scale-invariant-looking gradients on even steps (projection fires)."""
  if p.ndim < 2 or step % 2:
    return r
  rows = p.reshape(len(p), -1)
  unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
  flat = r.reshape(len(r), -1)
  return (flat - unit * np.sum(unit * flat, 1, keepdims=True)).reshape(r.shape)


def _torch(cls, **kwargs):
  ps = {k: torch.nn.Parameter(torch.tensor(v.copy())) for k, v in P0.items()}
  opt = cls(list(ps.values()), **kwargs)
  for step, noise in enumerate(NOISE):
    for k, p in ps.items():
      p.grad = torch.tensor(_grad(p.detach().numpy(), noise[k], step))
    opt.step()
  return {k: p.detach().numpy() for k, p in ps.items()}


def _ours(tx):
  params = {k: jnp.asarray(v) for k, v in P0.items()}
  state = tx.init(params)
  for step, noise in enumerate(NOISE):
    g = {
      k: jnp.asarray(_grad(np.asarray(params[k]), noise[k], step))
      for k in params
    }
    u, state = tx.update(g, state, params)
    params = optax.apply_updates(params, u)
  return {k: np.asarray(v) for k, v in params.items()}


CASES = [
  (
    'adamp',
    po.AdamP,
    {'lr': 0.01, 'weight_decay': 0.1},
    lambda: adaptive.adamp(0.01, weight_decay=0.1, channel_axis=0),
  ),
  (
    'adamp_nesterov',
    po.AdamP,
    {'lr': 0.01, 'nesterov': True, 'delta': 0.2},
    lambda: adaptive.adamp(0.01, nesterov=True, delta=0.2, channel_axis=0),
  ),
  (
    'sgdp',
    po.SGDP,
    {'lr': 0.1, 'momentum': 0.9, 'weight_decay': 0.01, 'nesterov': True},
    lambda: adaptive.sgdp(
      0.1, momentum=0.9, weight_decay=0.01, nesterov=True, channel_axis=0
    ),
  ),
  (
    'sgdp_dampening',
    po.SGDP,
    {'lr': 0.1, 'momentum': 0.5, 'dampening': 0.3, 'weight_decay': 0.01},
    lambda: adaptive.sgdp(
      0.1, momentum=0.5, dampening=0.3, weight_decay=0.01, channel_axis=0
    ),
  ),
  (
    'pnm',
    po.PNM,
    {'lr': 0.05, 'betas': (0.9, 1.0), 'weight_decay': 0.1},
    lambda: momentum.pnm(0.05, weight_decay=0.1),
  ),
  (
    'adapnm',
    po.AdaPNM,
    {'lr': 0.01, 'betas': (0.9, 0.999, 1.0)},
    lambda: momentum.adapnm(0.01),
  ),
]


@pytest.mark.parametrize(
  'name,cls,kwargs,ours', CASES, ids=[c[0] for c in CASES]
)
def test_matches_pytorch_optimizer(name, cls, kwargs, ours):
  want = _torch(cls, **kwargs)
  got = _ours(ours())
  for k in P0:
    assert not np.allclose(want[k], P0[k]), f'{name}: the reference is still'
    np.testing.assert_allclose(got[k], want[k], rtol=2e-5, atol=2e-6)


def test_adamp_projection_fired_in_the_comparison():
  """The parity above covers the projection: without it the runs differ."""
  want = _torch(po.AdamP, lr=0.01, delta=0.0)  # delta 0: never projected
  got = _ours(adaptive.adamp(0.01, channel_axis=0))
  assert not np.allclose(got['w'], want['w'], rtol=1e-4)


def test_gravity_matches_pytorch_optimizer_given_the_same_start():
  lr, alpha = 0.05, 0.01
  tx = adaptive.gravity(lr, alpha=alpha, seed=5)
  params = {k: jnp.asarray(v) for k, v in P0.items()}
  state = tx.init(params)
  v0 = {k: np.asarray(v) for k, v in state[0].velocity.items()}
  ps = {k: torch.nn.Parameter(torch.tensor(v.copy())) for k, v in P0.items()}
  opt = po.Gravity(list(ps.values()), lr=lr, alpha=alpha)
  for k, p in ps.items():
    opt.state[p]['v'] = torch.tensor(v0[k].copy())
  for noise in NOISE:
    for k, p in ps.items():
      p.grad = torch.tensor(noise[k])
    opt.step()
    u, state = tx.update({k: jnp.asarray(n) for k, n in noise.items()}, state)
    params = optax.apply_updates(params, u)
  for k, p in ps.items():
    np.testing.assert_allclose(
      params[k], p.detach().numpy(), rtol=2e-5, atol=2e-6
    )
