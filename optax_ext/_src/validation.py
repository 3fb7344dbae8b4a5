# Copyright 2026 The optax_ext Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
# ==============================================================================
"""Construction-time validation of hyper-parameters.

Every public factory validates its concrete hyper-parameters when it is
called, so that a wrong value fails loudly at the call site rather than
producing a silently wrong optimiser. Traced values (inside ``jax.jit`` or
``optax.inject_hyperparams``) are skipped: they are only known at run time,
and validating them would break ``inject_hyperparams``. A schedule (a
callable of the step count) is probed at construction on a spread of steps
(:data:`SCHEDULE_PROBE_STEPS`) and each concrete value range-checked: inside
the jitted step a value cannot raise, so a schedule leaving the range after
the last probed step is not caught.

All messages share one style::

  <factory>: `<name>` must be <range>, got <value!r>.
"""

from collections.abc import Callable, Sequence
import functools
import math
import numbers
from typing import Any

import jax
import numpy as np


def named_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
  """Errors raised while ``fn`` builds its transform name ``fn`` itself.

  A public alias that delegates to another public factory (``qhadam`` to
  ``scale_by_qhadam``) would otherwise report the delegate's name; the
  error's ``where:`` prefix is replaced by the alias's name (the delegate's
  error is kept as the cause).
  """
  where = fn.__name__

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except (ValueError, TypeError) as e:
      head, sep, rest = str(e).partition(': ')
      if sep and head != where and head.isidentifier():
        raise type(e)(f'{where}: {rest}') from e
      raise

  return wrapped


def _as_python_scalar(value: Any) -> Any:
  """Converts a concrete 0-d array to a Python scalar, else returns it."""
  if isinstance(value, (np.ndarray, np.generic, jax.Array)):
    if np.ndim(value) != 0:
      return value
    return np.asarray(value).item()
  return value


def _fail(
  where: str, name: str, expected: str, value: Any, exc=ValueError
) -> None:
  raise exc(f'{where}: `{name}` must be {expected}, got {value!r}.')


# Steps at which a schedule is evaluated at construction (the count starts
# at 0; warm-ups and decays change over 1e2-1e6 steps).
SCHEDULE_PROBE_STEPS = (0, 1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)


def _in_range(scalar, lower, upper, lower_inclusive, upper_inclusive):
  ok = True
  if lower is not None:
    ok &= scalar >= lower if lower_inclusive else scalar > lower
  if upper is not None:
    ok &= scalar <= upper if upper_inclusive else scalar < upper
  return ok


def _check_schedule(where, name, schedule, expected, bounds) -> None:
  """Range-checks a schedule's concrete values at the probe steps.

  A schedule that cannot be called on a concrete step (it needs a traced
  count, or raises) or returns a non-scalar or traced value is left to run
  time: this check only rejects values it can see.
  """
  for step in SCHEDULE_PROBE_STEPS:
    try:
      out = schedule(np.int32(step))
    except Exception:  # noqa: BLE001 - a schedule's own failure, not ours
      return
    if isinstance(out, jax.core.Tracer):
      return
    scalar = _as_python_scalar(out)
    if isinstance(scalar, bool) or not isinstance(scalar, numbers.Real):
      return
    if math.isnan(scalar) or not _in_range(scalar, *bounds):
      raise ValueError(
        f'{where}: `{name}` must be {expected} at every step; the schedule '
        f'given returns {scalar!r} at step {step}.'
      )


