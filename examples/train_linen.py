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
"""Flax Linen: an optax_ext optimiser in a ``TrainState``, with orbax.

The Linen style: a ``flax.linen`` MLP, ``flax.training.train_state.
TrainState`` holding params and the optimiser state, a jitted step that
calls ``state.apply_gradients``. The whole ``TrainState`` is checkpointed
with orbax at the end and restored into a fresh one::

  python examples/train_linen.py                  # 600 steps, ~10 s
  python examples/train_linen.py --steps 2        # CI smoke
"""

import argparse
import pathlib
import tempfile

import _digits
from flax import linen as nn
from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from tqdm import tqdm

from optax_ext import adaptive
from optax_ext import momentum

OPTIMIZERS = {
  'qhadam': lambda: momentum.qhadam(3e-3),
  'diffgrad': lambda: adaptive.diffgrad(3e-3),
  'sgdp': lambda: adaptive.sgdp(0.05, momentum=0.9, nesterov=True),
  'pnm': lambda: momentum.pnm(0.5),
}


class Mlp(nn.Module):
  hidden: int = 64

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(self.hidden)(x))
    return nn.Dense(10)(x)


@jax.jit
def train_step(state, x, y):
  def loss_fn(params):
    logits = state.apply_fn({'params': params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  return state.apply_gradients(grads=grads), loss


def create_state(name, seed):
  model = Mlp()
  params = model.init(jax.random.key(seed), jnp.zeros((1, 64)))['params']
  return train_state.TrainState.create(
    apply_fn=model.apply, params=params, tx=OPTIMIZERS[name]()
  )


def main(argv=None):
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    '--optimizer',
    choices=sorted(OPTIMIZERS),
    default='qhadam',
    help='the optimiser after the population rule',
  )
  parser.add_argument('--steps', type=int, default=600, help='training steps')
  parser.add_argument(
    '--checkpoint-dir',
    default=None,
    help='where to write the orbax checkpoints (default: a fresh '
    'temporary folder)',
  )
  args = parser.parse_args(argv)
  x_train, x_test, y_train, y_test = _digits.load()
  x_np, y_np = np.asarray(x_train), np.asarray(y_train)
  rng = np.random.default_rng(0)

  state = create_state(args.optimizer, seed=0)
  loss = jnp.nan
  for _ in tqdm(range(args.steps), desc='train', leave=False):
    idx = rng.choice(len(x_np), 64, replace=False)
    state, loss = train_step(state, x_np[idx], y_np[idx])
  logits = state.apply_fn({'params': state.params}, x_test)
  acc = float(jnp.mean(jnp.argmax(logits, -1) == y_test))
  print(
    f'{args.optimizer}: {args.steps} steps, final batch loss '
    f'{float(loss):.4f}, test accuracy {acc:.4f}'
  )

  workdir = pathlib.Path(args.checkpoint_dir or tempfile.mkdtemp()).absolute()
  path = workdir / f'step_{args.steps}'
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, state)
    ckptr.wait_until_finished()
    target = jax.tree.map(
      ocp.utils.to_shape_dtype_struct, create_state(args.optimizer, seed=1)
    )
    restored = ckptr.restore(path, target)

  def arrays(s):
    return s.step, s.params, s.opt_state

  same = jax.tree.all(
    jax.tree.map(
      lambda a, b: bool(jnp.array_equal(a, b)), arrays(restored), arrays(state)
    )
  )
  print(f'saved the TrainState to {path}; restored identical: {same}')
  if not same:
    raise SystemExit('restore mismatch')


if __name__ == '__main__':
  main()
