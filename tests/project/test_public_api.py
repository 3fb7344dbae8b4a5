"""The public API: complete sorted ``__all__``, documented factories, states.

A *public factory* is a public callable whose return annotation is an
``optax.GradientTransformation`` (or subclass). Every one must be in
``tests/registry.py`` (so the battery covers it), carry a doctested Example
and References in its docstring, and build states that follow the naming
rule.
"""

import ast
import inspect
import pathlib

import jax
import optax
import pytest

import optax_ext
from optax_ext._src import metadata
from tests import helpers
from tests import registry

README = (pathlib.Path(__file__).resolve().parents[2] / 'README.md').read_text()

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize('mod', helpers.MODULES, ids=lambda m: m.__name__)
def test_all_is_sorted_and_unique(mod):
  assert list(mod.__all__) == sorted(mod.__all__), mod.__name__
  assert len(set(mod.__all__)) == len(mod.__all__)


@pytest.mark.parametrize('mod', helpers.MODULES, ids=lambda m: m.__name__)
def test_all_is_complete(mod):
  """Every public attribute is listed, and every listed name exists."""
  for name in mod.__all__:
    assert hasattr(mod, name), f'{mod.__name__}.__all__ lists missing {name}'
  for name, obj in vars(mod).items():
    if name.startswith('_'):
      continue
    if inspect.ismodule(obj):
      # Submodules of optax_ext are public API; third-party imports are not.
      if not obj.__name__.startswith('optax_ext.'):
        continue
    elif not getattr(obj, '__module__', '').startswith('optax_ext'):
      continue
    assert name in mod.__all__, f'{mod.__name__}.{name} is not in __all__'


def test_top_level_reexports_are_the_same_objects():
  for name in optax_ext.__all__:
    obj = getattr(optax_ext, name)
    if inspect.ismodule(obj):  # optax_ext.lookahead is the subpackage
      continue
    for mod in helpers.MODULES[1:]:
      if name in mod.__all__:
        assert getattr(mod, name) is obj


def test_version():
  assert isinstance(optax_ext.__version__, str) and optax_ext.__version__


def test_factories_found():
  # Guards the discovery itself: the foundation's two aggregators are found.
  assert {'aggregate_by_mean', 'aggregate_by_sum'} <= set(helpers.FACTORIES)


@pytest.mark.parametrize('name', sorted(helpers.FACTORIES))
def test_every_factory_is_in_the_registry(name):
  assert name in registry.BY_NAME, (
    f'{name} is public but not in tests/registry.py, so the battery does '
    'not cover it'
  )
  assert registry.BY_NAME[name].factory is helpers.FACTORIES[name]


def test_registry_has_only_public_factories():
  assert set(registry.BY_NAME) <= set(helpers.FACTORIES)