def check_number(
  where: str,
  name: str,
  value: Any,
  *,
  lower: float | None = None,
  upper: float | None = None,
  lower_inclusive: bool = True,
  upper_inclusive: bool = True,
  allow_schedule: bool = True,
) -> None:
  """Checks that a concrete real hyper-parameter lies in a range.

  Args:
    where: name of the public factory, used in the message.
    name: name of the hyper-parameter.
    value: the value received. Tracers are skipped; callables (schedules) are
      probed at :data:`SCHEDULE_PROBE_STEPS` when ``allow_schedule`` and
      rejected otherwise.
    lower: lower bound or ``None`` for no bound.
    upper: upper bound or ``None`` for no bound.
    lower_inclusive: whether ``value == lower`` is allowed.
    upper_inclusive: whether ``value == upper`` is allowed.
    allow_schedule: whether a callable is accepted.

  Raises:
    TypeError: if the value is not a real number (or schedule when allowed).
    ValueError: if the value is NaN or outside the range.
  """
  expected = _describe_range(lower, upper, lower_inclusive, upper_inclusive)
  bounds = (lower, upper, lower_inclusive, upper_inclusive)
  if callable(value):
    if allow_schedule:
      _check_schedule(where, name, value, f'a number {expected}', bounds)
      return
    _fail(where, name, f'a number {expected}', value, TypeError)
  if isinstance(value, jax.core.Tracer):
    return
  scalar = _as_python_scalar(value)
  if isinstance(scalar, bool) or not isinstance(scalar, numbers.Real):
    _fail(where, name, f'a real number {expected}', value, TypeError)
  if math.isnan(scalar):
    _fail(where, name, f'a number {expected}', value)
  if not _in_range(scalar, *bounds):
    _fail(where, name, expected, value)


def check_integer(
  where: str,
  name: str,
  value: Any,
  *,
  lower: int | None = None,
  upper: int | None = None,
) -> None:
  """Checks that a hyper-parameter is a Python/NumPy integer in a range.

  Args:
    where: name of the public factory, used in the message.
    name: name of the hyper-parameter.
    value: the value received (tracers are skipped).
    lower: inclusive lower bound or ``None``.
    upper: inclusive upper bound or ``None``.

  Raises:
    TypeError: if the value is not an integer.
    ValueError: if the value is outside the range.
  """
  expected = _describe_range(lower, upper, True, True)
  if isinstance(value, jax.core.Tracer):  # inject_hyperparams under jit
    return
  scalar = _as_python_scalar(value)
  if isinstance(scalar, bool) or not isinstance(scalar, numbers.Integral):
    _fail(where, name, f'an integer {expected}'.rstrip(), value, TypeError)
  if (lower is not None and scalar < lower) or (
    upper is not None and scalar > upper
  ):
    _fail(where, name, f'an integer {expected}', value)


def check_same_length(
  where: str, names: Sequence[str], values: Sequence[Sequence[Any]]
) -> None:
  """Checks that several sequence hyper-parameters have the same length."""
  lengths = [len(v) for v in values]
  if len(set(lengths)) > 1:
    pairs = zip(names, lengths, strict=True)
    listed = ', '.join(f'`{n}` has {k}' for n, k in pairs)
    raise ValueError(
      f'{where}: {", ".join(f"`{n}`" for n in names)} must have the same '
      f'length, got: {listed}.'
    )


def check_bool(where: str, name: str, value: Any) -> None:
  """Checks that a flag is a Python bool (not 0/1 or an array)."""
  if not isinstance(value, bool):
    _fail(where, name, 'a bool', value, TypeError)


def check_preferences(where: str, value: Any, name='preferences') -> None:
  """``None`` or a 1-D array of finite numbers ``>= 0``, not all 0.

  A multi-task rule's preference vector weights the tasks' gradients: a
  negative entry would reverse a task, a NaN make every update NaN.
  Traced values are skipped.
  """
  if value is None or isinstance(value, jax.core.Tracer):
    return
  expected = 'a 1-D array of finite numbers >= 0, not all 0'
  try:
    arr = np.asarray(value, dtype=np.float64)
  except (TypeError, ValueError):
    _fail(where, name, expected, value, TypeError)
  if arr.ndim != 1 or arr.size == 0:
    _fail(where, name, f'{expected} (shape [K])', value)
  if not np.all(np.isfinite(arr)) or np.any(arr < 0) or not np.any(arr > 0):
    _fail(where, name, expected, value)


def check_callable(where: str, name: str, value: Any) -> None:
  """Checks that a hyper-parameter is callable."""
  if not callable(value):
    _fail(where, name, 'callable', value, TypeError)


def check_one_of(
  where: str, name: str, value: Any, choices: Sequence[Any]
) -> None:
  """Checks that a hyper-parameter is one of a fixed set of choices."""
  if value not in choices:
    _fail(where, name, f'one of {tuple(choices)!r}', value)


