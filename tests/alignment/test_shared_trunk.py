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
"""The shared-trunk Jacobian: against TorchJD's mtl_backward + jac_to_grad,
and equal to the full Jacobian's rows where they coincide."""

import jax.numpy as jnp
import numpy as np
import pytest

from optax_ext import alignment

RNG = np.random.default_rng(0)
X = RNG.normal(size=(16, 3)).astype(np.float32)
Y = RNG.normal(size=(3, 16)).astype(np.float32)
W = RNG.normal(size=(3, 5)).astype(np.float32) * 0.7
B = RNG.normal(size=5).astype(np.float32) * 0.1
HEADS = RNG.normal(size=(3, 5)).astype(np.float32) * 0.5
MASK = {'trunk': {'w': True, 'b': True}, 'heads': False}


def _params():
  return {
    'trunk': {'w': jnp.asarray(W), 'b': jnp.asarray(B)},
    'heads': jnp.asarray(HEADS),
  }


def _losses(p):
  feats = jnp.tanh(X @ p['trunk']['w'] + p['trunk']['b'])
  preds = feats @ p['heads'].T  # [16, 3]: head t only touches task t
  return jnp.mean((preds.T - Y) ** 2, axis=1)


def test_rows_only_for_the_trunk_and_heads_get_their_gradients():
  params = _params()
  losses, full = alignment.task_jacobian(_losses)(params)
  got_losses, mixed = alignment.task_jacobian(_losses, shared=MASK)(params)
  np.testing.assert_allclose(got_losses, losses, rtol=1e-6)
  for name in ('w', 'b'):
    assert mixed['trunk'][name].shape == (3, *params['trunk'][name].shape)
    np.testing.assert_allclose(
      mixed['trunk'][name], full['trunk'][name], rtol=1e-5, atol=1e-7
    )
  # The heads: the summed losses' gradient (head t only moves loss t).
  assert mixed['heads'].shape == params['heads'].shape
  np.testing.assert_allclose(
    mixed['heads'], jnp.sum(full['heads'], 0), rtol=1e-5, atol=1e-7
  )


@pytest.mark.parametrize('name', ['upgrad', 'mgda', 'mean'])
def test_matches_torchjd_mtl_backward(name):
  torch = pytest.importorskip('torch')
  tjd = pytest.importorskip('torchjd')
  from torchjd import aggregation  # noqa: PLC0415
  from torchjd import autojac  # noqa: PLC0415

  ours_agg, theirs_agg = {
    'upgrad': (alignment.aggregate_by_upgrad(), aggregation.UPGrad()),
    'mgda': (alignment.aggregate_by_mgda(), aggregation.MGDA()),
    'mean': (
      alignment.aggregate_by_weighting(alignment.sum_weighting),
      aggregation.Sum(),
    ),
  }[name]
  del tjd
  w = torch.tensor(W, requires_grad=True)
  b = torch.tensor(B, requires_grad=True)
  heads = [torch.tensor(h, requires_grad=True) for h in HEADS]
  feats = torch.tanh(torch.tensor(X) @ w + b)
  losses = [
    torch.mean((feats @ h - torch.tensor(Y[i])) ** 2)
    for i, h in enumerate(heads)
  ]
  autojac.mtl_backward(losses, features=feats)
  autojac.jac_to_grad([w, b], theirs_agg)

  params = _params()
  _, mixed = alignment.task_jacobian(_losses, shared=MASK)(params)
  tx = alignment.aggregate_shared_trunk(ours_agg, MASK)
  u, _ = tx.update(mixed, tx.init(params), params)
  np.testing.assert_allclose(
    u['trunk']['w'], w.grad.numpy(), rtol=1e-4, atol=1e-6
  )
  np.testing.assert_allclose(
    u['trunk']['b'], b.grad.numpy(), rtol=1e-4, atol=1e-6
  )
  np.testing.assert_allclose(
    u['heads'],
    np.stack([h.grad.numpy() for h in heads]),
    rtol=1e-5,
    atol=1e-7,
  )


def test_errors_name_the_function():
  params = _params()
  with pytest.raises(ValueError, match=r'task_jacobian: `shared` must be'):
    alignment.task_jacobian(_losses, shared={'trunk': True})(params)
  none = {'trunk': {'w': False, 'b': False}, 'heads': False}
  with pytest.raises(ValueError, match=r'task_jacobian: `shared` marks no'):
    alignment.task_jacobian(_losses, shared=none)(params)
  tx = alignment.aggregate_shared_trunk(alignment.aggregate_by_upgrad(), MASK)
  with pytest.raises(ValueError, match=r'aggregate_shared_trunk: `params`'):
    tx.update(params, tx.init(params))
