"""Parity with pytorch_optimizer where its implementation is correct.

Skipped cleanly when torch or pytorch_optimizer is not installed (``.ci/run``
installs both). Not compared: Grams (pytorch_optimizer's EMA weights the new
gradient by beta1 and its denominator is sqrt(v / sqrt(1 - b2^t))) and
AdEMAMix (it bias-corrects the slow EMA); see the docstrings.
"""

import numpy as np
import optax
import pytest

torch = pytest.importorskip('torch')
po = pytest.importorskip('pytorch_optimizer')

import jax.numpy as jnp  # noqa: E402

from optax_ext import momentum as M  # noqa: E402

RNG = np.random.default_rng(0)
GRADS = [0.3 * RNG.normal(size=(4, 3)).astype(np.float32) for _ in range(10)]
P0 = RNG.normal(size=(4, 3)).astype(np.float32)


def _torch(cls, grads=GRADS, **kwargs):
  p = torch.nn.Parameter(torch.tensor(P0.copy()))
  opt = cls([p], **kwargs)
  for g in grads:
    p.grad = torch.tensor(g)
    opt.step()
  return p.detach().numpy()


def _ours(tx, grads=GRADS):
  p = jnp.asarray(P0)
  state = tx.init(p)
  for g in grads:
    u, state = tx.update(jnp.asarray(g), state, p)
    p = optax.apply_updates(p, u)
  return np.asarray(p)


CASES = [
  (
    'qhm',
    po.QHM,
    {'lr': 0.1, 'momentum': 0.9, 'nu': 0.7},
    lambda: M.qhm(0.1, decay=0.9, nu=0.7),
  ),
  (
    'qhm_wd',
    po.QHM,
    {'lr': 0.1, 'momentum': 0.9, 'nu': 0.7, 'weight_decay': 0.1},
    lambda: M.qhm(0.1, decay=0.9, nu=0.7, weight_decay=0.1),
  ),
  (
    'qhadam',
    po.QHAdam,
    {'lr': 0.01, 'betas': (0.995, 0.999), 'nus': (0.7, 1.0)},
    lambda: M.qhadam(0.01),
  ),
  (
    'qhadam_nu2',
    po.QHAdam,
    {'lr': 0.01, 'betas': (0.9, 0.99), 'nus': (0.7, 0.5)},
    lambda: M.qhadam(0.01, b1=0.9, b2=0.99, nu2=0.5),
  ),
  (
    'aggmo',
    po.AggMo,
    {'lr': 0.01, 'betas': (0.0, 0.9, 0.99)},
    lambda: M.aggmo(0.01),
  ),
  (
    'aggmo_wd',
    po.AggMo,
    {'lr': 0.01, 'betas': (0.0, 0.9, 0.99), 'weight_decay': 0.1},
    lambda: M.aggmo(0.01, weight_decay=0.1),
  ),
  (
    'mars_adamw',
    po.MARS,
    {'lr': 3e-3, 'betas': (0.95, 0.99), 'gamma': 0.025},
    lambda: M.mars(3e-3),
  ),
  (
    'mars_adamw_wd',
    po.MARS,
    {'lr': 3e-3, 'weight_decay': 0.1},
    lambda: M.mars(3e-3, weight_decay=0.1),
  ),
  (
    'mars_lion',
    po.MARS,
    {'lr': 1e-4, 'mars_type': 'lion'},
    lambda: M.mars(1e-4, variant='lion'),
  ),
  (
    # Cautious masking: pytorch_optimizer's Lion(cautious=True) against
    # cautious() around optax's Lion (the same Lion update).
    'cautious_lion',
    po.Lion,
    {'lr': 0.01, 'betas': (0.9, 0.99), 'cautious': True},
    lambda: M.cautious(optax.lion(0.01, b1=0.9, b2=0.99, weight_decay=0.0)),
  ),
  (
    # Decoupled weight decay outside the mask (pytorch_optimizer multiplies
    # the params by 1 - lr * wd before the masked step). Regression: the
    # decay was masked and rescaled with the step.
    'cautious_lion_decay',
    po.Lion,
    {'lr': 0.01, 'betas': (0.9, 0.99), 'weight_decay': 0.5, 'cautious': True},
    lambda: M.cautious(
      optax.lion(0.01, b1=0.9, b2=0.99, weight_decay=0.0),
      weight_decay=0.5,
      learning_rate=0.01,
    ),
  ),
]


@pytest.mark.standard_promotion  # the MARS alias chains optax.adamw
@pytest.mark.parametrize(
  'name,cls,kwargs,ours', CASES, ids=[c[0] for c in CASES]
)
def test_matches_pytorch_optimizer(name, cls, kwargs, ours):
  want = _torch(cls, **kwargs)
  got = _ours(ours())
  assert not np.allclose(want, P0), 'the reference did not move'
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
