"""Sphinx configuration: ``sphinx-build -W -b html docs docs/_build``.

Generated when the build starts: one API page per family from the
docstrings (Google style, reST maths), opening with a summary table, its
entries in sections (aggregators, weightings, optimisers, functions, states)
with the headline methods first; the landing page's methods table from the
methods' metadata; the notebook gallery (myst-nb, with the outputs stored by
``notebooks/build.py``; not executed here; cards with each notebook's first
figure). Guides are Markdown (MyST). Maths is rendered by a MathJax shipped
with the build, and the intersphinx inventories are read from
``docs/inventories/`` (no network). ``tests/project/test_docs.py`` builds
the site with warnings as errors and ``-n``, checks its links and anchors,
and checks every public symbol is documented.
"""

import base64
import importlib
import inspect
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optax_ext._src import metadata  # noqa: E402 - after sys.path

project = 'optax_ext'
author = 'The optax_ext Authors'
copyright = '2026, The optax_ext Authors'  # noqa: A001 - Sphinx's name
extensions = [
  'sphinx.ext.autodoc',
  'sphinx.ext.autosummary',
  'sphinx.ext.intersphinx',
  'sphinx.ext.napoleon',
  'sphinx.ext.viewcode',
  'sphinx_design',
  'sphinx.ext.mathjax',
  'sphinx-mathjax-offline',
  'myst_nb',
]
source_suffix = {
  '.rst': 'restructuredtext',
  '.md': 'myst-nb',
  '.ipynb': 'myst-nb',
}
exclude_patterns = ['_build', 'jupyter_execute', '_generated', 'inventories']
nb_execution_mode = 'off'

FAMILIES = {
  'population': 'Gradient populations',
  'aggregation': 'Aggregation',
  'momentum': 'Momentum mixtures and momentum methods',
  'adaptive': 'Adaptive step sizes',
  'robust': 'Robust aggregation',
  'variance': 'Variance reduction and large-batch statistics',
  'alignment': 'Gradient alignment and multi-task aggregation',
  'lookahead': 'Lookahead',
  'pruning': 'Pruning',
  'losses': 'Losses and guidance',
  'scalarization': 'Loss scalarization (multi-task)',
  'privacy': 'Differential privacy',
}
# Documented on another family's page.
ELSEWHERE = {'aggregation': {'PopulationAxes', 'grad_population'}}


SECTIONS = (
  ('aggregators', 'Aggregators and population transforms'),
  ('weightings', 'Weightings'),
  ('optimisers', 'Optimisers and transforms'),
  ('functions', 'Functions and utilities'),
)


def _section(name: str) -> str:
  """Where a public function goes on its family's page."""
  method = metadata.methods().get(name)
  kind = method.case.kind if method is not None and method.case else None
  if kind in ('aggregator', 'population') or name.startswith(
    ('aggregate_by_', 'mix_by_', 'clip_each_')
  ):
    return 'aggregators'
  if name.endswith('_weighting'):
    return 'weightings'
  if kind in ('param', 'wrapper'):
    return 'optimisers'
  return 'functions'


# What a reader of each family comes for, first on its page; then the rest
# of the methods table's names, then the others alphabetically.
HEADLINES = {
  'population': ('grad_population', 'microbatches', 'ghost', 'ghost_report'),
  'robust': (
    'aggregate_by_geometric_median',
    'aggregate_by_krum',
    'aggregate_by_trimmed_mean',
    'aggregate_by_coordinate_median',
    'aggregate_by_centered_clipping',
    'clip_each_by_global_norm',
  ),
  'alignment': (
    'aggregate_by_upgrad',
    'upgrad_weighting',
    'aggregate_by_mgda',
    'aggregate_by_cagrad',
    'aggregate_by_pcgrad',
    'aggregate_by_nash_mtl',
  ),
  'momentum': ('momentum_mixture', 'scale_by_momentum_mixture', 'qhm', 'mars'),
  'variance': ('aggregate_by_gsnr', 'scale_by_gsnr', 'vr_adam', 'gsnr'),
  'privacy': ('aggregate_by_private_mean', 'dp_sgd_epsilon'),
}