def checklist_omissions(name: str, method) -> list[str]:
  """What a public function still lacks, as CONTRIBUTING's checklist says.

  ``method`` is its ``metadata.Method`` (``None`` if it declares nothing).
  A factory needs citations, a battery case, properties (population rules;
  the multi-task properties for an ``aggregate_by_*`` of the alignment
  family), a benchmark row (optimisers, robust and multi-task rules) and a
  README row; any other public function needs its declaration (citations,
  ``()`` for a utility without a paper).
  """
  if method is None:
    return [
      "@metadata.describe(citations=('<bibtex key>',)) on its definition "
      '(citations=() for a utility without a paper), the key in '
      'optax_ext/references.bib'
    ]
  if name not in helpers.FACTORIES:
    return []
  missing = []
  if not method.citations:
    missing.append(
      "citations=('<bibtex key>',) in its @metadata.describe (and the "
      'entry in optax_ext/references.bib)'
    )
  case, props = method.case, method.properties
  if case is None:
    missing.append(
      'case=metadata.Case(kind=..., kwargs=...) in its @metadata.describe '
      '(the test battery runs it)'
    )
  elif case.kind in ('aggregator', 'population') and props is None:
    missing.append(
      'properties=metadata.Properties(robust=..., lean=...) in its '
      '@metadata.describe (a population rule)'
    )
  multitask_rule = method.public_module == 'optax_ext.alignment' and (
    name.startswith('aggregate_by_')
  )
  declared = props is not None and (
    props.multitask is not None or props.multitask_exempt is not None
  )
  if multitask_rule and not declared:
    missing.append(
      'properties=metadata.Properties(..., multitask=metadata.Multitask('
      'non_conflicting=..., linear_under_scaling=..., '
      'permutation_invariant=..., homogeneity_degree=...)) (an '
      'aggregate_by_* of the alignment family is a multi-task rule: the '
      'property tests select it by this), or multitask_exempt="why"'
    )
  optimiser = case is not None and case.kind == 'param' and case.alias
  population_rule = props is not None and (
    props.robust or props.multitask is not None
  )
  if (optimiser or population_rule) and not method.benchmarks:
    missing.append(
      "benchmarks=(metadata.Benchmark('transforms' or 'aggregators' or "
      "'multitask', label, ...),) in its @metadata.describe"
    )
  in_rows = any(
    m.row is not None and name in (m.name, *m.row.also)
    for m in metadata.methods().values()
  )
  if not in_rows:
    missing.append(
      'row=metadata.Row(family, method, papers=...) in its '
      "@metadata.describe, or its name in another row's also="
    )
  return missing


FAMILY_FUNCTIONS = {
  n
  for m in helpers.MODULES
  if m.__name__
  not in ('optax_ext', 'optax_ext.population', 'optax_ext.aggregation')
  for n in m.__all__
  if inspect.isfunction(getattr(m, n))
}


@pytest.mark.parametrize(
  'name', sorted(FAMILY_FUNCTIONS | set(helpers.FACTORIES))
)
def test_checklist(name):
  """A public function is told what it still lacks (CONTRIBUTING)."""
  missing = checklist_omissions(name, metadata.methods().get(name))
  assert not missing, f'{name} needs: ' + '; '.join(missing)


def _plain_ema(decay: float = 0.9) -> optax.GradientTransformation:
  """A stand-in new factory for the checklist's own tests."""
  del decay
  return optax.identity()


def _declared(fn, **declared):
  metadata_fields = {
    'citations': ('robbins1951stochastic',),
    'properties': None,
    'case': metadata.Case(kind='param'),
    'benchmarks': (),
    'row': None,
    **declared,
  }
  return metadata.Method(
    name=fn.__name__,
    function=fn,
    module='optax_ext.alignment._new',
    **metadata_fields,
  )


def test_checklist_names_each_omission(monkeypatch):
  """The omissions CONTRIBUTING warns of fail, saying what to add."""
  for name in ('scale_by_plain_ema', 'aggregate_by_plain'):
    monkeypatch.setitem(helpers.FACTORIES, name, _plain_ema)
  # A public helper without a declaration (so without a citation).
  (missing,) = checklist_omissions('plain_ema_weights', None)
  assert 'citations=' in missing and 'references.bib' in missing
  # A multi-task rule declared without its multi-task properties.
  _plain_ema.__name__ = 'aggregate_by_plain'
  rule = _declared(
    _plain_ema,
    case=metadata.Case(kind='aggregator'),
    properties=metadata.Properties(robust=False),
  )
  missing = checklist_omissions('aggregate_by_plain', rule)
  assert any('multitask=metadata.Multitask(' in m for m in missing), missing
  # No case: the battery would not run it.
  missing = checklist_omissions(
    'aggregate_by_plain', _declared(_plain_ema, case=None)
  )
  assert any(m.startswith('case=metadata.Case(') for m in missing), missing


