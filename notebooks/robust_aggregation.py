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
# # Robust aggregation: Byzantine workers
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/optax-ext/optax_ext/blob/main/notebooks/robust_aggregation.ipynb)
#
# Eight workers send gradients; two are corrupted. The mean follows them;
# the coordinate median, trimmed mean, Krum, geometric median and centered
# clipping do not, while the corruption stays below their breakdown point.

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
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import optax_ext
from optax_ext import robust

rng = np.random.default_rng(0)
honest = jnp.asarray(1.0 + 0.1 * rng.normal(size=(6, 1000)), jnp.float32)
attacks = {
  'sign flip x10': -10.0 * honest[:2],
  'huge values': jnp.full((2, 1000), 1e6),
  'ALIE (mean - 1.5 std)': jnp.broadcast_to(
    honest.mean(0) - 1.5 * honest.std(0), (2, 1000)
  ),
}
aggregators = {
  'mean': optax_ext.aggregate_by_mean(),
  'coordinate median': robust.aggregate_by_coordinate_median(),
  'trimmed mean (b=2)': robust.aggregate_by_trimmed_mean(2),
  'krum (f=2)': robust.aggregate_by_krum(2),
  'geometric median': robust.aggregate_by_geometric_median(),
  'centered clipping': robust.aggregate_by_centered_clipping(1.0),
}
params = jnp.zeros(1000)
errors = {}
for attack, bad in attacks.items():
  population = jnp.concatenate([bad, honest])
  for name, tx in aggregators.items():
    u, _ = tx.update(population, tx.init(params), params)
    errors[(attack, name)] = float(jnp.linalg.norm(u - honest.mean(0)))

fig, ax = plt.subplots(figsize=(8, 3))
width = 0.25
for i, attack in enumerate(attacks):
  vals = [errors[(attack, n)] for n in aggregators]
  ax.bar(np.arange(len(aggregators)) + i * width, vals, width, label=attack)
ax.set_yscale('log')
ax.set_xticks(np.arange(len(aggregators)) + width)
ax.set_xticklabels(list(aggregators), rotation=20)
ax.set_ylabel('distance to the honest mean')
ax.legend()
plt.show()

# %% [markdown]
# Each aggregator's docstring states its breakdown point and cost; on many
# devices the same aggregators take `PopulationAxes(axis_name=...)` (see
# `docs/distributed.md`).