def _importance(family: str) -> dict[str, int]:
  """Rank of each name on its family's page (the headline methods first)."""
  ranks = {n: i for i, n in enumerate(HEADLINES.get(family, ()))}
  for m in metadata.methods().values():
    if m.row is not None and m.public_module == f'optax_ext.{family}':
      for n in (m.name, *m.row.also):
        ranks.setdefault(n, len(ranks))
  return ranks


def _api_page(family: str, title: str) -> str:
  module = importlib.import_module(f'optax_ext.{family}')
  names = [n for n in module.__all__ if n not in ELSEWHERE.get(family, ())]
  objs = {n: getattr(module, n) for n in names}
  ranks = _importance(family)
  functions = sorted(
    (n for n in names if not inspect.isclass(objs[n])),
    key=lambda n: (ranks.get(n, len(ranks)), n),
  )
  classes = [n for n in names if inspect.isclass(objs[n])]
  head = f'optax_ext.{family}: {title}'
  lines = [head, '=' * len(head), '', f'.. automodule:: optax_ext.{family}']
  groups = [
    (label, [n for n in functions if _section(n) == key])
    for key, label in SECTIONS
  ]
  groups = [g for g in groups if g[1]]
  if classes:
    groups.append(('States and types', classes))
  # A summary first (name and first docstring line), then the entries.
  lines += ['', 'Summary', '-------']
  for label, members in groups:
    lines += ['', f'**{label}**', '', '.. autosummary::', '']
    lines += [f'   {n}' for n in members]
  for label, members in groups:
    lines += ['', label, '-' * len(label)]
    for n in members:
      if inspect.isclass(objs[n]):
        lines += ['', f'.. autoclass:: optax_ext.{family}.{n}']
        if not issubclass(objs[n], tuple):  # NamedTuple fields: Attributes
          lines += ['   :members:']
      else:
        lines += ['', f'.. autofunction:: optax_ext.{family}.{n}']
  return '\n'.join(lines) + '\n'


def _write_generated_pages():
  api = ROOT / 'docs' / 'api'
  for family, title in FAMILIES.items():
    _write_if_changed(api / f'{family}.rst', _api_page(family, title))
  generated = ROOT / 'docs' / '_generated'
  generated.mkdir(exist_ok=True)
  _write_if_changed(
    generated / 'methods_table.md', metadata.readme_table(links=True)
  )
  gallery = ROOT / 'docs' / 'notebooks'
  (gallery / 'thumbnails').mkdir(parents=True, exist_ok=True)
  cards = []
  notebooks = sorted(
    (ROOT / 'notebooks').glob('*.ipynb'),
    key=lambda nb: (nb.stem != 'getting_started', nb.stem),
  )
  for nb in notebooks:
    notebook = json.loads(nb.read_text())
    title, thumbnail = _prepare_notebook(notebook)
    _write_if_changed(gallery / nb.name, json.dumps(notebook, indent=1))
    image = ''
    if thumbnail is not None:
      _write_if_changed(gallery / 'thumbnails' / f'{nb.stem}.png', thumbnail)
      image = f':img-top: notebooks/thumbnails/{nb.stem}.png\n'
    cards.append(
      f':::{{grid-item-card}} {title}\n:link: notebooks/{nb.stem}\n'
      f':link-type: doc\n{image}:::\n'
    )
  _write_if_changed(
    generated / 'gallery.md',
    '::::{grid} 1 2 3 3\n:gutter: 3\n\n' + '\n'.join(cards) + '::::\n',
  )


def _write_if_changed(path: pathlib.Path, content: str | bytes) -> None:
  """Leaves an unchanged file alone (Sphinx rebuilds what is newer)."""
  data = content.encode() if isinstance(content, str) else content
  if not path.exists() or path.read_bytes() != data:
    path.write_bytes(data)


