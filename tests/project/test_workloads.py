"""The workload suite's smoke runs (``benchmarks/workloads/run.py --smoke``):
every method of a workload runs, values are finite, results are written in
the documented layout; plus the protocol's choices on a fake workload."""

import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import optax
import pytest

from tests import helpers

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKLOADS = ROOT / 'benchmarks' / 'workloads'


def _run(*args, timeout=300):
  return helpers.run_script(WORKLOADS / 'run.py', *args, timeout=timeout)


def test_lm_smoke_runs_every_method():
  stdout = _run('--workload', 'lm', '--smoke')
  for method in ('adamw', 'ademamix', 'lookahead(adamw)'):
    assert f'{method} ' in stdout, stdout
  assert 'lm done' in stdout


def test_digits_smoke_writes_results(tmp_path):
  _run('--workload', 'digits_cnn', '--smoke', '--out', str(tmp_path))
  result = json.loads((tmp_path / 'digits_cnn.json').read_text())
  assert result['meta']['steps'] == 20
  assert {r['method'] for r in result['runs']} >= {'adamw', 'qhadam'}
  assert all(r['finite'] for r in result['runs'])
  assert (tmp_path / 'digits_cnn.md').read_text().startswith('# Workload')
  assert (tmp_path / 'digits_cnn.png').stat().st_size > 5_000


@pytest.fixture
def protocol():
  sys.path.insert(0, str(WORKLOADS))
  try:
    import protocol as module  # noqa: PLC0415

    yield module
  finally:
    sys.path.remove(str(WORKLOADS))


class _Quadratic:
  """Loss (x - 3)^2; 'validation' is the distance to 3 (lower is better)."""

  name = 'quadratic'
  metric = 'distance'
  lower_is_better = True
  info = {}

  def init(self, seed):
    return jnp.asarray(float(seed))

  def loss(self, params, batch):
    del batch
    return (params - 3.0) ** 2

  def batches(self, seed):
    while True:
      yield jnp.zeros([])

  def evaluate(self, params):
    return float(abs(params - 3.0))


def test_protocol_picks_the_best_rate_and_reports_seeds(protocol):
  sgd = protocol.Method('sgd', lambda s, n: optax.sgd(s), (1e-4, 0.1, 0.3))
  slow = protocol.Method('slow', lambda s, n: optax.sgd(s), (1e-4,))
  with jax.numpy_dtype_promotion('standard'):  # optax's schedules
    result = protocol.compare(
      _Quadratic(),
      [sgd, slow],
      seeds=2,
      steps=40,
      eval_every=10,
      log=lambda *_: None,
    )
  assert result['chosen_lr'] == {'sgd': 0.3, 'slow': 1e-4}
  rows = {r['method']: r for r in result['summary']}
  assert rows['sgd']['seeds'] == 2 and rows['sgd']['reached'] == '2/2'
  # The target is the baseline's worst final value, which 'slow' never
  # reaches.
  assert rows['slow']['reached'] == '0/2'
  assert rows['slow']['steps_to_target'] is None
  assert len(result['runs']) == (3 + 1) + (1 + 1)  # grid + other seeds
