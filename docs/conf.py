"""Sphinx configuration: ``sphinx-build -W -b html docs docs/_build``.

API pages are generated from the docstrings (Google style, reST maths) when
the build starts: one page per family, its functions first (in ``__all__``
order), then its states and types. Guides are Markdown (MyST); the notebooks
are copied in as an examples gallery (myst-nb, with the outputs stored by
``notebooks/build.py``; not executed here). Maths is rendered by a MathJax
shipped with the build (no network).
``tests/project/test_docs.py`` builds the site with warnings as errors and
checks every public symbol is documented.
"""

import importlib
import inspect
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

project = 'optax_ext'
author = 'The optax_ext Authors'
copyright = '2026, The optax_ext Authors'  # noqa: A001 - Sphinx's name
extensions = [
  'sphinx.ext.autodoc',
  'sphinx.ext.napoleon',
  'sphinx.ext.mathjax',
  'sphinx-mathjax-offline',
  'myst_nb',
]
source_suffix = {
  '.rst': 'restructuredtext',
  '.md': 'myst-nb',
  '.ipynb': 'myst-nb',
}
exclude_patterns = ['_build', 'jupyter_execute']
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


def _api_page(family: str, title: str) -> str:
  module = importlib.import_module(f'optax_ext.{family}')
  names = [n for n in module.__all__ if n not in ELSEWHERE.get(family, ())]
  objs = {n: getattr(module, n) for n in names}
  functions = [n for n in names if not inspect.isclass(objs[n])]
  classes = [n for n in names if inspect.isclass(objs[n])]
  head = f'optax_ext.{family}: {title}'
  lines = [head, '=' * len(head), '', f'.. automodule:: optax_ext.{family}']
  if functions:
    lines += ['', 'Functions', '---------']
    for n in functions:
      lines += ['', f'.. autofunction:: optax_ext.{family}.{n}']
  if classes:
    lines += ['', 'States and types', '----------------']
    for n in classes:
      lines += ['', f'.. autoclass:: optax_ext.{family}.{n}']
      if not issubclass(objs[n], tuple):  # NamedTuple fields are Attributes
        lines += ['   :members:']
  return '\n'.join(lines) + '\n'


def _write_generated_pages():
  api = ROOT / 'docs' / 'api'
  for family, title in FAMILIES.items():
    page = api / f'{family}.rst'
    text = _api_page(family, title)
    if not page.exists() or page.read_text() != text:
      page.write_text(text)
  gallery = ROOT / 'docs' / 'notebooks'
  gallery.mkdir(exist_ok=True)
  for nb in sorted((ROOT / 'notebooks').glob('*.ipynb')):
    target = gallery / nb.name
    if not target.exists() or target.read_bytes() != nb.read_bytes():
      shutil.copyfile(nb, target)


_write_generated_pages()
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # NamedTuple fields once, not twice
autodoc_typehints = 'none'
autodoc_default_options = {}
myst_enable_extensions = ['dollarmath']
html_theme = 'sphinx_book_theme'
html_title = 'optax_ext'
