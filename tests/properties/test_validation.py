"""Every numeric hyper-parameter of every public factory is validated.

Registry-driven: for each factory in ``tests/registry.py`` and each of its
parameters whose default is a real number (not a bool), a NaN and a string
must raise at construction a ``ValueError``/``TypeError`` whose message
names the parameter (``where: `name` must be ...``). Schedules and traced
values are skipped by the validators (``inject_hyperparams`` keeps working,
tested in the battery).

The range each parameter states in that message is then enforced: values
just outside it (negative, zero where the bound is open, above the top)
raise a ``ValueError`` stating the same range and the value received, the
closed ends are accepted, integer parameters reject floats, sequence
hyper-parameters reject NaN/str items and emptiness, and sequences that must
match in length report every length. The stated ranges are pinned by the
reviewed table ``validation_ranges.txt``.
"""

import inspect
import math
import numbers
import pathlib
import re

import jax.numpy as jnp
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
  # The public function the user called, not a delegate (qhadam, not
  # scale_by_qhadam): validation.named_errors on aliases.
  assert str(info.value).startswith(f'{entry.name}:'), str(info.value)


def test_the_battery_covers_many_hyper_parameters():
  # A floor, so that a refactor that stops finding parameters fails here.
  assert len(CASES) > 200, len(CASES)


_BOUND = re.compile(
  r'`(?P<name>\w+)` must be (?P<kind>a (?:real )?number|an integer) '
  r'(?:(?P<op>>=|>|<=|<) (?P<value>[^\s,]+)'
  r'|in (?P<left>[\[(])(?P<lower>[^\s,]+), '
  r'(?P<upper>[^\s\])]+)(?P<right>[\])]))'
)


def _declared_range(entry, name):
  """The range the factory states for ``name`` (from its NaN message)."""
  try:
    entry.make(**{name: math.nan})
  except (ValueError, TypeError) as err:
    match = _BOUND.search(str(err))
    if match and match['name'] == name:
      return match
  return None


def _outside(match):
  """Values just outside the stated range (a closed bound's neighbour)."""
  step = 1 if match['kind'] == 'an integer' else 0.5
  cast = int if match['kind'] == 'an integer' else float
  values = []
  if match['op'] in ('>=', '>'):
    lower = cast(float(match['value']))
    values += [lower - step] + ([lower] if match['op'] == '>' else [])
  elif match['op'] in ('<=', '<'):
    upper = cast(float(match['value']))
    values += [upper + step] + ([upper] if match['op'] == '<' else [])
  else:
    lower, upper = float(match['lower']), float(match['upper'])
    values += [lower - step, upper + step]
    values += [lower] if match['left'] == '(' else []
    values += [upper] if match['right'] == ')' else []
  return values


def _inside_boundaries(match):
  """The closed ends of the stated range (values that must be accepted)."""
  cast = int if match['kind'] == 'an integer' else float
  if match['op'] in ('>=', '<='):
    return [cast(float(match['value']))]
  if match['op'] is None:
    return [
      cast(float(v))
      for v, bracket in ((match['lower'], match['left']),
                         (match['upper'], match['right']))
      if bracket in '[]'
    ]  # fmt: skip
  return []


RANGED = [
  pytest.param(e, name, match, id=f'{e.name}.{name}')
  for e in registry.REGISTRY
  for name in _numeric_params(e)
  if (match := _declared_range(e, name)) is not None
]


@pytest.mark.parametrize('entry,name,match', RANGED)
def test_out_of_range_values_are_rejected(entry, name, match):
  """Negative, zero where invalid, above the top: ValueError naming all."""
  for value in _outside(match):
    with pytest.raises(ValueError) as info:
      entry.make(**{name: value})
    message = str(info.value)
    assert f'`{name}`' in message, message
    assert f'got {value!r}' in message, message
    if match['op']:
      stated = f'{match["op"]} {match["value"]}'
    else:
      stated = f'in {match["left"]}{match["lower"]}, {match["upper"]}'
    assert stated in message, message  # the same range as the NaN message


@pytest.mark.parametrize(
  'entry,name,match', [p for p in RANGED if p.values[2]['kind'] != 'an integer']
)
def test_out_of_range_schedules_are_rejected(entry, name, match):
  """A schedule whose value leaves the range is rejected at construction
  (its values are probed), or schedules are not accepted at all.

  Regression: ``qhadam(0.1, b1=lambda c: 1.5)`` ran.
  """
  for value in _outside(match):
    if (entry.name, name, value) in SCHEDULE_MAY_REACH:
      continue

    # In range for the first steps, out of it later (a warm-up gone wrong).
    def schedule(count, value=value):
      return jnp.where(count < 50, _inside(match), value)

    with pytest.raises((ValueError, TypeError)) as info:
      entry.make(**{name: schedule})
    assert f'`{name}` must be' in str(info.value), str(info.value)


