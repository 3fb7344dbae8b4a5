"""Two processes on localhost (``jax.distributed``, CPU collectives, 4
devices each) train exactly as one process with 8 devices.

The worker (``tests/population/multiprocess_worker.py``) runs a
coordinate-median aggregator and GradAlign under ``jax.shard_map`` over the 8
global devices. The processes have a time-out and are killed on failure; a
failure prints both processes' output.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np

from tests.population import multiprocess_worker

WORKER = pathlib.Path(multiprocess_worker.__file__)
TIMEOUT_S = 180


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path):
  out = tmp_path / 'result.json'
  port = _free_port()
  env = {
    **os.environ,
    'JAX_PLATFORMS': 'cpu',
    'PYTHONPATH': str(WORKER.parents[2]),
  }
  env.pop('XLA_FLAGS', None)
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        str(WORKER),
        '--process-id',
        str(i),
        '--num-processes',
        '2',
        '--port',
        str(port),
        '--out',
        str(out),
      ],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  outputs = ['', '']
  try:
    for i, proc in enumerate(procs):
      outputs[i], _ = proc.communicate(timeout=TIMEOUT_S)
  except subprocess.TimeoutExpired:
    for proc in procs:
      proc.kill()
    for i, proc in enumerate(procs):
      outputs[i] = (outputs[i] or '') + (proc.communicate()[0] or '')
    raise AssertionError(
      f'time-out after {TIMEOUT_S} s.\n'
      + '\n'.join(f'--- process {i} ---\n{o}' for i, o in enumerate(outputs))
    ) from None
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  report = '\n'.join(
    f'--- process {i} (exit {p.returncode}) ---\n{o}'
    for i, (p, o) in enumerate(zip(procs, outputs, strict=True))
  )
  assert all(p.returncode == 0 for p in procs), report
  got = json.loads(out.read_text())
  want = multiprocess_worker.run()  # this process: 8 simulated devices
  for key in ('median', 'krum', 'gradalign'):
    np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-7)
  # The robust rules ignored the corrupted worker; GradAlign learnt.
  for key in ('median', 'krum'):
    err = np.linalg.norm(np.array(got[key]) - multiprocess_worker.TRUE_W)
    assert err < 0.5 * np.linalg.norm(multiprocess_worker.TRUE_W), (key, err)
  assert not np.allclose(got['gradalign'], 0.0)
