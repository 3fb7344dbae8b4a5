"""Regenerates the notebooks from their sources, executed, outputs stored.

``python notebooks/build.py [name ...]`` reads each ``notebooks/<name>.py``
(jupytext percent format, the reviewed source), executes it at full size in
a fresh Python 3 kernel on CPU and writes ``notebooks/<name>.ipynb`` with its
outputs, which the documentation's gallery shows as they are (the docs build
does not execute notebooks). ``tests/project/test_notebooks.py`` checks the
pairs hold the same cells, that the stored outputs are there, and executes
every notebook again at smoke size.
"""

import os
import pathlib
import sys
import time

import jupytext
import nbclient

HERE = pathlib.Path(__file__).resolve().parent


def build(source: pathlib.Path) -> float:
  """Executes ``source`` and writes the paired ``.ipynb``; returns seconds."""
  nb = jupytext.read(source)
  start = time.perf_counter()
  nbclient.NotebookClient(
    nb,
    timeout=1800,
    kernel_name='python3',
    resources={'metadata': {'path': str(source.parent)}},
  ).execute()
  seconds = time.perf_counter() - start
  for cell in nb.cells:  # no machine-specific timings in the stored file
    cell.get('metadata', {}).pop('execution', None)
  jupytext.write(nb, source.with_suffix('.ipynb'), fmt='ipynb')
  return seconds


def main(names):
  os.environ.update(
    JAX_PLATFORMS='cpu',
    MPLBACKEND='module://matplotlib_inline.backend_inline',
  )
  os.environ.pop('OPTAX_EXT_SMOKE', None)
  os.environ.pop('XLA_FLAGS', None)
  sources = [HERE / f'{n}.py' for n in names] or sorted(
    p for p in HERE.glob('*.py') if p.name != 'build.py'
  )
  for source in sources:
    print(f'{source.stem}: {build(source):.1f} s', flush=True)


if __name__ == '__main__':
  main(sys.argv[1:])
