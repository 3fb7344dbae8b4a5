"""The documentation site builds with warnings as errors and documents
every public symbol (``docs/``, Sphinx + autodoc + MyST)."""

import html.parser
import pathlib
import posixpath
import re
import subprocess
import sys
import urllib.parse

import pytest

sphinx_inventory = pytest.importorskip('sphinx.util.inventory')

from tests import helpers  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def site(tmp_path_factory):
  """The built site: warnings are errors and every reference must resolve
  (``-n``; what may stay unresolved is ``nitpick_ignore_regex`` in
  ``docs/conf.py``, each entry with its reason)."""
  out = tmp_path_factory.mktemp('docs')
  result = subprocess.run(
    [sys.executable, '-m', 'sphinx', '-W', '-n', '-q', '-b', 'html', 'docs']
    + [str(out)],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert result.returncode == 0, result.stderr[-5000:]
  return out


@pytest.fixture(scope='module')
def inventory(site):
  with open(site / 'objects.inv', 'rb') as f:
    inv = sphinx_inventory.InventoryFile.load(f, '', posixpath.join)
  return set().union(*(set(names) for names in inv.values()))


class _Links(html.parser.HTMLParser):
  """The ``id``s and the internal ``href``s of one page."""

  def __init__(self):
    super().__init__()
    self.ids, self.hrefs = set(), []

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if attrs.get('id'):
      self.ids.add(attrs['id'])
    if tag == 'a' and attrs.get('name'):
      self.ids.add(attrs['name'])
    href = attrs.get('href') if tag in ('a', 'link') else None
    if href and not re.match(r'^[a-z][a-z0-9+.-]*:', href):
      self.hrefs.append(href)


def test_internal_links_and_anchors_resolve(site):
  pages = {}
  for page in site.rglob('*.html'):
    if '_static' in page.parts:  # the theme's Jinja templates, not pages
      continue
    parser = _Links()
    parser.feed(page.read_text(errors='replace'))
    pages[page.resolve()] = parser
  broken = []
  for page, parser in pages.items():
    for href in parser.hrefs:
      path, _, anchor = urllib.parse.unquote(href).partition('#')
      path = path.partition('?')[0]  # a cache-busting digest
      target = (page.parent / path).resolve() if path else page
      where = f'{page.relative_to(site)}: {href}'
      if path and not target.exists():
        broken.append(f'{where} (no such file)')
      elif (
        anchor and target.suffix == '.html' and anchor not in pages[target].ids
      ):
        broken.append(f'{where} (no such anchor)')
  assert len(pages) > 20, sorted(pages)
  assert not broken, broken[:40]


def _text(page: pathlib.Path) -> str:
  return re.sub(r'<[^>]+>', '', page.read_text())


def test_landing_page_shows_install_example_and_methods(site):
  text = _text(site / 'index.html')
  assert 'pip install' in text
  assert 'grad_population' in text  # the first example
  assert 'aggregate_by_geometric_median' in text  # the methods table
  assert text.index('Getting started') < text.index('API')


def test_family_pages_open_with_a_summary(site):
  text = (site / 'api' / 'alignment.html').read_text()
  summary = text.index('Summary')
  assert summary < text.index('id="optax_ext.alignment.aggregate_by_upgrad"')
  # the headline rule before the alphabetical rest
  assert text.index('id="optax_ext.alignment.aggregate_by_upgrad"') < (
    text.index('id="optax_ext.alignment.aggregate_by_aligned_mtl"')
  )
  assert 'viewcode' in text or '_modules/' in text  # [source] links
  assert 'optax.readthedocs.io' in text  # intersphinx to optax
  assert 'Union[' not in text and 'numpy.bool' not in _text(
    site / 'api' / 'momentum.html'
  )  # state fields without their annotations' unions


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