def _describe_range(
  lower: float | None,
  upper: float | None,
  lower_inclusive: bool,
  upper_inclusive: bool,
) -> str:
  if lower is None and upper is None:
    return ''
  if upper is None:
    return f'{">=" if lower_inclusive else ">"} {lower}'
  if lower is None:
    return f'{"<=" if upper_inclusive else "<"} {upper}'
  left = '[' if lower_inclusive else '('
  right = ']' if upper_inclusive else ')'
  return f'in {left}{lower}, {upper}{right}'


def per_item_bools(
  where: str, name: str, value: Any, n: int
) -> tuple[bool, ...]:
  """A bool, or a sequence of ``n`` bools, as a tuple of ``n`` bools."""
  if isinstance(value, bool):
    return (value,) * n
  if isinstance(value, (tuple, list)) and all(
    isinstance(v, bool) for v in value
  ):
    if len(value) != n:
      raise ValueError(
        f'{where}: `{name}` must be a bool or a sequence of {n} bools (one '
        f'per buffer), got {len(value)}: {value!r}.'
      )
    return tuple(value)
  _fail(where, name, f'a bool or a sequence of {n} bools', value, TypeError)


def check_decay(
  where: str, name: str, value: Any, *, allow_schedule: bool = True
) -> None:
  """An EMA decay: a number in ``[0, 1)`` or (if allowed) a schedule."""
  check_number(
    where,
    name,
    value,
    lower=0.0,
    upper=1.0,
    upper_inclusive=False,
    allow_schedule=allow_schedule,
  )


def state_dtype(where: str, name: str, value: Any, default=np.float32):
  """A floating dtype for a state buffer (``mu_dtype``); ``None``: default.

  Returns:
    The canonical ``numpy`` dtype.

  Raises:
    TypeError: if ``value`` is not ``None`` or a floating dtype.
  """
  if value is None:
    return np.dtype(default)
  try:
    dtype = jax.dtypes.canonicalize_dtype(value)
  except TypeError:
    dtype = None
  if dtype is None or not jax.numpy.issubdtype(dtype, np.floating):
    _fail(where, name, 'None or a floating dtype', value, TypeError)
  return dtype


def extra_tree(
  where: str,
  name: str,
  value: Any,
  updates: Any,
  what: str,
  like: str = 'the updates',
):
  """An extra ``update`` argument shaped like ``updates``, else a clear error.

  Args:
    where: the public name.
    name: the extra argument's name.
    value: what was passed (``None`` when missing).
    updates: the updates it must match in tree structure.
    what: what the argument holds, for the message.
    like: what ``updates`` are, for the message.

  Returns:
    ``value``.
  """
  if value is None:
    raise ValueError(
      f'{where}: `update` needs {what} as `{name}=` (a tree shaped like '
      f'{like}).'
    )
  if jax.tree.structure(value) != jax.tree.structure(updates):
    raise ValueError(
      f'{where}: `{name}` must have the structure of {like} '
      f'{jax.tree.structure(updates)}, got {jax.tree.structure(value)}.'
    )
  return value


def check_positive(
  where: str, name: str, value: Any, *, allow_schedule: bool = True
) -> None:
  """A number (or, if allowed, a schedule) ``> 0``."""
  check_number(
    where,
    name,
    value,
    lower=0.0,
    lower_inclusive=False,
    allow_schedule=allow_schedule,
  )


def check_non_negative(
  where: str, name: str, value: Any, *, allow_schedule: bool = True
) -> None:
  check_number(where, name, value, lower=0.0, allow_schedule=allow_schedule)


def check_adam(
  where: str,
  b1: Any,
  b2: Any,
  eps: Any = None,
  *,
  allow_schedule: bool = True,
) -> None:
  """Adam-style hyper-parameters: decays ``b1``, ``b2`` in ``[0, 1)``,
  ``eps >= 0`` (when given). ``allow_schedule=False`` where they are handed
  to optax's Adam, which takes numbers only."""
  check_decay(where, 'b1', b1, allow_schedule=allow_schedule)
  check_decay(where, 'b2', b2, allow_schedule=allow_schedule)
  if eps is not None:
    check_non_negative(where, 'eps', eps, allow_schedule=allow_schedule)
