"""Tables generated from each method's declarations are up to date.

The README methods table, the family tables of ``docs/families.md`` and
``tests/properties/validation_ranges.txt`` are derived from the metadata
beside each method (``@metadata.describe``) and from the validators. A stale
file is rewritten in place and the test fails: review ``git diff`` and
commit it (a new method needs no hand-written row).
"""

import pathlib
import re

import pytest

from optax_ext._src import metadata

ROOT = pathlib.Path(__file__).resolve().parents[2]

_README_TABLE = re.compile(
  r'(<!-- methods-table:start[^\n]*-->\n)(.*?)(<!-- methods-table:end -->)',
  re.S,
)
_FAMILY_TABLE = re.compile(
  r'(<!-- family-table: ([\w.]+) -->\n)(.*?)(<!-- family-table:end -->)', re.S
)


def _refresh(path: pathlib.Path, fresh: str) -> None:
  """Writes ``fresh`` over ``path`` if it differs, then fails naming it."""
  old = path.read_text()
  if fresh != old:
    path.write_text(fresh)
    pytest.fail(
      f'{path.relative_to(ROOT)} was stale and has been regenerated from the '
      "methods' metadata: review `git diff` and commit it."
    )


def test_readme_methods_table_is_generated():
  path = ROOT / 'README.md'
  text = path.read_text()
  assert _README_TABLE.search(text), 'README.md lost its table markers'
  fresh = _README_TABLE.sub(
    lambda m: m.group(1) + metadata.readme_table() + m.group(3), text
  )
  _refresh(path, fresh)


def test_family_tables_are_generated():
  path = ROOT / 'docs' / 'families.md'
  text = path.read_text()
  found = {m.group(2) for m in _FAMILY_TABLE.finditer(text)}
  modules = {
    m.public_module for m in metadata.methods().values() if m.row is not None
  } - {'optax_ext'}
  assert modules <= found, (
    f'docs/families.md has no table for {modules - found}'
  )
  fresh = _FAMILY_TABLE.sub(
    lambda m: (
      m.group(1) + '\n' + metadata.family_table(m.group(2)) + '\n' + m.group(4)
    ),
    text,
  )
  _refresh(path, fresh)


def test_every_row_names_public_functions():
  for m in metadata.methods().values():
    if m.row is None:
      continue
    module = __import__(m.public_module, fromlist=['_'])
    for name in m.row.also:
      assert hasattr(module, name), (m.name, name)
