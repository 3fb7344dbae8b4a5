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
"""Flax NNX: an optax_ext optimiser in ``nnx.Optimizer``, orbax checkpoints.

Trains an MLP on scikit-learn's embedded digits with the chosen optimiser,
saves model and optimiser state with orbax every ``--save-every`` steps,
then (``--check-resume``, on by default) restarts from the middle checkpoint
and checks the resumed run ends bit for bit where the uninterrupted one did::

  python examples/train_nnx.py                       # 600 steps, ~10 s
  python examples/train_nnx.py --optimizer adamp --steps 2   # CI smoke

The optimiser state is restored into a fresh ``nnx.Optimizer`` with
``nnx.update``; IGT/XGrad-style methods keep their true iterate in that
state, so it resumes exactly too.
"""

import argparse
import pathlib
import tempfile

import _digits
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from tqdm import tqdm

from optax_ext import adaptive
from optax_ext import momentum

OPTIMIZERS = {
  'qhadam': lambda steps: momentum.qhadam(3e-3),
  'adamp': lambda steps: adaptive.adamp(3e-3, weight_decay=1e-4),
  'ranger21': lambda steps: momentum.ranger21(3e-3, num_iterations=steps),
  'xgrad_adam': lambda steps: momentum.xgrad_adam(3e-3),
  'adam': lambda steps: optax.adam(3e-3),
}


def batches(x, y, batch_size, seed):
  """An endless stream of shuffled minibatches (same for a given seed)."""
  rng = np.random.default_rng(seed)
  while True:
    order = rng.permutation(len(x))
    for i in range(0, len(x) - batch_size + 1, batch_size):
      idx = order[i : i + batch_size]
      yield x[idx], y[idx]


@nnx.jit
def train_step(model, optimizer, x, y):
  def loss_fn(model):
    logits = model(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  loss, grads = nnx.value_and_grad(loss_fn)(model)
  optimizer.update(model, grads)
  return loss


def fresh(name, steps, seed):
  model = _digits.Mlp(64, rngs=nnx.Rngs(seed))
  return model, nnx.Optimizer(model, OPTIMIZERS[name](steps), wrt=nnx.Param)


def run(model, optimizer, data, start, stop, ckpt_dir, save_every, desc):
  """Steps ``start..stop`` of the stream; checkpoints along the way."""
  x_train, _, y_train, _ = data
  stream = batches(np.asarray(x_train), np.asarray(y_train), 64, seed=0)
  for _ in range(start):  # the data order depends on the step only
    next(stream)
  loss = jnp.nan
  with ocp.StandardCheckpointer() as ckptr:
    for step in tqdm(range(start, stop), desc=desc, leave=False):
      loss = train_step(model, optimizer, *next(stream))
      if ckpt_dir is not None and (step + 1) % save_every == 0:
        ckptr.save(ckpt_dir / f'step_{step + 1}', nnx.state((model, optimizer)))
    ckptr.wait_until_finished()
  return float(loss)


def accuracy(model, data):
  _, x_test, _, y_test = data
  return float(jnp.mean(jnp.argmax(model(x_test), -1) == y_test))


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
    '--save-every',
    type=int,
    default=None,
    help='steps between checkpoints (default: half the run)',
  )
  parser.add_argument(
    '--checkpoint-dir',
    default=None,
    help='where to write the orbax checkpoints (default: a fresh '
    'temporary folder)',
  )
  parser.add_argument(
    '--no-check-resume',
    dest='check_resume',
    action='store_false',
    help='skip the check that a resumed run matches the uninterrupted one',
  )
  args = parser.parse_args(argv)
  data = _digits.load()
  save_every = args.save_every or max(1, args.steps // 2)
  workdir = pathlib.Path(args.checkpoint_dir or tempfile.mkdtemp())
  workdir = workdir.absolute()

  model, optimizer = fresh(args.optimizer, args.steps, seed=0)
  loss = run(
    model, optimizer, data, 0, args.steps, workdir, save_every, 'train'
  )
  print(
    f'{args.optimizer}: {args.steps} steps, final batch loss {loss:.4f}, '
    f'test accuracy {accuracy(model, data):.4f}'
  )
  print(f'checkpoints every {save_every} steps in {workdir}')
  if not args.check_resume:
    return
  middle = save_every * max(1, args.steps // save_every // 2)
  if middle >= args.steps:
    print('too few steps to resume from a checkpoint; skipped')
    return
  resumed_model, resumed_opt = fresh(args.optimizer, args.steps, seed=1)
  target = jax.tree.map(
    ocp.utils.to_shape_dtype_struct, nnx.state((resumed_model, resumed_opt))
  )
  with ocp.StandardCheckpointer() as ckptr:
    restored = ckptr.restore(workdir / f'step_{middle}', target)
  nnx.update((resumed_model, resumed_opt), restored)
  run(resumed_model, resumed_opt, data, middle, args.steps, None, 0, 'resume')
  same = jax.tree.all(
    jax.tree.map(
      lambda a, b: bool(jnp.array_equal(a, b)),
      nnx.state((resumed_model, resumed_opt)),
      nnx.state((model, optimizer)),
    )
  )
  print(
    f'resumed from step {middle}: identical to the uninterrupted run: {same}'
  )
  if not same:
    raise SystemExit('resume mismatch')


if __name__ == '__main__':
  main()