def _state_names() -> set[str]:
  """``CamelCase(f) + 'State'`` for every public function ``f`` (and for
  ``*_init`` functions, without ``_init``): the names a state may take."""
  functions = set(FAMILY_FUNCTIONS) | set(helpers.FACTORIES)
  stems = functions | {f.removesuffix('_init') for f in functions}
  return {
    ''.join(w.capitalize() for w in f.split('_')) + 'State' for f in stems
  }


def state_naming_omission(cls_name: str, factory: str) -> str | None:
  """Why a state class breaks the naming rule, or ``None``."""
  if cls_name in _state_names():
    return None
  want = ''.join(w.capitalize() for w in factory.split('_')) + 'State'
  return (
    f'{cls_name} is not named after a public function: name it {want} '
    f'after {factory} (CamelCase of the factory, then State)'
  )


def test_state_naming_rule_names_the_expected_name():
  message = state_naming_omission('PlainEmaState', 'scale_by_plain_ema')
  assert message and 'ScaleByPlainEmaState' in message, message
  assert state_naming_omission('ScaleByQhadamState', 'qhadam') is None


@pytest.mark.parametrize('name', sorted(helpers.FACTORIES))
def test_factory_docstring(name):
  doc = inspect.getdoc(helpers.FACTORIES[name]) or ''
  assert 'Example:' in doc and '>>>' in doc, f'{name}: no doctested Example'
  assert 'References:' in doc, f'{name}: no References section'
  assert 'Args:' in doc and 'Returns:' in doc, f'{name}: no Args/Returns'


def _state_nodes(state):
  """All NamedTuple nodes of a state tree (including nested ones)."""
  nodes = []

  def visit(x):
    if isinstance(x, tuple) and hasattr(x, '_fields'):
      nodes.append(x)
      for v in x:
        visit(v)
    elif isinstance(x, (tuple, list)):
      for v in x:
        visit(v)
    elif isinstance(x, dict):
      for v in x.values():
        visit(v)

  visit(state)
  return nodes


@pytest.mark.parametrize('entry', registry.REGISTRY, ids=lambda e: e.name)
def test_state_classes_follow_the_naming_rule(entry):
  """Our states are public NamedTuples named after a public function
  (``scale_by_foo`` -> ``ScaleByFooState``); counts int32."""
  params = {'w': jax.numpy.zeros(3), 'b': jax.numpy.zeros((2, 2))}
  exported = {
    getattr(m, n)
    for m in helpers.MODULES
    for n in m.__all__
    if inspect.isclass(getattr(m, n))
  }
  for node in _state_nodes(entry.make().init(params)):
    cls = type(node)
    if not cls.__module__.startswith('optax_ext'):
      continue
    assert cls.__name__.endswith('State'), cls
    omission = state_naming_omission(cls.__name__, entry.name)
    assert omission is None, omission
    assert cls in exported, f'{cls.__name__} is not exported publicly'
    for field in ('count', 'mini_step', 'step'):
      if field in node._fields:
        assert jax.numpy.asarray(getattr(node, field)).dtype == 'int32'


def test_error_messages_name_the_public_function():
  # `where = '...'` in a public function is what its errors start with: it
  # must be that function's own name (not a sibling it delegates to).
  wrong = []
  for path in (ROOT / 'optax_ext').rglob('*.py'):
    for node in ast.parse(path.read_text()).body:
      if not isinstance(node, ast.FunctionDef) or node.name.startswith('_'):
        continue
      for stmt in node.body:
        if (
          isinstance(stmt, ast.Assign)
          and [getattr(t, 'id', None) for t in stmt.targets] == ['where']
          and isinstance(stmt.value, ast.Constant)
          and stmt.value.value != node.name
        ):
          wrong.append((str(path), node.name, stmt.value.value))
  assert not wrong


_COLLECTIVES = {
  'psum',
  'pmean',
  'pmax',
  'pmin',
  'psum_scatter',
  'all_gather',
  'all_to_all',
  'ppermute',
  'pshuffle',
  'axis_index',
}


