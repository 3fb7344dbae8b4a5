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
"""Writes the intersphinx inventories the docs link with, offline.

The docs build has no network (CI and this repository's tests), so
``docs/conf.py`` reads the inventories of optax, JAX, NumPy and Flax from
this folder instead of fetching each project's ``objects.inv``:

* ``optax.inv``: every name of optax's API reference, read from the
  ``.. currentmodule::`` and ``.. autosummary::`` lists of a checkout's
  ``docs/api/*.rst`` (each object has its page under ``api/generated/``)::

    python docs/inventories/build.py --optax-checkout ../optax

* ``jax.inv``, ``numpy.inv``, ``flax.inv``: the few objects our docstrings
  name (``THIRD_PARTY`` below), at the pages those projects give them.

Regenerate after a new optax release; ``tests/project/test_docs.py`` builds
with ``-n`` so a name that stops resolving fails there.
"""

import argparse
import pathlib
import re
import zlib

HERE = pathlib.Path(__file__).resolve().parent

# name -> (role, page relative to the project's root URL).
THIRD_PARTY = {
  'jax': {
    'jax.Array': ('class', '_autosummary/jax.Array.html'),
    'jax.numpy.ndarray': ('attribute', '_autosummary/jax.numpy.ndarray.html'),
    'jax.jit': ('function', '_autosummary/jax.jit.html'),
    'jax.vmap': ('function', '_autosummary/jax.vmap.html'),
    'jax.grad': ('function', '_autosummary/jax.grad.html'),
    'jax.shard_map': ('function', '_autosummary/jax.shard_map.html'),
    'jax.pmap': ('function', '_autosummary/jax.pmap.html'),
    'jax.random.key': ('function', '_autosummary/jax.random.key.html'),
    'jax.typing.ArrayLike': ('data', 'jax.typing.html#jax.typing.ArrayLike'),
    'jax.typing.DTypeLike': ('data', 'jax.typing.html#jax.typing.DTypeLike'),
    'jax.sharding.Mesh': ('class', 'jax.sharding.html#jax.sharding.Mesh'),
    'jax.sharding.PartitionSpec': (
      'class',
      'jax.sharding.html#jax.sharding.PartitionSpec',
    ),
  },
  'numpy': {
    'numpy.ndarray': ('class', 'reference/generated/numpy.ndarray.html'),
    'numpy.dtype': ('class', 'reference/generated/numpy.dtype.html'),
    'numpy.bool': ('attribute', 'reference/arrays.scalars.html#numpy.bool'),
    'numpy.generic': ('class', 'reference/arrays.scalars.html#numpy.generic'),
    'numpy.number': ('class', 'reference/arrays.scalars.html#numpy.number'),
  },
  'flax': {
    'flax.nnx.Optimizer': (
      'class',
      'api_reference/flax.nnx/training/optimizer.html'
      '#flax.nnx.optimizer.Optimizer',
    ),
    'flax.nnx.Module': (
      'class',
      'api_reference/flax.nnx/module.html#flax.nnx.Module',
    ),
    'flax.nnx.Param': (
      'class',
      'api_reference/flax.nnx/variables.html#flax.nnx.Param',
    ),
  },
}
VERSIONS = {'optax': 'latest', 'jax': 'latest', 'numpy': 'stable'}


def write(project: str, entries: dict[str, tuple[str, str]]) -> None:
  """A version-2 Sphinx inventory (``objects.inv``'s format)."""
  header = (
    '# Sphinx inventory version 2\n'
    f'# Project: {project}\n'
    f'# Version: {VERSIONS.get(project, "latest")}\n'
    '# The remainder of this file is compressed using zlib.\n'
  )
  body = ''.join(
    f'{name} py:{role} 1 {page} -\n'
    for name, (role, page) in sorted(entries.items())
  )
  (HERE / f'{project}.inv').write_bytes(
    header.encode() + zlib.compress(body.encode())
  )


def optax_entries(checkout: pathlib.Path) -> dict[str, tuple[str, str]]:
  """Every autosummary entry of optax's API reference."""
  entries = {}
  for rst in sorted((checkout / 'docs' / 'api').glob('*.rst')):
    module = 'optax'
    in_list = False
    for line in rst.read_text().splitlines():
      if m := re.match(r'\.\. currentmodule:: (\S+)', line):
        module, in_list = m.group(1), False
      elif line.startswith('.. autosummary::'):
        in_list = True
      elif in_list and (m := re.match(r'\s+([A-Za-z_][\w.]*)\s*$', line)):
        name = f'{module}.{m.group(1)}'
        role = 'class' if m.group(1)[0].isupper() else 'function'
        entries[name] = (role, f'api/generated/{name}.html#{name}')
      elif line and not line[0].isspace():
        in_list = False
  return entries


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    '--optax-checkout',
    type=pathlib.Path,
    help='a clone of google-deepmind/optax (rewrites optax.inv)',
  )
  args = parser.parse_args(argv)
  if args.optax_checkout is not None:
    write('optax', optax_entries(args.optax_checkout))
  for project, entries in THIRD_PARTY.items():
    write(project, entries)


if __name__ == '__main__':
  main()
