"""What the benchmarks time: the tables and the memory-traffic yardstick.

The rows come from each method's declarations beside its code
(``@metadata.describe(benchmarks=(metadata.Benchmark(...),))``), after
optax's own baselines; ``run.py`` and ``train_step.py`` both read them from
here.
"""

import functools
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from optax_ext._src import metadata


def median_time(fn, args, repeats, warmup=2):
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def bandwidths(n: int, repeats: int) -> dict[str, float]:
  """Stream bandwidths (bytes/s): in place (the bound), fresh output, read."""
  b = jnp.ones(n, jnp.float32)
  c = jnp.full(n, 2.0, jnp.float32)
  in_place = jax.jit(lambda a, c: a + 1e-3 * c, donate_argnums=0)
  carry = [jnp.ones(n, jnp.float32)]

  def run(c):
    carry[0] = in_place(carry[0], c)
    return carry[0]

  t_in_place = median_time(run, (c,), repeats)
  t_fresh = median_time(jax.jit(lambda b, c: b + c), (b, c), repeats)
  t_read = median_time(jax.jit(jnp.sum), (b,), repeats)
  return {
    'stream': 3 * n * 4 / t_in_place,
    'stream_fresh_output': 3 * n * 4 / t_fresh,
    'read': n * 4 / t_read,
  }


def _rows(table):
  """``label -> (factory, benchmark)`` for one table, as each method
  declares its rows beside its code (``metadata.Benchmark``)."""
  rows = {}
  for method in metadata.methods().values():
    for b in method.benchmarks:
      if b.table != table:
        continue
      factory = functools.partial(method.function, *b.args, **b.kwargs)
      if b.then is not None:
        factory = functools.partial(
          lambda f, then: optax.chain(f(), then), factory, b.then
        )
      rows[b.label] = (factory, b)
  return rows


# name -> (factory, param-sized float32 state buffers read, written per step)
AGGREGATORS = {
  name: (factory, *b.state_traffic)
  for name, (factory, b) in _rows('aggregators').items()
}


# Param-shaped transforms: name -> (optimiser factory, pytorch_optimizer
# peer as (class name, kwargs) or None). Full optimisers (learning rate and
# weight decay included), as they run in a training step.
TRANSFORMS = {
  'optax.sgd(momentum)': (
    functools.partial(optax.sgd, 1e-3, momentum=0.9),
    None,
  ),
  'optax.adamw': (functools.partial(optax.adamw, 1e-3), None),
  **{name: (f, b.peer) for name, (f, b) in _rows('transforms').items()},
  'optax.contrib.ademamix': (
    functools.partial(optax.contrib.ademamix, 1e-3),
    None,
  ),
  'optax.chain(clip_by_global_norm, adamw)': (
    functools.partial(
      optax.chain, optax.clip_by_global_norm(1.0), optax.adamw(1e-3)
    ),
    None,
  ),
}

# Transforms with a reduction over the gradient (or params) before their
# elementwise step: their bound is the two-pass one (one more read of the
# gradient), the target for them is 1.5x that.
TWO_PASS = {
  'optax.chain(clip_by_global_norm, adamw)',
  *(name for name, (_, b) in _rows('transforms').items() if b.two_pass),
}


# name -> (our factory, TorchJD class name and kwargs)
MULTITASK = {
  name: (factory, b.peer) for name, (factory, b) in _rows('multitask').items()
}


# The population train step (``--only train_step``): K = 8 members through
# each aggregator, then AdamW.
TRAIN_STEP_AGGREGATORS = {
  **{name: factory for name, (factory, _) in _rows('train_step').items()},
  **{name: factory for name, (factory, _) in MULTITASK.items()},
}
