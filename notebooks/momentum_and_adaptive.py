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
# # Momentum mixtures and adaptive step sizes
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/optax-ext/optax_ext/blob/main/notebooks/momentum_and_adaptive.ipynb)
#
# QHM, AggMo, AdEMAMix warm-ups, MARS, Grams, PNM, XGrad, Ranger21
# (`optax_ext.momentum`) and diffGrad, AdamP, SGD-SaI, Gravity
# (`optax_ext.adaptive`) are optax optimisers with `learning_rate` first.
# Here they race on the Rosenbrock function.

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
import optax

from optax_ext import adaptive
from optax_ext import momentum


def rosenbrock(p):
  return (1.0 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2


steps = 200 if SMOKE else 3000
optimizers = {
  'sgd (momentum)': optax.sgd(1e-3, momentum=0.9),
  'qhm': momentum.qhm(1e-2, decay=0.9, nu=0.7),
  'aggmo': momentum.aggmo(1e-3),
  'pnm': momentum.pnm(1e-2),
  'xgrad_sgd': momentum.xgrad_sgd(1e-3),
  'adapnm': momentum.adapnm(1e-2),
  'diffgrad': adaptive.diffgrad(1e-2),
  'sgd_sai': adaptive.sgd_sai(1e-3, weight_decay=0.0),
}


def run(tx):
  def step(carry, _):
    p, s = carry
    loss, g = jax.value_and_grad(rosenbrock)(p)
    u, s = tx.update(g, s, p)
    return (optax.apply_updates(p, u), s), loss

  p0 = jnp.array([-1.0, 1.5])
  _, losses = jax.lax.scan(step, (p0, tx.init(p0)), length=steps)
  return losses


for name, tx in optimizers.items():
  plt.semilogy(run(tx), label=name)
plt.xlabel('step')
plt.ylabel('Rosenbrock loss')
plt.legend()
plt.show()

# %% [markdown]
# ## AdamP on a scale-invariant weight
#
# When a weight only matters through its direction (before a normalisation
# layer), AdamP removes the radial part of the step, so the weight norm does
# not grow. Gradients orthogonal to the weight mimic that case.

# %%
w = jax.random.normal(jax.random.key(0), (16, 4))
norms = {}
for name, tx in {
  'adam': optax.adam(0.05),
  'adamp': adaptive.adamp(0.05),
}.items():
  p, s, trace = w, tx.init(w), []
  for i in range(20 if SMOKE else 200):
    r = jax.random.normal(jax.random.key(i + 1), w.shape)
    unit = p / jnp.linalg.norm(p, axis=0)
    g = r - unit * jnp.sum(unit * r, axis=0)  # orthogonal to each column
    u, s = tx.update(g, s, p)
    p = optax.apply_updates(p, u)
    trace.append(float(jnp.linalg.norm(p)))
  norms[name] = trace
  plt.plot(trace, label=name)
plt.ylabel('weight norm')
plt.legend()
plt.show()
print({k: round(v[-1], 3) for k, v in norms.items()})
