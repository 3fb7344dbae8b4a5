"""Every pure-JAX test runs with the README's test command.

The README installs the ``test`` extra only (no torch). A module-level
``pytest.importorskip`` of anything else skips the whole module there, pure
JAX tests included: that is how the FAMO, DWA, GradNorm, AGVM and ProGrad
property tests went unrun and a FAMO bug that dropped the loss bounds passed.
Optional imports go inside the comparison tests; only a comparison-only
module (named ``*_torch.py``) may skip as a whole.
"""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _test_extra() -> set[str]:
  tomllib = pytest.importorskip('tomllib')  # Python 3.11+
  with open(ROOT / 'pyproject.toml', 'rb') as f:
    extras = tomllib.load(f)['project']['optional-dependencies']
  names = set()
  for req in extras['test']:
    name = re.split(r'[<>=!~\[ ;]', req, maxsplit=1)[0]
    names.add(name.lower().replace('-', '_'))
  return names


def _module_level_skips(path: pathlib.Path):
  """``(line, module)`` of every import skip outside a function."""
  tree = ast.parse(path.read_text())
  found = []
  for node in tree.body:  # module level only: functions skip one test
    for call in ast.walk(node):
      if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        break
      if (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr in ('importorskip', 'skip')
      ):
        arg = call.args[0] if call.args else None
        name = arg.value if isinstance(arg, ast.Constant) else repr(arg)
        found.append((call.lineno, name))
  return found


TEST_FILES = sorted((ROOT / 'tests').rglob('test_*.py'))


def test_the_scan_finds_the_test_modules():
  assert len(TEST_FILES) > 40, len(TEST_FILES)


@pytest.mark.parametrize(
  'path', TEST_FILES, ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_module_skips_for_an_import_outside_the_test_extra(path):
  installed = _test_extra()
  for line, name in _module_level_skips(path):
    top = str(name).split('.')[0].lower()
    if top in installed or path.name.endswith('_torch.py'):
      continue
    pytest.fail(
      f'{path.relative_to(ROOT)}:{line}: a module-level skip on {name!r} '
      'skips every test of the module under the README test command; '
      'import it inside the tests that need it, or move those to a '
      'comparison-only *_torch.py module.'
    )
