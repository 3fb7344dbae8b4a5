"""The notebooks: jupytext pairs in sync, and each one runs (smoke mode).

``notebooks/*.py`` (percent format) are the reviewed sources; the
``.ipynb`` next to each is generated, executed at full size with its
outputs stored, by ``python notebooks/build.py`` (the docs gallery shows
those outputs); it must hold the same cells. Every notebook is executed
again in a fresh Python 3 kernel with ``OPTAX_EXT_SMOKE=1`` (small sizes) on
CPU.
"""

import pathlib

import jupytext
import nbclient
import pytest

NOTEBOOKS = sorted(
  p
  for p in (pathlib.Path(__file__).resolve().parents[2] / 'notebooks').glob(
    '*.py'
  )
  if p.name != 'build.py'
)


def _sources(nb):
  return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_there_is_a_notebook_per_family():
  names = {p.stem for p in NOTEBOOKS}
  assert names >= {
    'getting_started',
    'momentum_and_adaptive',
    'robust_aggregation',
    'gsnr_variance_reduction',
    'multitask_alignment',
    'lookahead_and_pruning',
    'cfg_aligned_loss',
  }, names


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.stem)
def test_ipynb_is_in_sync_with_its_source(path):
  paired = path.with_suffix('.ipynb')
  assert paired.exists(), f'run: python notebooks/build.py {path.stem}'
  assert _sources(jupytext.read(paired)) == _sources(jupytext.read(path)), (
    f'{paired.name} is stale: run python notebooks/build.py {path.stem}'
  )


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.stem)
def test_ipynb_stores_its_outputs(path):
  """Every code cell was executed, and the plots are stored for the docs."""
  nb = jupytext.read(path.with_suffix('.ipynb'))
  code = [c for c in nb.cells if c.cell_type == 'code']
  assert all(c.get('execution_count') for c in code), (
    f'run python notebooks/build.py {path.stem}'
  )
  outputs = [o for c in code for o in c.get('outputs', [])]
  assert not [o for o in outputs if o.get('output_type') == 'error']
  if 'plt.show()' in path.read_text():
    assert any('image/png' in o.get('data', {}) for o in outputs)


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_mode(path, monkeypatch):
  nb = jupytext.read(path)
  text = path.read_text()
  assert 'colab.research.google.com/github' in text, 'Open-in-Colab badge'
  assert 'TPU' in text, 'a note on selecting a TPU runtime'
  monkeypatch.setenv('OPTAX_EXT_SMOKE', '1')
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  monkeypatch.setenv('MPLBACKEND', 'module://matplotlib_inline.backend_inline')
  monkeypatch.delenv('XLA_FLAGS', raising=False)
  client = nbclient.NotebookClient(
    nb,
    timeout=300,
    kernel_name='python3',
    resources={'metadata': {'path': str(path.parent)}},
  )
  client.execute()
  errors = [
    o
    for c in nb.cells
    if c.cell_type == 'code'
    for o in c.get('outputs', [])
    if o.get('output_type') == 'error'
  ]
  assert not errors, errors
  images = [
    o
    for c in nb.cells
    if c.cell_type == 'code'
    for o in c.get('outputs', [])
    if 'image/png' in o.get('data', {})
  ]
  if 'plt.show()' in text:
    assert images, 'the plots did not render'
