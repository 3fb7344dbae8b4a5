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
# # Lookahead, Multilayer Lookahead and DPF pruning
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/optax-ext/optax_ext/blob/main/notebooks/lookahead_and_pruning.ipynb)
#
# `lookahead.lookahead` / `multilayer_lookahead` wrap any optimiser with slow
# weights kept in the state; `pruning.dpf` prunes with feedback (the
# gradient is taken at the pruned weights but applied to the dense ones).

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

from optax_ext import lookahead
from optax_ext import pruning


def rosenbrock(p):
  return (1.0 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2


steps = 200 if SMOKE else 3000
for name, tx in {
  'sgd (momentum)': optax.sgd(2e-3, momentum=0.9),
  'lookahead': lookahead.lookahead(optax.sgd(2e-3, momentum=0.9)),
  '2-layer lookahead': lookahead.multilayer_lookahead(
    optax.sgd(2e-3, momentum=0.9), sync_periods=(5, 5)
  ),
}.items():
  p, s, losses = jnp.array([-1.0, 1.5]), None, []
  s = tx.init(p)
  step = jax.jit(lambda p, s, tx=tx: tx.update(jax.grad(rosenbrock)(p), s, p))
  for _ in range(steps):
    u, s = step(p, s)
    p = optax.apply_updates(p, u)
    losses.append(float(rosenbrock(p)))
  plt.semilogy(losses, label=name)
plt.legend()
plt.ylabel('loss')
plt.show()

# %% [markdown]
# ## DPF: a linear model pruned to 90% sparsity

# %%
key = jax.random.key(0)
x = jax.random.normal(key, (256, 100))
true_w = jnp.where(jnp.arange(100) < 10, 1.0, 0.0)[:, None]
y = x @ true_w
params = {'w': jnp.zeros((100, 1))}  # DPF prunes matrices
target = 0.9
tx = pruning.dpf(
  optax.adam(0.05),
  pruning.cubic_sparsity_schedule(target, 50 if SMOKE else 300),
  update_every=4,
)
s = tx.init(params)
loss = lambda p: jnp.mean((x @ p['w'] - y) ** 2)  # noqa: E731
step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
for _ in range(60 if SMOKE else 400):
  u, s = step(params, s)
  params = optax.apply_updates(params, u)
pruned = pruning.dpf_pruned_params(params, s)
print('sparsity', float(pruning.dpf_sparsity(s)))
print('kept weights', jnp.nonzero(pruned['w'][:, 0])[0])
