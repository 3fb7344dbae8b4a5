"""The package's shape: layers without cycles, short modules, layouts in
the core, and no machine-specific figures in the code.

Like the collectives rule in ``test_public_api``, these read the source:
a family file that branches on a population layout, a module that grows
past a sitting's reading, an import cycle hidden in a function, or a
timing pasted into a docstring fails here with the place to fix.
"""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / 'optax_ext'
SOURCES = sorted(PACKAGE.rglob('*.py'))

# ~600 lines: a module reads in one sitting (issue "A method is one file").
MAX_LINES = 600


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(ROOT).with_suffix('').parts)
  if parts[-1] == '__init__':
    parts = parts[:-1]
  return '.'.join(parts)


def _imports(path: pathlib.Path) -> set[str]:
  """``optax_ext`` modules imported anywhere in the file (function-level
  imports included: they hide cycles rather than remove them)."""
  found = set()
  modules = {_module_name(p) for p in SOURCES}
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names if a.name.startswith('optax_ext')}
    elif isinstance(node, ast.ImportFrom) and node.module:
      if not node.module.startswith('optax_ext'):
        continue
      for a in node.names:
        child = f'{node.module}.{a.name}'
        found.add(child if child in modules else node.module)
  return found


def _graph() -> dict[str, set[str]]:
  graph = {_module_name(p): _imports(p) for p in SOURCES}
  # A package's __init__ importing its own submodules is how packages are
  # built; the edge back (a submodule importing its package) is a cycle.
  return graph


def _find_cycle(graph):
  state = {}
  stack = []

  def visit(node):
    state[node] = 'open'
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if nxt not in graph:
        continue
      if state.get(nxt) == 'open':
        return stack[stack.index(nxt) :] + [nxt]
      if nxt not in state:
        found = visit(nxt)
        if found:
          return found
    stack.pop()
    state[node] = 'done'
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_no_import_cycle():
  cycle = _find_cycle(_graph())
  assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)


def test_the_core_imports_no_family():
  """``optax_ext._src`` is the bottom layer: families build on it."""
  wrong = [
    (module, imported)
    for module, imports in _graph().items()
    if module.startswith('optax_ext._src')
    for imported in imports
    if not imported.startswith('optax_ext._src')
  ]
  assert not wrong, wrong


def test_the_cycle_finder_finds_a_cycle():
  assert _find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == [
    'a',
    'b',
    'c',
    'a',
  ]


@pytest.mark.parametrize(
  'path', SOURCES, ids=lambda p: str(p.relative_to(ROOT))
)
def test_modules_read_in_one_sitting(path):
  lines = len(path.read_text().splitlines())
  assert lines <= MAX_LINES, (
    f'{path.relative_to(ROOT)} has {lines} lines (> {MAX_LINES}): split it '
    'by concern (one private file per method in a family; a layer of its '
    'own in _src).'
  )


# What a population-layout branch looks like in a family file: the core
# (``optax_ext/_src``) dispatches stacked, named and lean populations.
_LAYOUT_ATTRIBUTES = {'is_lean', 'is_named', 'axis_name'}


def _layout_branches(path: pathlib.Path) -> list[str]:
  found = []
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Attribute) and node.attr in _LAYOUT_ATTRIBUTES:
      found.append(f'{path.relative_to(ROOT)}:{node.lineno} .{node.attr}')
  return found


def test_families_do_not_branch_on_layouts():
  found = [
    hit
    for path in SOURCES
    if '_src' not in path.parts
    for hit in _layout_branches(path)
  ]
  assert not found, (
    'a family file branches on the population layout; use (or add) the '
    f'core function that dispatches it in optax_ext/_src: {found}'
  )


def test_the_layout_rule_sees_a_branch(tmp_path):
  sample = tmp_path / 'x.py'
  sample.write_text('if axes.is_named or lean.is_lean(g):\n  pass\n')
  found = _layout_branches.__call__(sample) if False else None
  del found
  hits = []
  for node in ast.walk(ast.parse(sample.read_text())):
    if isinstance(node, ast.Attribute) and node.attr in _LAYOUT_ATTRIBUTES:
      hits.append(node.attr)
  assert sorted(hits) == ['is_lean', 'is_named']


# A measured figure: a duration, a size, or a speed ratio. Figures belong in
# docs/benchmarks.md with their machine and date; code says why.
_FIGURE = re.compile(
  r'\b\d+(?:\.\d+)?\s?(?:ms|µs|us|s|MB|GB|KB|MiB|GiB|KiB)\b'
  r'|\b\d+(?:\.\d+)?\s?x\s+(?:faster|slower)\b',
)


def _comments_and_docstrings(path: pathlib.Path) -> list[tuple[int, str]]:
  text = path.read_text()
  out = [
    (i + 1, line.split('#', 1)[1])
    for i, line in enumerate(text.splitlines())
    if '#' in line and not line.lstrip().startswith(('"', "'"))
  ]
  for node in ast.walk(ast.parse(text)):
    if isinstance(
      node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)
    ):
      doc = ast.get_docstring(node, clean=False)
      if doc:
        out.append((getattr(node, 'lineno', 1), doc))
  return out


def test_no_measured_figures_in_the_code():
  found = [
    f'{path.relative_to(ROOT)}:{line}: {m.group(0)!r}'
    for path in SOURCES
    for line, text in _comments_and_docstrings(path)
    for m in _FIGURE.finditer(text)
  ]
  assert not found, (
    'measured figures in code comments or docstrings (move them to '
    f'docs/benchmarks.md with the machine and date): {found}'
  )


def test_the_figure_rule_sees_figures():
  for text in ('28 ms against 4.4 ms', '133 MB', '2x faster', '1.5 x slower'):
    assert _FIGURE.search(text), text
  for text in ('K x K', 'float32', '8 devices', 'axis 0'):
    assert not _FIGURE.search(text), text


def test_contributing_names_existing_files():
  """Every file CONTRIBUTING.md points a contributor to exists."""
  text = (ROOT / 'CONTRIBUTING.md').read_text()
  named = set(re.findall(r'`((?:[\w.-]+/)*[\w.-]+\.(?:py|md|bib|txt))`', text))
  missing = []
  for name in sorted(named):
    candidates = [ROOT / name, PACKAGE / name, PACKAGE / '_src' / name]
    candidates += list(ROOT.glob(f'tests/**/{name}'))
    if not any(p.exists() for p in candidates):
      missing.append(name)
  assert not missing, (
    f'CONTRIBUTING.md names files that do not exist: {missing}'
  )
