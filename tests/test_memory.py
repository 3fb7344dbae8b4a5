"""A memory-lean train step holds O(D) temporaries where vmapping holds K D.

``benchmarks/memory.py`` compiles the train step of an MLP for the issue's
aggregators (mean, GSNR, Krum, geometric median, centered clipping,
UPGrad) with the population vmapped and memory-lean, and reads XLA's
temporaries from ``memory_analysis()`` (hardware-independent). At K = 8 the
lean step must stay within 4 D plus one microbatch's activations (the
target), the vmapped one above K / 2 D for the rules that read the stack
more than once (the contrast the lean path removes), with the same update.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / 'bench'
                       'marks'))  # fmt: skip
import memory  # noqa: E402

H1, H2, K, PER = 256, 192, 8, 8


def test_lean_step_is_o_of_d_and_gives_the_same_update():
  rows = memory.measure(H1, H2, K, per_microbatch=PER, repeats=1)
  assert {r['method'] for r in rows} == set(memory.methods())
  d = rows[0]['d_bytes']
  # One microbatch's activations (inputs, two hidden layers, logits), with
  # room for the residuals autodiff keeps: 4x.
  activations = 4 * 4 * PER * (784 + H1 + H2 + 10)
  for r in rows:
    assert r['rel_diff'] <= r['rtol'], r
    if r['form'] == 'lean':
      assert r['temp_bytes'] <= 4 * d + activations, r
    elif r['method'] not in ('mean', 'gsnr', 'upgrad'):
      assert r['temp_bytes'] >= K / 2 * d, r
