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
"""Plain JAX: params as a dict, a gradient population, an optax chain.

No Flax: the model is a function of a parameter dict. Each step builds a
population of 8 micro-batch gradients with ``optax_ext.grad_population``,
reduces it with a robust aggregator and feeds the result to an optimiser, all
in one ``optax.chain``; the loop is ``jax.lax.scan``-free Python with a
jitted step and a progress bar. The params and state are checkpointed with
orbax at the end::

  python examples/train_plain_jax.py                 # 600 steps, ~10 s
  python examples/train_plain_jax.py --steps 2       # CI smoke
"""

import argparse
import pathlib
import tempfile

import _digits
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from tqdm import tqdm

import optax_ext
from optax_ext import momentum
from optax_ext import robust

AGGREGATORS = {
  'mean': optax_ext.aggregate_by_mean,
  'median': robust.aggregate_by_coordinate_median,
  'trimmed_mean': lambda: robust.aggregate_by_trimmed_mean(num_trim=1),
}


def init_params(key, sizes=(64, 64, 10)):
  params = {}
  for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
    key, sub = jax.random.split(key)
    params[f'w{i}'] = jax.random.normal(sub, (n_in, n_out)) / np.sqrt(n_in)
    params[f'b{i}'] = jnp.zeros(n_out)
  return params


def predict(params, x):
  h = jax.nn.relu(x @ params['w0'] + params['b0'])
  return h @ params['w1'] + params['b1']


def loss_fn(params, batch):
  logits = predict(params, batch['x'])
  return optax.softmax_cross_entropy_with_integer_labels(
    logits, batch['y']
  ).mean()


def main(argv=None):
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    '--aggregator',
    choices=sorted(AGGREGATORS),
    default='median',
    help='the rule that reduces the gradient population',
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

  tx = optax.chain(AGGREGATORS[args.aggregator](), momentum.qhadam(3e-3))
  population_grad = optax_ext.grad_population(loss_fn, 8)  # 8 micro-batches

  @jax.jit
  def step(params, state, batch):
    loss, grads = population_grad(params, batch)  # leaves [8, *shape]
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, jnp.mean(loss)

  params = init_params(jax.random.key(0))
  state = tx.init(params)
  rng = np.random.default_rng(0)
  loss = jnp.nan
  for _ in tqdm(range(args.steps), desc='train', leave=False):
    idx = rng.choice(len(x_np), 64, replace=False)
    params, state, loss = step(params, state, {'x': x_np[idx], 'y': y_np[idx]})
  acc = float(jnp.mean(jnp.argmax(predict(params, x_test), -1) == y_test))
  print(
    f'{args.aggregator} of 8 micro-batch gradients + QHAdam: {args.steps} '
    f'steps, final loss {float(loss):.4f}, test accuracy {acc:.4f}'
  )

  workdir = pathlib.Path(args.checkpoint_dir or tempfile.mkdtemp()).absolute()
  path = workdir / f'step_{args.steps}'
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, {'params': params, 'opt_state': state})
    ckptr.wait_until_finished()
    target = jax.tree.map(
      ocp.utils.to_shape_dtype_struct, {'params': params, 'opt_state': state}
    )
    restored = ckptr.restore(path, target)
  same = jax.tree.all(
    jax.tree.map(
      lambda a, b: bool(jnp.array_equal(a, b)),
      restored,
      {'params': params, 'opt_state': state},
    )
  )
  print(
    f'saved params and optimiser state to {path}; restored identical: {same}'
  )
  if not same:
    raise SystemExit('restore mismatch')


if __name__ == '__main__':
  main()
