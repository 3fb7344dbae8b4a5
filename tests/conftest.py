"""Test configuration: 8 simulated CPU devices and strict dtype promotion.

Set up here, before any test touches a JAX backend, so that every test and
doctest in the run (including those under ``optax_ext/``) sees the same
environment. Warnings are errors (``filterwarnings = error`` in
``pyproject.toml``).
"""

import atexit
import contextlib
import ctypes
import gc
import os
import shutil
import tempfile

import hypothesis
import jax
from jax.sharding import AxisType
import pytest

NUM_DEVICES = 8

jax.config.update('jax_num_cpu_devices', NUM_DEVICES)
jax.config.update('jax_platforms', 'cpu')
jax.config.update('jax_numpy_dtype_promotion', 'strict')

# A persistent compilation cache private to this process (each xdist worker
# has its own; scripts the tests start do not inherit it), deleted at exit.
# optax, optax_ext and the tests jit fresh closures and run eager ops whose
# programs repeat; the in-memory cache, keyed by the Python callable, compiles
# them again, the persistent cache, keyed by the program, does not (the
# registry battery's MultiSteps test: 64 s without, 38 s with, on one core).
# A hit loads the executable XLA compiled for that program, so the tests run
# the same code either way. Not shared between processes: without its size
# limit, jax writes entries in place, unlocked.
_XLA_CACHE = tempfile.mkdtemp(prefix='optax_ext_tests_xla_cache_')
atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
jax.config.update('jax_compilation_cache_dir', _XLA_CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)

# CI runs the property tests on a fixed sequence of examples (a failing
# example then reproduces on every run); locally they explore new ones.
hypothesis.settings.register_profile('ci', derandomize=True)
if os.environ.get('CI'):
  hypothesis.settings.load_profile('ci')


def _release_memory():
  """Drops JAX's in-memory caches and returns freed memory to the system.

  Each test process compiles thousands of distinct programs, and JAX keeps
  every executable in its in-memory caches, so a worker's memory grew with
  the suite. Clearing the caches frees them, but glibc keeps the freed pages
  until ``malloc_trim``; neither step alone returns the memory (figures in
  docs/benchmarks.md, "Test-suite memory"). Later modules reload what they
  need from the persistent compilation cache.
  """
  jax.clear_caches()
  gc.collect()
  with contextlib.suppress(OSError, AttributeError):  # not glibc
    ctypes.CDLL('libc.so.6').malloc_trim(0)


# Also every this many tests inside one module (the registry battery runs
# about a thousand in one module).
_RELEASE_EVERY = 250
_tests_run = [0]


@pytest.fixture(autouse=True, scope='module')
def _bounded_memory():
  yield
  _release_memory()


@pytest.fixture(autouse=True)
def _bounded_memory_in_long_modules():
  yield
  _tests_run[0] += 1
  if _tests_run[0] % _RELEASE_EVERY == 0:
    _release_memory()


@pytest.fixture(scope='session')
def mesh():
  """A 1-D mesh ``('data',)`` over the 8 simulated CPU devices."""
  assert jax.device_count() == NUM_DEVICES, jax.devices()
  return jax.make_mesh((NUM_DEVICES,), ('data',), axis_types=(AxisType.Auto,))


@pytest.fixture(autouse=True)
def _promotion_mode(request):
  """Standard promotion where optax's own code needs it.

  optax's bias-corrected optimisers (``optax.adam``, ``scale_by_adam``,
  ``MultiSteps``) compute ``b1 ** count`` with an int32 ``count`` and a Python
  float, which strict promotion rejects. Standard promotion is used for:
  tests marked ``standard_promotion``; battery tests of registry entries with
  ``strict_promotion=False`` (those that chain such optax pieces); and
  doctests, which are user-facing examples run as users run them. Everything
  else runs under strict promotion.
  """
  callspec = getattr(request.node, 'callspec', None)
  entry = callspec.params.get('entry') if callspec else None
  standard = (
    request.node.get_closest_marker('standard_promotion') is not None
    or (entry is not None and not getattr(entry, 'strict_promotion', True))
    or isinstance(request.node, pytest.DoctestItem)
  )
  if standard:
    with jax.numpy_dtype_promotion('standard'):
      yield
  else:
    yield
