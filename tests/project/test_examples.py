"""The examples run as the README says (short settings)."""

import ast
import json
import pathlib
import re

import numpy as np
import pytest

from tests import helpers

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _run_example(name, *args, timeout=300):
  return helpers.run_script(ROOT / 'examples' / name, *args, timeout=timeout)


def test_quickstart_learns_digits():
  stdout = _run_example('quickstart.py', '--epochs', '3')
  accs = [float(a) for a in re.findall(r'test accuracy (\d\.\d+)', stdout)]
  assert len(accs) == 4, stdout  # three epochs and the final line
  assert accs[-1] > 0.85, stdout


def test_quickstart_with_microbatch_population():
  stdout = _run_example(
    'quickstart.py',
    '--epochs',
    '1',
    '--members',
    '8',
    '--aggregator',
    'sum',
    '--learning-rate',
    '3e-4',
  )
  assert 'population K=8 per batch of 64' in stdout


def test_quickstart_robust_rule_withstands_what_breaks_the_mean():
  """The first run's point: a quarter of the members send -10 times their
  gradient; the mean collapses, the geometric median learns."""

  def final(*args):
    stdout = _run_example('quickstart.py', '--epochs', '2', *args)
    return float(re.findall(r'final test accuracy (\d\.\d+)', stdout)[0])

  attacked = ('--attack', 'sign_flip')
  robust = final('--aggregator', 'geometric_median', *attacked)
  mean = final('--aggregator', 'mean', *attacked)
  clean = final('--aggregator', 'mean')
  assert mean < 0.3, mean  # ten classes: chance is 0.1
  assert robust > clean - 0.1, (robust, clean)


def test_large_batch_gsnr_smoke(tmp_path):
  plot = tmp_path / 'gsnr.png'
  stdout = _run_example(
    'large_batch_gsnr.py', '--smoke', '--lr-sweep', '--plot', str(plot)
  )
  assert 'vr_adam' in stdout and 'lr x8' in stdout
  rows = re.findall(r'^\s+(64|256) ', stdout, flags=re.M)
  assert rows == ['64', '256'], stdout
  assert plot.stat().st_size > 10_000


def test_benchmarks_quick(tmp_path):
  helpers.run_script(
    ROOT / 'benchmarks' / 'run.py', '--quick', '--out', str(tmp_path)
  )
  table = (tmp_path / 'quick.md').read_text()
  assert '| aggregate_by_gsnr | 8 |' in table
  assert '| upgrad | 8 |' in table and '| mgda | 8 |' in table
  assert (tmp_path / 'quick.json').exists()
  assert (tmp_path / 'quick.png').stat().st_size > 10_000


def test_dpf_refresh_benchmark_quick(tmp_path):
  helpers.run_script(
    ROOT / 'benchmarks' / 'dpf_refresh.py', '--quick', '--out', str(tmp_path)
  )
  table = (tmp_path / 'dpf_refresh.md').read_text()
  assert '| sgd(momentum) |' in table, table
  assert '| dpf, refresh_in_update=False + dpf_refresh |' in table, table
  rows = json.loads((tmp_path / 'dpf_refresh.json').read_text())['rows']
  assert len(rows) == 5 and all(r['mean_ms'] > 0 for r in rows), rows


def test_momentum_mixtures_smoke(tmp_path):
  plot = tmp_path / 'mm.png'
  stdout = _run_example('momentum_mixtures.py', '--smoke', '--plot', str(plot))
  for name in ('qhm', 'qhadam', 'aggmo', 'ademamix', 'mars', 'grams', 'igt'):
    assert name in stdout, stdout
  assert plot.stat().st_size > 10_000


def test_quickstart_with_a_momentum_mixture():
  stdout = _run_example('quickstart.py', '--epochs', '2', '--optimizer', 'qhm')
  accs = [float(a) for a in re.findall(r'test accuracy (\d\.\d+)', stdout)]
  assert accs[-1] > 0.8, stdout


def test_byzantine_robust_training_smoke(tmp_path):
  plot = tmp_path / 'byz.png'
  stdout = _run_example(
    'byzantine_robust_training.py', '--smoke', '--plot', str(plot)
  )
  lines = {line.split('  ')[0].strip(): line for line in stdout.splitlines()}
  assert 'coordinate median' in lines and 'krum' in lines, stdout
  assert plot.stat().st_size > 10_000


def test_multilayer_lookahead_smoke(tmp_path):
  plot = tmp_path / 'mla.png'
  stdout = _run_example(
    'multilayer_lookahead.py', '--smoke', '--plot', str(plot)
  )
  for name in ('sgd', 'lookahead (k=5', 'multilayer'):
    assert name in stdout, stdout
  accs = [float(a) for a in re.findall(r' (0\.\d+) \+- ', stdout)]
  assert len(accs) == 6 and min(accs) > 0.5, stdout
  assert plot.stat().st_size > 10_000


def test_gradalign_federated_smoke(tmp_path):
  plot = tmp_path / 'ga.png'
  stdout = _run_example(
    'gradalign_federated.py', '--smoke', '--plot', str(plot)
  )
  rows = re.findall(
    r'^\s+(sgd|gradalign|fedavg|fedga)\s+(0\.\d+)', stdout, re.M
  )
  assert [r[0] for r in rows] == ['sgd', 'gradalign', 'fedavg', 'fedga']
  assert plot.stat().st_size > 10_000


