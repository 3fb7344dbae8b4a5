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
"""What each public function declares beside its code.

A method file decorates each public function with :func:`describe`: the
papers it implements, what it promises over a population, how the test
battery builds a typical instance, its benchmark rows and its row of the
README methods table. The citations table, the test registry, the benchmark
tables, the README table and the tables of ``docs/families.md`` are all
derived from these declarations (:func:`methods`), so adding a method
touches its own file, its family ``__init__``, its test file and
``references.bib``.

The decorator returns the function unchanged.
"""

from collections.abc import Callable, Mapping
import dataclasses
from typing import Any, Literal

import jax.numpy as jnp

# The families in the order the README and the docs list them (the README's
# labels; a method declares one in its ``Row``).
FAMILIES = (
  'foundation',
  'GSNR',
  'variance',
  'momentum',
  'adaptive',
  'robust',
  'lookahead',
  'alignment',
  'pruning',
  'losses',
  'privacy',
  'scalarization',
  'multi-task',
)

# Members of the test battery's populations (a case's kwargs may depend on
# it, e.g. multi-Krum selecting all of them).
BATTERY_MEMBERS = 4


def cosine_decay(init_value: float, steps: int) -> Callable[[Any], Any]:
  """A cosine decay to 0 over ``steps`` for a case's learning rate.

  ``optax.cosine_decay_schedule`` mixes weak-typed and float32 values, which
  the battery's strict dtype promotion rejects.
  """

  def schedule(count):
    frac = jnp.minimum(jnp.asarray(count, jnp.float32), steps) / steps
    return init_value * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))

  return schedule


@dataclasses.dataclass(frozen=True)
class Multitask:
  """TorchJD's property table for a multi-task rule (a Jacobian ``J``).

  Attributes:
    non_conflicting: ``J u >= 0`` for the update ``u`` (no task's loss
      increases to first order).
    linear_under_scaling: ``u(diag(c) J)`` is linear in ``c >= 0``.
    permutation_invariant: reordering the tasks leaves ``u`` unchanged.
    homogeneity_degree: ``p`` with ``u(cJ) = c^p u(J)`` for ``c > 0``.
  """

  non_conflicting: bool
  linear_under_scaling: bool
  permutation_invariant: bool
  homogeneity_degree: int


@dataclasses.dataclass(frozen=True)
class Properties:
  """What a population rule (aggregator or population transform) promises.

  Attributes:
    robust: tolerates a minority of arbitrary members (NaN, Inf, huge,
      adversarial): the fault tests hold it to a bounded output.
    clip_threshold: for clipping rules, the name of the threshold argument
      (a finite member, however large, is clipped, so it counts).
    lean: accepts a memory-lean ``population.microbatches`` (``False`` for
      rules that need every member at a coordinate).
    multitask: for multi-task rules, their :class:`Multitask` properties
      (an ``aggregate_by_*`` of the alignment family declares these or
      ``multitask_exempt``).
    multitask_exempt: for a multi-task rule outside the deterministic
      property table (stochastic, stateful, or a fixed number of tasks),
      why; its own tests cover it.
  """

  robust: bool
  clip_threshold: str | None = None
  lean: bool = True
  multitask: Multitask | None = None
  multitask_exempt: str | None = None


Kind = Literal['param', 'aggregator', 'wrapper', 'population']


@dataclasses.dataclass(frozen=True)
class Case:
  """A typical instance and how the shared test battery exercises it.

  Attributes:
    kind: ``'param'`` (param-shaped transform or an optimiser),
      ``'aggregator'`` (population -> param-shaped updates), ``'wrapper'``
      (takes an inner transform) or ``'population'`` (population ->
      population).
    kwargs: keyword arguments of a typical instance, or a function returning
      them (for arguments that are themselves transforms built on import).
    alias: the factory takes ``learning_rate`` (an optimiser).
    hyperparams: the arguments ``optax.inject_hyperparams`` must expose.
    lr: learning rate (or schedule) for the battery's parabola.
    rosenbrock: ``(learning rate or schedule, steps)`` reaching ``(1, 1)``
      from ``(-1, 1.5)``.
    static_args: arguments ``inject_hyperparams`` must not inject.
    strict_promotion: ``False`` if it chains optax pieces that are not
      strict-promotion clean.
    inject_rtol: tolerance of the ``inject_hyperparams`` equivalence.
    layouts: takes every population layout and owns the population checks
      (``False`` for a wrapper of task populations).
    optimizer: for wrappers whose learning rate lives in ``inner``,
      ``lr -> full optimiser``.
    population: the test battery's population builder, by name
      (``tests/registry.py`` ``HOOKS``).
    extra_args: the battery's builder of extra ``update`` arguments, by
      name.
    post: the optimiser chained after a non-alias transform, by name.
  """

  kind: Kind
  kwargs: Mapping[str, Any] | Callable[[], Mapping[str, Any]] = (
    dataclasses.field(default_factory=dict)
  )
  alias: bool = False
  hyperparams: tuple[str, ...] = ()
  lr: Any = 0.1
  rosenbrock: tuple[Any, int] = (0.01, 5000)
  static_args: tuple[str, ...] = ()
  strict_promotion: bool = True
  inject_rtol: float = 2e-5
  layouts: bool = True
  optimizer: Callable[[float], Any] | None = None
  population: str | None = None
  extra_args: str | None = None
  post: str | None = None

  def make_kwargs(self) -> dict[str, Any]:
    kwargs = self.kwargs() if callable(self.kwargs) else self.kwargs
    return dict(kwargs)