# A schedule may take this value after step 0, with the reason.
SCHEDULE_MAY_REACH = {
  # Only lr(0) > 0 is needed (it sets the initial noise scale); a decay to
  # 0 afterwards is a normal schedule.
  ('gravity', 'learning_rate', 0.0),
}


def _inside(match):
  """A value strictly inside the stated range."""
  if match['op'] in ('>=', '>'):
    return float(match['value']) + 0.25
  if match['op'] in ('<=', '<'):
    return float(match['value']) - 0.25
  return 0.5 * (float(match['lower']) + float(match['upper']))


@pytest.mark.parametrize('entry,name,match', RANGED)
def test_closed_ends_of_the_range_are_accepted(entry, name, match):
  """A value the message allows is not rejected for this parameter."""
  for value in _inside_boundaries(match):
    try:
      entry.make(**{name: value})
    except (ValueError, TypeError) as err:  # another parameter may object
      assert f'`{name}` must be' not in str(err), str(err)


INTEGERS = [p for p in RANGED if p.values[2]['kind'] == 'an integer']


@pytest.mark.parametrize('entry,name,match', INTEGERS)
def test_integer_parameters_reject_floats(entry, name, match):
  with pytest.raises(TypeError, match=f'`{name}` must be an integer'):
    entry.make(**{name: 1.5})


def _sequence_params(entry):
  sig = inspect.signature(entry.factory)
  for name, p in sig.parameters.items():
    value = entry.kwargs.get(name, p.default)
    if isinstance(value, (tuple, list)) and all(
      isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value
    ):
      yield name, tuple(value)


SEQUENCES = [
  pytest.param(e, name, value, id=f'{e.name}.{name}')
  for e in registry.REGISTRY
  for name, value in _sequence_params(e)
]


@pytest.mark.parametrize('entry,name,value', SEQUENCES)
def test_sequence_items_are_validated(entry, name, value):
  """NaN or a string inside a sequence, or an empty one, names it."""
  for bad in ((math.nan,) + value[1:], ('x',) + value[1:], ()):
    with pytest.raises((ValueError, TypeError)) as info:
      entry.make(**{name: bad})
    assert f'`{name}' in str(info.value), str(info.value)


MISMATCHED = [
  pytest.param(e, name, value, others, id=f'{e.name}.{name}')
  for e in registry.REGISTRY
  if len(seqs := dict(_sequence_params(e))) > 1
  for name, value in seqs.items()
  for others in [sorted(set(seqs) - {name})]
]


@pytest.mark.parametrize('entry,name,value,others', MISMATCHED)
def test_mismatched_lengths_name_every_sequence(entry, name, value, others):
  with pytest.raises(ValueError, match='same length') as info:
    entry.make(**{name: value + value[-1:]})
  for n in [name, *others]:
    assert f'`{n}` has' in str(info.value), str(info.value)


def test_the_range_battery_is_wide():
  # Floors, so that a refactor that stops finding ranges fails here.
  assert len(RANGED) > 230, len(RANGED)
  assert len(SEQUENCES) >= 7 and len(MISMATCHED) >= 6, (SEQUENCES, MISMATCHED)


_RANGES_FILE = pathlib.Path(__file__).with_name('validation_ranges.txt')


def _stated_ranges():
  lines = []
  for param in RANGED:
    entry, name, match = param.values
    stated = match.group(0).split(' must be ')[1].rstrip(',')
    lines.append(f'{entry.name}.{name}: {stated}')
  return '\n'.join(sorted(lines)) + '\n'


def test_stated_ranges_match_the_reviewed_table():
  """Ranges are derived from the messages above; this pins them.

  A validator whose range changes (say a decay that starts accepting 1.0)
  would still pass the derived tests, so the stated ranges are compared
  with the reviewed table ``validation_ranges.txt``. A difference (a new
  method's parameters, or a changed range) rewrites the table and fails:
  review ``git diff`` and commit it.
  """
  fresh = _stated_ranges()
  if fresh != _RANGES_FILE.read_text():
    _RANGES_FILE.write_text(fresh)
    pytest.fail(
      'tests/properties/validation_ranges.txt was stale and has been '
      'regenerated from the validators: review `git diff` (a range that '
      'changed by accident is a bug) and commit it.'
    )
