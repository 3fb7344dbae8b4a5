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
"""Which kernels to trace: XLA:CPU-tuned code, or the plain ``jnp`` path.

Some reductions are written for XLA:CPU, where the plain form is slow:
member-by-member sums instead of ``jnp.sum(axis=0)`` (a reduction over the
major axis), sorting networks on integer order keys instead of ``jnp.sort``
along the member axis, the Gramian's contraction in blocks, and
``optimization_barrier``s that keep sums of sums from being refolded. On
GPU and TPU the plain forms are what XLA is built for, so each of those
places asks :func:`cpu_tuned` which one to trace.

The choice: the environment variable ``OPTAX_EXT_KERNELS`` (read at import)
or :func:`use` (a context manager, for tests and benchmarks):

* ``'auto'`` (default): the tuned code when ``jax.default_backend()`` is
  ``'cpu'``, the plain code otherwise;
* ``'cpu'``: the tuned code on every backend;
* ``'plain'``: the plain code on every backend.

The choice is made when a function is traced: a function jitted under one
mode keeps its compiled code (jit caches do not see this setting).
Both paths are tested equal on CPU (``tests/population/test_kernels.py``).
"""

import contextlib
import os

import jax

MODES = ('auto', 'cpu', 'plain')
ENV_VAR = 'OPTAX_EXT_KERNELS'


def _checked(mode: str, source: str) -> str:
  if mode not in MODES:
    raise ValueError(
      f'{source}: the kernel mode must be one of {MODES}, got {mode!r}.'
    )
  return mode


_mode = _checked(os.environ.get(ENV_VAR, 'auto'), ENV_VAR)


def mode() -> str:
  """The current mode: ``'auto'``, ``'cpu'`` or ``'plain'``."""
  return _mode


def cpu_tuned() -> bool:
  """Whether to trace the XLA:CPU-tuned code (see the module docstring)."""
  if _mode == 'auto':
    return jax.default_backend() == 'cpu'
  return _mode == 'cpu'


@contextlib.contextmanager
def use(new_mode: str):
  """Traces with ``new_mode`` inside the block (not thread-safe)."""
  global _mode  # noqa: PLW0603 - a process-wide tracing switch
  previous = _mode
  _mode = _checked(new_mode, 'kernels.use')
  try:
    yield
  finally:
    _mode = previous


# Tuning constants of the XLA:CPU kernels, named once here. Each is a
# cut-over between two exact forms of the same result (the tests run both
# sides), so a value off for another machine costs time, never accuracy.

# Coordinates per block of the Gramian's contraction on XLA:CPU: a block of
# float32 columns for a group of members stays cache-resident.
GRAM_BLOCK = 8192
# Members per row group (the blocked path computes the upper triangle of
# group pairs, one small dot per block and pair).
GRAM_GROUP = 8
# Up to this many members: sorting networks on order keys instead of
# jnp.sort, and member-by-member sums (one straight-line fusion) instead of
# a reduction over the major axis.
NETWORK_MAX = 64
STRAIGHT_LINE_MEMBERS = 64
# Up to this many K * (b + 1) (members times trimmed-per-side plus one), the
# trimmed mean selects its b + 1 extremes by repeated max/min instead of
# sorting the members.
SELECTION_MAX = 512