def test_families_reach_collectives_only_through_population():
  # DESIGN.md: a family never calls a collective over the population
  # itself; ``optax_ext/_src/population.py`` (and its lean/kernel helpers)
  # own them, so the named, sharded and lean layouts stay one code path.
  calls = []
  for path in sorted((ROOT / 'optax_ext').rglob('*.py')):
    if path.parent.name == '_src':
      continue
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Attribute) and node.attr in _COLLECTIVES:
        calls.append(f'{path.relative_to(ROOT)}:{node.lineno} {node.attr}')
      if isinstance(node, ast.ImportFrom) and node.module in ('jax.lax',):
        calls += [
          f'{path.relative_to(ROOT)}:{node.lineno} import {a.name}'
          for a in node.names
          if a.name in _COLLECTIVES
        ]
  assert not calls, calls


# Docstrings assembled at import time: allowed only for a shared maths
# fragment (the VRGD aliases share scale_by_gsnr's description).
DOCSTRINGS_FILLED_AT_IMPORT = {'optax_ext/variance/_vrgd.py'}


def test_references_are_written_in_the_docstrings():
  filled = set()
  for path in sorted((ROOT / 'optax_ext').rglob('*.py')):
    src = path.read_text()
    rel = path.relative_to(ROOT).as_posix()
    assert '{ref}' not in src, rel
    if '.__doc__ = ' in src:
      filled.add(rel)
  assert filled == DOCSTRINGS_FILLED_AT_IMPORT, filled


def _weight_decay_factories():
  for name, fn in sorted(helpers.FACTORIES.items()):
    params = inspect.signature(fn).parameters
    if 'weight_decay' in params:
      yield name, params


# Factories whose decay is the reference's own scheme, not optax's
# add_decayed_weights (so no `mask`), with the reason.
OWN_WEIGHT_DECAY = {
  # Per-tensor decay inside the projection step (AdamP/SGDP's reference).
  'adamp': 'decay applied inside the projected step',
  'sgdp': 'decay applied inside the projected step',
  'scale_by_adamp': 'decay applied inside the projected step',
  'scale_by_sgdp': 'decay applied inside the projected step',
  # MARS decays 1-D and matrix params at two rates (weight_decay_1d).
  'mars': 'two rates by parameter rank',
  # Ranger21's stable decay and norm loss act on whole tensors.
  'ranger21': 'stable decay and norm loss',
  # XGrad's decay is part of the predicted step it extrapolates.
  'xgrad': 'decay inside the weight prediction',
  'xgrad_adamw': 'decay inside the weight prediction',
  'xgrad_sgd': 'decay inside the weight prediction',
  # VR-LARS masks by rank, as LARS (weight_decay_mask).
  'vr_lars': 'rank-based weight_decay_mask, as optax.lars',
}


@pytest.mark.parametrize(
  ('name', 'params'), list(_weight_decay_factories()), ids=lambda x: str(x)
)
def test_one_weight_decay_convention(name, params):
  """One switch name (`decouple_weight_decay`), keyword-only flags, and a
  `mask` wherever optax's decay is used."""
  for flag in ('decouple_weight_decay', 'mask', 'mu_dtype'):
    if flag in params:
      assert params[flag].kind is inspect.Parameter.KEYWORD_ONLY, (
        f'{name}: `{flag}` must be keyword-only'
      )
  for other in ('weight_decay_type', 'decoupled', 'coupled'):
    assert other not in params, f'{name}: use `decouple_weight_decay`'
  if name not in OWN_WEIGHT_DECAY:
    assert 'mask' in params, f'{name}: takes weight_decay but no mask'


@pytest.mark.parametrize('name', sorted(helpers.FACTORIES))
def test_weights_are_per_member(name):
  """A parameter called `weights` holds one weight per member (or task), so
  only population rules take one; mixing coefficients are named so."""
  params = inspect.signature(helpers.FACTORIES[name]).parameters
  if 'weights' in params:
    assert registry.BY_NAME[name].kind in ('aggregator', 'population'), name