def test_dpf_pruning_smoke(tmp_path):
  plot = tmp_path / 'dpf.png'
  stdout = _run_example('dpf_pruning.py', '--smoke', '--plot', str(plot))
  realised = [
    float(r) for r in re.findall(r'^\s+0\.\d\d .* (0\.\d{4})$', stdout, re.M)
  ]
  # The 2-epoch smoke run refreshes the mask last just before the cubic
  # ramp ends: within 1e-3 of each target.
  np.testing.assert_allclose(realised, [0.5, 0.8, 0.9, 0.97], atol=1e-3)
  assert plot.stat().st_size > 10_000


def test_cfg_aligned_diffusion_smoke(tmp_path):
  plot = tmp_path / 'cfg.png'
  stdout = _run_example(
    'cfg_aligned_diffusion.py', '--smoke', '--plot', str(plot)
  )
  rows = re.findall(
    r'^\s+(standard|aligned)\s+(cfg|apg)\s+(\d\.\d)\s', stdout, re.M
  )
  assert len(rows) == 6, stdout
  assert ('standard', 'apg', '2.0') in rows, stdout
  assert plot.stat().st_size > 10_000


def test_multitask_digits_smoke(tmp_path):
  plot = tmp_path / 'mt.png'
  stdout = _run_example('multitask_digits.py', '--smoke', '--plot', str(plot))
  names = 'mean|pcgrad|upgrad|mgda|cagrad|geo-mean|uw|dwa|gradnorm'
  rows = re.findall(rf'^\s+({names})\s+0\.', stdout, re.M)
  assert rows == names.split('|'), stdout
  assert plot.stat().st_size > 10_000


@pytest.mark.parametrize('aggregator', ['coordinate_median', 'upgrad'])
def test_data_parallel_smoke(aggregator):
  # The script sets its own simulated-device flag (8 CPU devices); the
  # coordinate-sharded median and Gramian match one device's numbers.
  stdout = _run_example(
    'data_parallel.py', '--smoke', '--check', '--aggregator', aggregator
  )
  assert '8 cpu device(s)' in stdout, stdout
  diff = float(re.findall(r'max \|diff\| (\S+)', stdout)[0])
  assert diff < 1e-5, stdout
  acc = float(re.findall(r'final test accuracy (\d\.\d+)', stdout)[0])
  assert acc > 0.3, stdout


@pytest.mark.parametrize('optimizer', ['ranger21', 'xgrad_adam'])
def test_train_nnx_checkpoint_and_resume(tmp_path, optimizer):
  stdout = _run_example(
    'train_nnx.py',
    '--steps',
    '4',
    '--optimizer',
    optimizer,
    '--checkpoint-dir',
    str(tmp_path),
  )
  assert 'identical to the uninterrupted run: True' in stdout, stdout
  assert (tmp_path / 'step_2').is_dir() and (tmp_path / 'step_4').is_dir()


def test_train_linen_steps_2(tmp_path):
  stdout = _run_example(
    'train_linen.py', '--steps', '2', '--checkpoint-dir', str(tmp_path)
  )
  assert 'restored identical: True' in stdout, stdout
  assert (tmp_path / 'step_2').is_dir()


def test_train_plain_jax_steps_2(tmp_path):
  stdout = _run_example(
    'train_plain_jax.py', '--steps', '2', '--checkpoint-dir', str(tmp_path)
  )
  assert 'restored identical: True' in stdout, stdout
  assert 'median of 8 micro-batch gradients' in stdout


@pytest.mark.parametrize('aggregator', ['clip_mean', 'krum'])
def test_lean_population_smoke(aggregator):
  stdout = _run_example(
    'lean_population.py', '--smoke', '--aggregator', aggregator
  )
  assert 'vmapped  step temporaries' in stdout, stdout
  assert 'does NOT fit' in stdout.split('vmapped')[1].splitlines()[0], stdout
  assert ': fits' in stdout.split('lean     step')[1].splitlines()[0], stdout
  acc = float(re.findall(r'final test accuracy (\d\.\d+)', stdout)[0])
  assert acc > 0.2, stdout


@pytest.mark.parametrize('rule', ['dp_sgd', 'upgrad'])
def test_per_example_transformer_smoke(rule):
  stdout = _run_example('per_example_transformer.py', '--smoke', '--rule', rule)
  assert re.search(r'leaves: .*\d+ ghost', stdout), stdout
  before = float(re.search(r'before training: validation (\d\.\d+)', stdout)[1])
  after = float(re.search(r'after 4 steps: validation (\d\.\d+)', stdout)[1])
  assert after < before, stdout


def test_every_example_flag_says_what_it_does():
  """``--help`` is an example's manual: the module docstring and a help
  text on every flag."""
  missing = []
  for path in sorted((ROOT / 'examples').glob('*.py')):
    for node in ast.walk(ast.parse(path.read_text())):
      call = getattr(node, 'func', None) if isinstance(node, ast.Call) else None
      name = getattr(call, 'attr', '')
      if name == 'add_argument' and not any(
        k.arg == 'help' for k in node.keywords
      ):
        missing.append(f'{path.name}: {ast.unparse(node.args[0])}')
      if name == 'ArgumentParser':
        assert 'splitlines()[0]' not in ast.unparse(node), path.name
  assert not missing, missing
