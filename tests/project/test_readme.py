"""The README's Python examples run, and its set-up commands are coherent."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = (ROOT / 'README.md').read_text()
BLOCKS = re.findall(r'```python\n(.*?)```', README, flags=re.S)
# The family notes moved from the README to the docs keep their examples
# tested.
METHODS_BLOCKS = re.findall(
  r'```python\n(.*?)```',
  (ROOT / 'docs' / 'methods.md').read_text(),
  flags=re.S,
)


def test_readme_has_python_examples():
  assert BLOCKS


@pytest.mark.standard_promotion  # user code, run as users run it
@pytest.mark.parametrize('code', BLOCKS, ids=lambda c: c.splitlines()[0])
def test_readme_python_block_runs(code):
  exec(compile(code, 'README.md', 'exec'), {})  # noqa: S102


@pytest.mark.standard_promotion
@pytest.mark.parametrize(
  'code', METHODS_BLOCKS, ids=lambda c: c.splitlines()[0]
)
def test_docs_methods_python_block_runs(code):
  exec(compile(code, 'docs/methods.md', 'exec'), {})  # noqa: S102


def test_setup_commands_point_at_real_files():
  commands = re.findall(r'<!-- ci:(\w+) -->\n```bash\n(.*?)\n```', README)
  names = dict(commands)
  assert set(names) == {'quickstart', 'test'}
  assert 'examples/quickstart.py' in names['quickstart']
  assert (ROOT / 'examples' / 'quickstart.py').exists()
  assert 'pytest' in names['test'] and '.[test]' in names['test']
  ci = (ROOT / '.ci' / 'run').read_text()
  assert 'ci:test' in ci and 'eval "$test_cmd"' in ci