@dataclasses.dataclass(frozen=True)
class Benchmark:
  """A row of a ``benchmarks/run.py`` table.

  Attributes:
    table: ``'transforms'`` (a full optimiser, timed against its traffic
      bound), ``'aggregators'`` (a population rule over ``K`` members),
      ``'multitask'`` (against TorchJD) or ``'train_step'`` (the population
      train step).
    label: the row's label.
    args: positional arguments of the benchmarked instance.
    kwargs: keyword arguments of the benchmarked instance.
    peer: the peer library's class and kwargs (``pytorch_optimizer`` for
      transforms, TorchJD for multi-task rules), or ``None``.
    state_traffic: for aggregators, param-sized float32 state buffers
      (read, written) per step.
    two_pass: for transforms, a reduction over the gradient precedes the
      elementwise step (its bound is one more read).
    then: for a transform that is not an optimiser, the optax optimiser
      chained after it.
  """

  table: Literal['transforms', 'aggregators', 'multitask', 'train_step']
  label: str
  args: tuple[Any, ...] = ()
  kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  peer: tuple[str, Mapping[str, Any]] | None = None
  state_traffic: tuple[int, int] = (0, 0)
  two_pass: bool = False
  then: Any = None


@dataclasses.dataclass(frozen=True)
class Row:
  """A row of the README methods table (and of ``docs/families.md``).

  Attributes:
    family: the family label (one of :data:`FAMILIES`).
    method: a one-line description of the method.
    papers: the paper(s), as Markdown links.
    also: the other public names the row lists after the declaring one.
  """

  family: str
  method: str
  papers: str
  also: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Method:
  """Everything declared for one public function."""

  name: str
  function: Callable[..., Any]
  module: str
  citations: tuple[str, ...]
  properties: Properties | None
  case: Case | None
  benchmarks: tuple[Benchmark, ...]
  row: Row | None

  @property
  def public_module(self) -> str:
    """``optax_ext.<family>`` (or ``optax_ext`` for the core's own)."""
    parts = self.module.split('.')
    if len(parts) > 2 and parts[1] != '_src':
      return '.'.join(parts[:2])
    return parts[0]


_METHODS: dict[str, Method] = {}


def describe(
  *,
  citations: tuple[str, ...],
  properties: Properties | None = None,
  case: Case | None = None,
  benchmarks: tuple[Benchmark, ...] = (),
  row: Row | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
  """Declares a public function's metadata; returns it unchanged.

  Args:
    citations: BibTeX keys (``optax_ext/references.bib``) of the papers it
      implements, in the order its docstring cites them; ``()`` for a
      utility without a paper.
    properties: for population rules, what they promise.
    case: for factories, the battery's typical instance.
    benchmarks: rows of the benchmark tables.
    row: the README methods-table row this function opens.

  Returns:
    A decorator recording the declaration under the function's name.
  """

  def record(fn: Callable[..., Any]) -> Callable[..., Any]:
    name = fn.__name__
    known = _METHODS.get(name)
    # The same definition executed again (a module imported twice, as
    # pytest's doctest collection does for a file outside a package) keeps
    # the first declaration; a second definition of a public name in
    # another file is a mistake.
    if known is not None:
      if known.function.__code__.co_filename != fn.__code__.co_filename:
        raise ValueError(
          f'describe: {name!r} is declared in {known.module} and in '
          f'{fn.__module__}.'
        )
      return fn
    if row is not None and row.family not in FAMILIES:
      raise ValueError(
        f'describe: {name!r} row family must be one of {FAMILIES}, got '
        f'{row.family!r}.'
      )
    _METHODS[name] = Method(
      name=name,
      function=fn,
      module=fn.__module__,
      citations=tuple(citations),
      properties=properties,
      case=case,
      benchmarks=tuple(benchmarks),
      row=row,
    )
    return fn

  return record


def methods() -> dict[str, Method]:
  """Every declaration, by public name, in declaration order.

  Complete once ``optax_ext`` is imported (each family declares its methods
  on import, and importing any ``optax_ext`` module imports the package).
  """
  return dict(_METHODS)


def readme_table(*, links: bool = False) -> str:
  """The README methods table, one row per declared :class:`Row`.

  ``links``: names as MyST ``{func}`` references (the docs' landing page).
  """
  rows = [m for m in methods().values() if m.row is not None]
  rows.sort(key=lambda m: FAMILIES.index(m.row.family))
  lines = ['| family | method | public name | paper |', '|---|---|---|---|']
  for m in rows:
    if links:
      names = ', '.join(
        f'{{func}}`~{m.public_module}.{n}`' for n in (m.name, *m.row.also)
      )
    else:
      names = ', '.join(
        [f'`{m.public_module}.{m.name}`'] + [f'`{n}`' for n in m.row.also]
      )
    lines.append(
      f'| {m.row.family} | {m.row.method} | {names} | {m.row.papers} |'
    )
  return '\n'.join(lines) + '\n'


def family_table(public_module: str) -> str:
  """The table of one family's rows for ``docs/families.md``."""
  rows = [
    m
    for m in methods().values()
    if m.row is not None and m.public_module == public_module
  ]
  lines = ['| method | functions | paper |', '|---|---|---|']
  for m in rows:
    names = ', '.join(
      f'{{func}}`~{m.public_module}.{n}`' for n in (m.name, *m.row.also)
    )
    lines.append(f'| {m.row.method} | {names} | {m.row.papers} |')
  return '\n'.join(lines) + '\n'
