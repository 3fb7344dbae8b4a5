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
# # GSNR: gradient signal-to-noise ratio and VRGD
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/optax-ext/optax_ext/blob/main/notebooks/gsnr_variance_reduction.ipynb)
#
# The GSNR of a parameter is the squared mean of its gradient over the
# variance across groups (micro-batches or devices). VRGD scales each
# parameter's step by its (normalised, bounded) GSNR: parameters whose
# gradient agrees across groups move more.

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
from optax_ext import variance

digits = load_digits()
x = jnp.asarray(digits.data / 16.0, jnp.float32)
y = jnp.asarray(digits.target)


def loss_fn(params, batch):
  logits = batch['x'] @ params['w'] + params['b']
  return optax.softmax_cross_entropy_with_integer_labels(
    logits, batch['y']
  ).mean()


params = {'w': jnp.zeros((64, 10)), 'b': jnp.zeros(10)}
groups = optax_ext.grad_population(loss_fn, 8)
_, g = groups(params, {'x': x[:512], 'y': y[:512]})
r = variance.gsnr(g)
plt.hist(np.log10(np.asarray(r['w']).ravel() + 1e-12), bins=50)
plt.xlabel('log10 GSNR of the weights (8 groups of 64 examples)')
plt.show()

# %% [markdown]
# ## VR-Adam against Adam on large batches

# %%
steps = 20 if SMOKE else 300
curves = {}
for name, tx in {
  'adam': optax.chain(optax_ext.aggregate_by_mean(), optax.adam(3e-2)),
  'vr_adam': variance.vr_adam(3e-2),
}.items():
  p, s = params, tx.init(params)

  @jax.jit
  def step(p, s, batch, tx=tx):
    loss, g = groups(p, batch)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s, loss.mean()

  rng = np.random.default_rng(0)
  curve = []
  for _ in range(steps):
    idx = rng.choice(len(x), 1024, replace=False)
    p, s, loss = step(p, s, {'x': x[idx], 'y': y[idx]})
    curve.append(float(loss))
  curves[name] = curve
  plt.plot(curve, label=name)
plt.xlabel('step (batch 1024 = 8 groups of 128)')
plt.ylabel('loss')
plt.legend()
plt.show()
