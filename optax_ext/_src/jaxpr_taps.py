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
"""Taps on a loss function's parameter contractions (for ``ghost``).

:func:`analyse` finds, in a jaxpr whose first inputs are the parameter
leaves, the equations that contract a leaf used nowhere else with an
activation (``dot_general``, ``conv_general_dilated``, whole-row
``gather``), walking into ``jit``-ed calls; :func:`interpret` evaluates the
jaxpr adding a given zero to each tapped output and recording the other
operand; :func:`apply` re-runs one tapped equation on new operands.
"""

import dataclasses
from typing import Any

import jax.extend.core as jex

# Call primitives evaluated by walking into their jaxpr, so that a
# contraction inside (``jnp.einsum`` and friends are jitted) is found.
TRANSPARENT = {'jit': 'jaxpr', 'pjit': 'jaxpr', 'closed_call': 'call_jaxpr'}


@dataclasses.dataclass(frozen=True)
class Tap:
  """A contraction of one parameter leaf: where it is and how it contracts."""

  leaf: int
  position: int  # the parameter's operand position in the equation
  primitive: Any
  params: dict[str, Any]
  kind: str  # 'dot', 'conv' or 'gather'
  dtype: Any = None  # the parameter operand's dtype (after a cast)
  out: Any = None  # the equation's output aval (one member's)


def _is_var(v) -> bool:
  return not isinstance(v, jex.Literal)


def _dot_ok(eqn, position: int) -> bool:
  (_, _), (lb, rb) = eqn.params['dimension_numbers']
  return not lb and not rb and position in (0, 1)


def _gather_ok(eqn, position: int) -> bool:
  """An embedding lookup ``table[ids]``: whole rows of the table, picked by
  the last axis of the indices, placed on the output's trailing axes."""
  if position != 0:
    return False
  dn = eqn.params['dimension_numbers']
  table = eqn.invars[0].aval
  indices = eqn.invars[1].aval
  rest = table.ndim - 1
  out_rank = indices.ndim - 1 + rest
  return (
    tuple(dn.collapsed_slice_dims) == (0,)
    and tuple(dn.start_index_map) == (0,)
    and not tuple(getattr(dn, 'operand_batching_dims', ()))
    and tuple(dn.offset_dims) == tuple(range(out_rank - rest, out_rank))
    and tuple(eqn.params['slice_sizes']) == (1, *table.shape[1:])
    and indices.shape[-1] == 1
  )


def _conv_ok(eqn, position: int) -> bool:
  return (
    position == 1
    and eqn.params['feature_group_count'] == 1
    and eqn.params['batch_group_count'] == 1
  )


def analyse(jaxpr, num_leaves: int):
  """``(taps by equation path, paths to walk into)`` for the leaves used
  exactly once, by a contraction."""
  uses: dict[int, list] = {i: [] for i in range(num_leaves)}

  def walk(jx, leaf_of: dict, path: tuple) -> None:
    for index, eqn in enumerate(jx.eqns):
      here = path + (index,)
      hits = [
        (i, leaf_of[v])
        for i, v in enumerate(eqn.invars)
        if _is_var(v) and v in leaf_of
      ]
      if not hits:
        continue
      name = eqn.primitive.name
      if name in TRANSPARENT:
        sub = eqn.params[TRANSPARENT[name]]
        sub = getattr(sub, 'jaxpr', sub)
        for _, leaf in hits:
          uses[leaf].append(('call', here))
        walk(sub, {sub.invars[i]: leaf for i, leaf in hits}, here)
      elif name == 'convert_element_type' and len(hits) == 1:
        leaf_of[eqn.outvars[0]] = hits[0][1]
      elif (
        len(hits) == 1 and name == 'dot_general' and _dot_ok(eqn, hits[0][0])
      ):
        uses[hits[0][1]].append(('dot', here, hits[0][0], eqn))
      elif (
        len(hits) == 1
        and name == 'conv_general_dilated'
        and _conv_ok(eqn, hits[0][0])
      ):
        uses[hits[0][1]].append(('conv', here, hits[0][0], eqn))
      elif len(hits) == 1 and name == 'gather' and _gather_ok(eqn, hits[0][0]):
        uses[hits[0][1]].append(('gather', here, hits[0][0], eqn))
      else:
        for _, leaf in hits:
          uses[leaf].append(('other', here))
    for v in jx.outvars:
      if _is_var(v) and v in leaf_of:
        uses[leaf_of[v]].append(('other', path))

  params_in = jaxpr.invars[:num_leaves]
  walk(jaxpr, dict(zip(params_in, range(num_leaves), strict=True)), ())
  taps, walk_into = {}, set()
  for leaf, found in uses.items():
    contractions = [u for u in found if u[0] in ('dot', 'conv', 'gather')]
    others = [u for u in found if u[0] == 'other']
    if len(contractions) != 1 or others:
      continue
    kind, path, position, eqn = contractions[0]
    dtype = eqn.invars[position].aval.dtype
    taps[path] = Tap(
      leaf,
      position,
      eqn.primitive,
      dict(eqn.params),
      kind,
      dtype,
      eqn.outvars[0].aval,
    )
    walk_into |= {path[:i] for i in range(1, len(path))}
  return taps, walk_into


def _read(env, v):
  return v.val if isinstance(v, jex.Literal) else env[v]


def interpret(jx, consts, args, path, taps, walk_into, zs, found):
  """Evaluates ``jx``, adding ``zs[path]`` to each tapped output and putting
  the non-parameter operand of each tapped contraction in ``found``."""
  env = {}
  for v, x in zip(jx.constvars, consts, strict=True):
    env[v] = x
  for v, x in zip(jx.invars, args, strict=True):
    env[v] = x
  for index, eqn in enumerate(jx.eqns):
    here = path + (index,)
    invals = [_read(env, v) for v in eqn.invars]
    if here in walk_into:
      sub = eqn.params[TRANSPARENT[eqn.primitive.name]]
      outs = interpret(
        sub.jaxpr, sub.consts, invals, here, taps, walk_into, zs, found
      )
    else:
      bind_params = eqn.primitive.get_bind_params(eqn.params)
      with eqn.ctx.manager:
        outs = eqn.primitive.bind(*invals, **bind_params)
      if not eqn.primitive.multiple_results:
        outs = [outs]
      if here in taps:
        found[here] = invals[1 - taps[here].position]
        if zs is not None:
          outs = [outs[0] + zs[here].astype(outs[0].dtype)]
    for v, x in zip(eqn.outvars, outs, strict=True):
      env[v] = x
  return [_read(env, v) for v in jx.outvars]


def apply(tap: Tap, x, w):
  """The tapped equation on operand ``x`` and parameter ``w`` (cast as the
  model casts it: a bfloat16 compute of float32 params)."""
  w = w.astype(tap.dtype) if tap.dtype is not None else w
  operands = (w, x) if tap.position == 0 else (x, w)
  bind_params = tap.primitive.get_bind_params(tap.params)
  return tap.primitive.bind(*operands, **bind_params)
