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
"""Citations: the BibTeX of the papers behind each public name."""

from collections.abc import Callable, Iterable
import functools
import importlib.resources
import re
from typing import Any

from optax_ext._src import metadata

_LIBRARY = 'optax_ext2026'


def _keys() -> dict[str, tuple[str, ...]]:
  """Public name -> BibTeX keys, as each method declares them beside its
  code (``@metadata.describe(citations=...)``)."""
  keys = {n: m.citations for n, m in metadata.methods().items() if m.citations}
  keys['optax_ext'] = (_LIBRARY,)
  return keys


@functools.cache
def _entries() -> dict[str, str]:
  """BibTeX key -> entry text, from the packaged ``references.bib``."""
  text = (
    importlib.resources.files('optax_ext')
    .joinpath('references.bib')
    .read_text(encoding='utf-8')
  )
  entries = {}
  for match in re.finditer(r'^@\w+\{([^,]+),.*?^\}', text, re.M | re.S):
    entries[match.group(1).strip()] = match.group(0)
  return entries


def _name_of(obj: Any) -> str:
  if isinstance(obj, str):
    return obj.rsplit('.', 1)[-1]
  name = getattr(obj, '__name__', None)
  if name is None:
    raise TypeError(
      f'cite: expected a public optax_ext function or its name, got {obj!r}.'
    )
  return name.rsplit('.', 1)[-1]


def citation_keys(obj_or_name: Callable[..., Any] | str) -> tuple[str, ...]:
  """The BibTeX keys of the papers behind a public name.

  Args:
    obj_or_name: a public function (``optax_ext.alignment.aggregate_by_upgrad``)
      or its name, qualified or not; ``'optax_ext'`` for the library itself.

  Returns:
    The keys, in the order the docstring cites them.

  Raises:
    ValueError: for a name without papers (e.g. population utilities).

  Example:
    >>> import optax_ext
    >>> optax_ext.citation_keys(optax_ext.alignment.aggregate_by_mgda)
    ('desideri2012mgda', 'sener2018multitask')
  """
  name = _name_of(obj_or_name)
  keys = _keys()
  if name not in keys:
    raise ValueError(
      f'cite: no paper is registered for {name!r} (utilities such as the '
      'population maths have none; cite the library with '
      "cite('optax_ext'))."
    )
  return keys[name]


def cite(obj_or_name: Callable[..., Any] | str) -> str:
  """The BibTeX of the paper(s) behind a transform, loss or helper.

  Args:
    obj_or_name: a public function or its name; ``'optax_ext'`` for the
      library itself.

  Returns:
    BibTeX entries, separated by blank lines.

  Example:
    >>> import optax_ext
    >>> print(optax_ext.cite('lookahead').splitlines()[0])
    @inproceedings{zhang2019lookahead,
  """
  entries = _entries()
  return '\n\n'.join(entries[k] for k in citation_keys(obj_or_name))


def bibliography(
  *objs_or_names: Callable[..., Any] | str | Iterable[Any],
  include_library: bool = True,
) -> str:
  """The BibTeX of a whole pipeline: every paper once, then the library.

  Args:
    *objs_or_names: public functions or names (or iterables of them), e.g.
      the factories a training script chains.
    include_library: append the library's own entry.

  Returns:
    De-duplicated BibTeX entries, in first-use order.

  Example:
    >>> import optax_ext
    >>> bib = optax_ext.bibliography('aggregate_by_upgrad', 'lookahead')
    >>> for line in bib.splitlines():
    ...   if line.startswith('@'):
    ...     print(line)
    @article{quinton2024jacobian,
    @inproceedings{zhang2019lookahead,
    @misc{optax_ext2026,
  """
  keys: list[str] = []
  flat: list[Any] = []
  for item in objs_or_names:
    if isinstance(item, (list, tuple, set)):
      flat.extend(item)
    else:
      flat.append(item)
  for item in flat:
    for key in citation_keys(item):
      if key not in keys:
        keys.append(key)
  if include_library and _LIBRARY not in keys:
    keys.append(_LIBRARY)
  entries = _entries()
  return '\n\n'.join(entries[k] for k in keys)
