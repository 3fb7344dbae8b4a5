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
# # Multi-task aggregation and gradient alignment
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/optax-ext/optax_ext/blob/main/notebooks/multitask_alignment.ipynb)
#
# With several losses, the per-task gradients are a population. Jacobian
# descent rules (UPGrad, MGDA, PCGrad, CAGrad, ...) combine them so that no
# task's loss increases to first order; `conflict_report` shows how much they
# disagree.

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

import optax_ext
from optax_ext import alignment


def task_losses(p):
  """Two conflicting quadratic tasks with different minimisers."""
  a = jnp.sum((p - jnp.array([1.0, 0.0])) ** 2)
  b = jnp.sum((p - jnp.array([0.0, 1.0])) ** 2 * jnp.array([4.0, 1.0]))
  return jnp.stack([a, b])


value_and_jacobian = alignment.task_jacobian(task_losses)


def jacobian(p):
  return value_and_jacobian(p)[1]


p0 = jnp.array([2.0, -1.0])
print(alignment.conflict_report(jacobian(p0)))  # far away: both agree
# Between the minimisers the tasks conflict (negative cosine):
print(alignment.conflict_report(jacobian(jnp.array([0.5, 0.5]))))

# %%
steps = 30 if SMOKE else 200
rules = {
  'mean': optax_ext.aggregate_by_mean(),
  'upgrad': alignment.aggregate_by_upgrad(),
  'mgda': alignment.aggregate_by_mgda(),
  'pcgrad': alignment.aggregate_by_pcgrad(),
  'cagrad': alignment.aggregate_by_cagrad(),
}
for name, agg in rules.items():
  tx = optax.chain(agg, optax.sgd(0.05))
  step = jax.jit(lambda p, s, tx=tx: tx.update(jacobian(p), s, p))
  p, s, path = p0, tx.init(p0), [p0]
  for _ in range(steps):
    u, s = step(p, s)
    p = optax.apply_updates(p, u)
    path.append(p)
  path = jnp.stack(path)
  plt.plot(path[:, 0], path[:, 1], label=name)
plt.scatter([1, 0], [0, 1], c='k', marker='x')
plt.xlabel('p[0]')
plt.ylabel('p[1]')
plt.legend()
plt.title('paths towards the Pareto set (segment between the x)')
plt.show()
