"""Test configuration: 8 simulated CPU devices and strict dtype promotion.

Set up here, before any test touches a JAX backend, so that every test and
doctest in the run (including those under ``optax_ext/``) sees the same
environment. Warnings are errors (``filterwarnings = error`` in
``pyproject.toml``).
"""

import jax
from jax.sharding import AxisType
import pytest

NUM_DEVICES = 8

jax.config.update('jax_num_cpu_devices', NUM_DEVICES)
jax.config.update('jax_platforms', 'cpu')
jax.config.update('jax_numpy_dtype_promotion', 'strict')


@pytest.fixture(scope='session')
def mesh():
  """A 1-D mesh ``('data',)`` over the 8 simulated CPU devices."""
  assert jax.device_count() == NUM_DEVICES, jax.devices()
  return jax.make_mesh((NUM_DEVICES,), ('data',), axis_types=(AxisType.Auto,))


@pytest.fixture(autouse=True)
def _promotion_mode(request):
  """Standard promotion for tests marked ``standard_promotion``.

  optax's bias-corrected optimisers (``optax.adam`` and friends) compute
  ``b1 ** count`` with an int32 ``count`` and a Python float, which strict
  promotion rejects. Tests that chain them opt in with the marker; everything
  of ours runs under strict promotion.
  """
  if request.node.get_closest_marker('standard_promotion'):
    with jax.numpy_dtype_promotion('standard'):
      yield
  else:
    yield
