"""The documentation site builds with warnings as errors and documents
every public symbol (``docs/``, Sphinx + autodoc + MyST)."""

import pathlib
import posixpath
import subprocess
import sys

import pytest

sphinx_inventory = pytest.importorskip('sphinx.util.inventory')

from tests import helpers  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def inventory(tmp_path_factory):
  out = tmp_path_factory.mktemp('docs')
  result = subprocess.run(
    [sys.executable, '-m', 'sphinx', '-W', '-q', '-b', 'html', 'docs', out],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert result.returncode == 0, result.stderr[-5000:]
  with open(out / 'objects.inv', 'rb') as f:
    inv = sphinx_inventory.InventoryFile.load(f, '', posixpath.join)
  return set().union(*(set(names) for names in inv.values()))


def _public_names():
  for mod in helpers.MODULES:
    for name in mod.__all__:
      obj = getattr(mod, name)
      if hasattr(obj, '__file__') and obj.__name__.startswith('optax_ext.'):
        continue  # a subpackage: it has its own page
      yield mod.__name__, name


def test_every_public_symbol_is_documented(inventory):
  missing = []
  for module, name in _public_names():
    # Re-exports are documented where they are defined publicly.
    homes = {
      f'{m.__name__}.{name}' for m in helpers.MODULES if name in m.__all__
    }
    if not homes & inventory:
      missing.append(f'{module}.{name}')
  assert not missing, f'not in the docs: {missing}'


def test_family_pages_and_guides_exist(inventory):
  for page in (
    'families',
    'distributed',
    'memory',
    'benchmarks',
    'api/optax_ext',
  ):
    assert page in inventory, page
  for module in helpers.MODULES[1:]:
    assert module.__name__ in inventory, module.__name__
  assert 'optax_ext.cite' in inventory
