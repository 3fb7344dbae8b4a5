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
"""A byte-level decoder-only Transformer on the standard library's sources.

The corpus is the text of the running Python's own standard library
(``sysconfig.get_paths()['stdlib']``, every ``.py`` file outside
``site-packages``): real text, shipped with every installation, no
download. Files are split into train and validation by a hash of their
relative path (about 10% validation), so the split is deterministic for a
given Python version (the corpus itself changes between versions: the
results record the version). Tokens are bytes (vocabulary 256; the sources
are almost all ASCII, so bits per byte are bits per character).

The model: token and learned position embeddings, pre-LayerNorm blocks of
causal multi-head attention and a GELU MLP (4x), a final LayerNorm and an
untied output layer, in Flax NNX.
"""

import dataclasses
import hashlib
import math
import os
import pathlib
import sysconfig

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax


@dataclasses.dataclass(frozen=True)
class Config:
  width: int = 128
  depth: int = 4
  heads: int = 4
  context: int = 128
  batch_size: int = 16
  eval_windows: int = 256


SMOKE = Config(
  width=32, depth=1, heads=2, context=32, batch_size=8, eval_windows=16
)


def _is_validation(relative: str) -> bool:
  return hashlib.sha256(relative.encode()).digest()[0] < 26  # ~10%


def corpus() -> tuple[np.ndarray, np.ndarray, dict]:
  """``(train_bytes, validation_bytes, info)`` from the stdlib sources."""
  root = pathlib.Path(sysconfig.get_paths()['stdlib'])
  files = sorted(
    p
    for p in root.rglob('*.py')
    if 'site-packages' not in p.parts and 'dist-packages' not in p.parts
  )
  train, val = [], []
  for path in files:
    try:
      data = path.read_bytes()
    except OSError:
      continue
    rel = os.fspath(path.relative_to(root))
    (val if _is_validation(rel) else train).append(data)
  join = lambda parts: np.frombuffer(b'\n'.join(parts), np.uint8)  # noqa: E731
  info = {
    'root': os.fspath(root),
    'files': len(files),
    'train_files': len(train),
    'validation_files': len(val),
  }
  return join(train), join(val), info


class Block(nnx.Module):
  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    self.ln1 = nnx.LayerNorm(cfg.width, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(
      num_heads=cfg.heads,
      in_features=cfg.width,
      decode=False,
      rngs=rngs,
    )
    self.ln2 = nnx.LayerNorm(cfg.width, rngs=rngs)
    self.up = nnx.Linear(cfg.width, 4 * cfg.width, rngs=rngs)
    self.down = nnx.Linear(4 * cfg.width, cfg.width, rngs=rngs)

  def __call__(self, x, mask):
    x = x + self.attn(self.ln1(x), mask=mask)
    return x + self.down(jax.nn.gelu(self.up(self.ln2(x))))


class Transformer(nnx.Module):
  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    self.embed = nnx.Embed(256, cfg.width, rngs=rngs)
    self.pos = nnx.Param(
      jax.random.normal(rngs.params(), (cfg.context, cfg.width)) * 0.02
    )
    self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.depth)])
    self.ln = nnx.LayerNorm(cfg.width, rngs=rngs)
    self.head = nnx.Linear(cfg.width, 256, rngs=rngs)

  def __call__(self, tokens):
    t = tokens.shape[-1]
    x = self.embed(tokens) + self.pos[:t]
    mask = nnx.make_causal_mask(tokens)
    for block in self.blocks:
      x = block(x, mask)
    return self.head(self.ln(x))


def num_params(params) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


class Workload:
  """The language-model workload: ``init``, ``loss``, batches, evaluation."""

  name = 'lm'
  metric = 'validation bits per byte'
  lower_is_better = True

  def __init__(self, cfg: Config = Config()):
    self.cfg = cfg
    self.train, self.val, self.info = corpus()
    rng = np.random.default_rng(1234)  # fixed validation windows
    starts = rng.integers(0, len(self.val) - cfg.context - 1, cfg.eval_windows)
    idx = starts[:, None] + np.arange(cfg.context + 1)
    self.val_windows = jnp.asarray(self.val[idx].astype(np.int32))
    self.graphdef, _ = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
    self._eval = jax.jit(self._mean_validation_loss)

  def init(self, seed: int):
    _, params = nnx.split(Transformer(self.cfg, rngs=nnx.Rngs(seed)))
    return params

  def loss(self, params, batch):
    model = nnx.merge(self.graphdef, params)
    logits = model(batch[:, :-1])
    return jnp.mean(
      optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:])
    )

  def batches(self, seed: int):
    """Random training windows, ``[batch, context + 1]`` int32, forever."""
    rng = np.random.default_rng(seed)
    n = self.cfg.context + 1
    while True:
      starts = rng.integers(0, len(self.train) - n, self.cfg.batch_size)
      yield jnp.asarray(self.train[starts[:, None] + np.arange(n)], jnp.int32)

  def evaluate(self, params) -> float:
    """Mean validation cross-entropy in bits per byte."""
    return float(self._eval(params)) / math.log(2.0)

  def _mean_validation_loss(self, params):
    windows = self.val_windows
    chunks = windows.reshape(-1, self.cfg.batch_size, windows.shape[-1])
    return jnp.mean(jax.lax.map(lambda b: self.loss(params, b), chunks))
