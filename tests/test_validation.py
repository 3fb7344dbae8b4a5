"""Every numeric hyper-parameter of every public factory is validated.

Registry-driven: for each factory in ``tests/registry.py`` and each of its
parameters whose default is a real number (not a bool), a NaN and a string
must raise at construction a ``ValueError``/``TypeError`` whose message
names the parameter (``where: `name` must be ...``). Schedules and traced
values are skipped by the validators (``inject_hyperparams`` keeps working,
tested in the battery).
"""

import inspect
import math
import numbers

import pytest

from tests import registry


def _numeric_params(entry):
  sig = inspect.signature(entry.factory)
  for name, p in sig.parameters.items():
    default = p.default
    if name in entry.kwargs:
      default = entry.kwargs[name]
    if isinstance(default, bool) or not isinstance(default, numbers.Real):
      continue
    yield name


CASES = [
  pytest.param(e, name, id=f'{e.name}.{name}')
  for e in registry.REGISTRY
  for name in _numeric_params(e)
]


@pytest.mark.parametrize('entry,name', CASES)
@pytest.mark.parametrize('bad', [math.nan, 'x'], ids=['nan', 'str'])
def test_bad_value_is_rejected_naming_the_parameter(entry, name, bad):
  with pytest.raises((ValueError, TypeError)) as info:
    entry.make(**{name: bad})
  assert f'`{name}`' in str(info.value), str(info.value)


def test_the_battery_covers_many_hyper_parameters():
  # A floor, so that a refactor that stops finding parameters fails here.
  assert len(CASES) > 200, len(CASES)
