"""Sphinx configuration: ``sphinx-build -W -b html docs docs/_build``.

API pages are generated from the docstrings (Google style, reST maths);
guides are Markdown (MyST). ``tests/test_docs.py`` builds the site with
warnings as errors and checks every public symbol is documented.
"""

import pathlib
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
  'myst_parser',
]
source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
exclude_patterns = ['_build']
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # NamedTuple fields once, not twice
autodoc_typehints = 'none'
autodoc_default_options = {'members': True}
myst_enable_extensions = ['dollarmath']
html_theme = 'alabaster'
html_title = 'optax_ext'