def _prepare_notebook(notebook: dict) -> tuple[str, bytes | None]:
  """Its title and first figure; its Colab set-up cell hidden on the site.

  The set-up cell (``pip install`` on Colab, nothing elsewhere) is tagged
  ``remove-cell``: the site shows the tour, Colab still runs the cell.
  """
  title, thumbnail = 'Notebook', None
  for cell in notebook['cells']:
    source = ''.join(cell.get('source', ''))
    if cell['cell_type'] == 'markdown' and title == 'Notebook':
      heading = re.search(r'^# (.+)$', source, re.M)
      if heading:
        title = heading.group(1).strip()
    if cell['cell_type'] == 'code':
      if 'google.colab' in source:
        tags = cell.setdefault('metadata', {}).setdefault('tags', [])
        if 'remove-cell' not in tags:
          tags.append('remove-cell')
      for output in cell.get('outputs', []):
        png = output.get('data', {}).get('image/png')
        if png and thumbnail is None:
          thumbnail = base64.b64decode(''.join(png))
  return title, thumbnail


_write_generated_pages()
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # NamedTuple fields once, not twice
# A NamedTuple field's annotation (optax.Updates, chex.ArrayTree) expands to
# a screen of unions; the field's description says what it holds.
napoleon_attr_annotations = False
autodoc_typehints = 'none'
autodoc_default_options = {}
autosummary_generate = False  # summaries link to the entries on the page
myst_enable_extensions = ['dollarmath', 'colon_fence']

# Offline inventories (docs/inventories/build.py writes them): the build
# has no network.
_INV = str(ROOT / 'docs' / 'inventories')
intersphinx_mapping = {
  'optax': ('https://optax.readthedocs.io/en/latest/', f'{_INV}/optax.inv'),
  'jax': ('https://docs.jax.dev/en/latest/', f'{_INV}/jax.inv'),
  'numpy': ('https://numpy.org/doc/stable/', f'{_INV}/numpy.inv'),
  'flax': ('https://flax.readthedocs.io/en/latest/', f'{_INV}/flax.inv'),
}

# tests/project/test_docs.py builds with -n: every reference resolves (to
# our pages, or to optax/JAX/NumPy/Flax through the inventories above).
# Nothing is ignored today; an entry added here needs its reason beside it.
nitpick_ignore_regex = []

html_theme = 'sphinx_book_theme'
html_title = 'optax_ext'
html_static_path = ['_static']
html_logo = '_static/logo.svg'
# One search box: the header's button (the theme's sidebar field repeated
# it).
html_sidebars = {
  '**': ['navbar-logo.html', 'icon-links.html', 'sbt-sidebar-nav.html']
}
html_theme_options = {
  'repository_url': 'https://github.com/optax-ext/optax_ext',
  'use_repository_button': True,
  'use_source_button': False,
  'show_toc_level': 2,
  'navigation_with_keys': False,
  'search_bar_text': 'Search the docs',
}


def _resolve_reexport(app, env, node, contnode):
  """``optax_ext.X`` for a name documented on its family's page.

  The top level re-exports ``Aggregator``, ``PopulationAxes``,
  ``aggregate_by_mean``, ... (documented once, where they are defined
  publicly); a reference to the short spelling resolves there.
  """
  target = node.get('reftarget', '')
  if node.get('refdomain') != 'py' or not target.startswith('optax_ext.'):
    return None
  name = target.rsplit('.', 1)[-1]
  domain = env.get_domain('py')
  for family in FAMILIES:
    home = f'optax_ext.{family}.{name}'
    if home != target and home in domain.objects:
      return domain.resolve_xref(
        env, node['refdoc'], app.builder, node['reftype'], home, node, contnode
      )
  return None


def setup(app):
  app.connect('missing-reference', _resolve_reexport)
