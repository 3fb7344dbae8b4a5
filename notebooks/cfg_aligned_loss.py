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
# # The CFG-aligned diffusion training loss
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/optax-ext/optax_ext/blob/main/notebooks/cfg_aligned_loss.ipynb)
#
# Classifier-free guidance mixes a conditional and an unconditional
# prediction with weight w at sampling time. `losses.cfg_aligned_loss` trains
# the model so that the *guided* prediction matches the target (our reading
# of the paper, see the docstring), next to the standard loss.

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

from optax_ext import losses

key = jax.random.key(0)
target = jax.random.normal(key, (64, 2))
pred_cond = target + 0.3
pred_uncond = target - 0.2
drop = jnp.zeros(64, bool)
ws = jnp.linspace(0.0, 4.0, 9)
standard = [
  float(
    jnp.mean(
      losses.cfg_standard_loss(pred_cond, pred_uncond, target, drop_mask=drop)
    )
  )
  for _ in ws
]
aligned = [
  float(
    jnp.mean(
      losses.cfg_aligned_loss(pred_cond, pred_uncond, target, w, drop_mask=drop)
    )
  )
  for w in ws
]
plt.plot(ws, standard, label='standard')
plt.plot(ws, aligned, label='aligned')
plt.xlabel('guidance weight w')
plt.ylabel('loss')
plt.legend()
plt.show()
print(losses.cfg_guided_prediction(pred_cond, pred_uncond, 2.0)[:2])

# %% [markdown]
# ## CFG against APG at large guidance
#
# At sampling time `losses.apg_guided_prediction` (adaptive projected
# guidance, Sadat et al. 2025) splits the guidance update
# `pred_cond - pred_uncond` into its part parallel to the conditional
# prediction and the orthogonal rest, and keeps (by default) only the
# orthogonal part: the parallel part is what inflates the prediction
# (oversaturation) as w grows. `examples/cfg_aligned_diffusion.py` samples a
# trained model with both.


# %%
def norm_ratio(guided):
  return float(jnp.mean(jnp.linalg.norm(guided, axis=-1))) / float(
    jnp.mean(jnp.linalg.norm(pred_cond, axis=-1))
  )


for w in (1.0, 4.0, 8.0, 16.0):
  cfg = losses.cfg_guided_prediction(pred_cond, pred_uncond, w)
  apg, _ = losses.apg_guided_prediction(pred_cond, pred_uncond, w, momentum=0.0)
  print(
    f'w = {w:4.1f}: |CFG| / |cond| = {norm_ratio(cfg):5.2f},'
    f' |APG| / |cond| = {norm_ratio(apg):5.2f}'
  )
