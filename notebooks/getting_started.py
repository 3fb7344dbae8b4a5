# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Getting started with optax_ext
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/optax-ext/optax_ext/blob/main/notebooks/getting_started.ipynb)
#
# optax_ext adds optimisers and *gradient-population aggregators* to optax.
# A population is a set of gradients for the same parameters (per example,
# per micro-batch, per task, per device) stacked on a leading axis; an
# aggregator reduces it to one update, and everything after it is ordinary
# optax.

# %%
# Setup: on Colab this installs optax_ext; locally it is already installed.
# For a TPU, pick "Runtime > Change runtime type > TPU" before running; the
# code is the same on CPU, GPU and TPU.
import os
import sys

if 'google.colab' in sys.modules:
  import subprocess

  subprocess.run(
    [
      sys.executable,
      '-m',
      'pip',
      'install',
      '-q',
      'optax_ext @ git+https://github.com/optax-ext/optax_ext',
    ],
    check=True,
  )

# CI executes every notebook with OPTAX_EXT_SMOKE=1 (tiny sizes).
SMOKE = os.environ.get('OPTAX_EXT_SMOKE') == '1'

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from sklearn.datasets import load_digits

import optax_ext
from optax_ext import momentum
from optax_ext import robust

print(jax.devices())

# %% [markdown]
# ## A population of micro-batch gradients
#
# `grad_population(loss, K)` splits a batch into `K` groups and returns one
# gradient per group, leaves `[K, *param.shape]`.

# %%
digits = load_digits()
x = jnp.asarray(digits.data / 16.0, jnp.float32)
y = jnp.asarray(digits.target)


def loss_fn(params, batch):
  logits = batch['x'] @ params['w'] + params['b']
  return optax.softmax_cross_entropy_with_integer_labels(
    logits, batch['y']
  ).mean()


params = {'w': jnp.zeros((64, 10)), 'b': jnp.zeros(10)}
population_grad = optax_ext.grad_population(loss_fn, 8)
losses, grads = population_grad(params, {'x': x[:256], 'y': y[:256]})
print(jax.tree.map(jnp.shape, grads))

# %% [markdown]
# ## Aggregate, then any optax optimiser
#
# The aggregator comes first in `optax.chain`. Compare the mean with the
# coordinate-wise median.

# %%
steps = 20 if SMOKE else 300


def train(aggregator):
  tx = optax.chain(aggregator, momentum.qhm(0.5, decay=0.9))
  p, state = params, tx.init(params)

  @jax.jit
  def step(p, state, batch):
    loss, g = population_grad(p, batch)
    u, state = tx.update(g, state, p)
    return optax.apply_updates(p, u), state, loss.mean()

  rng = np.random.default_rng(0)
  curve = []
  for _ in range(steps):
    idx = rng.choice(len(x), 256, replace=False)
    p, state, loss = step(p, state, {'x': x[idx], 'y': y[idx]})
    curve.append(float(loss))
  acc = float(jnp.mean(jnp.argmax(x @ p['w'] + p['b'], -1) == y))
  return curve, acc


results = {
  'mean': train(optax_ext.aggregate_by_mean()),
  'coordinate median': train(robust.aggregate_by_coordinate_median()),
}
for name, (curve, acc) in results.items():
  plt.plot(curve, label=f'{name} (train accuracy {acc:.3f})')
plt.xlabel('step')
plt.ylabel('loss')
plt.legend()
plt.show()

# %% [markdown]
# ## Cite what you use
#
# `optax_ext.cite` returns the BibTeX of the paper behind a transform.

# %%
print(optax_ext.cite('aggregate_by_coordinate_median'))
