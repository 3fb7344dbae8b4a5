"""A memory-lean train step holds O(D) temporaries where vmapping holds K D.

``benchmarks/memory.py`` compiles the train step of an MLP for the issue's
aggregators (mean, GSNR, Krum, geometric median, centered clipping,
UPGrad) with the population vmapped and memory-lean, and reads XLA's
temporaries from ``memory_analysis()`` (hardware-independent). At K = 8 the
lean step must stay within 4 D plus one microbatch's activations (the
target), the vmapped one above K / 2 D for the rules that read the stack
more than once (the contrast the lean path removes), with the same update.
"""

from tests import helpers

memory = helpers.benchmark_module('memory')

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


def test_peak_resident_memory_confirms_it():
  # XLA:CPU's temp_size leaves out the buffers of a while loop's body (the
  # lean scans), so the process's own peak RSS is measured too (a fresh
  # process per form): the lean Krum step grows it by a few D (its outputs,
  # new params and momentum, are 2 D), the vmapped one by about K D.
  h, k = 1024, 8
  d = 4 * (784 * h + h + h * h + h + h * 10 + 10)
  rows = [
    {'method': 'krum (f=1)', 'form': form} for form in ('lean', 'vmapped')
  ]
  memory.add_rss(rows, h, h, k)
  lean, vmapped = (r['rss_growth_bytes'] / d for r in rows)
  # Measured 3.2 D and 14 D (three runs); the bounds leave room for the
  # allocator, not for a population (K = 8 members would be 8 D more).
  assert lean <= 6.0, rows
  assert vmapped >= max(k / 2, 2 * lean), rows
