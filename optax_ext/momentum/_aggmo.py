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
"""Aggregated momentum (AggMo)."""

from collections.abc import Sequence
from typing import Any
import warnings

import optax

from optax_ext._src import alias
from optax_ext._src import metadata
from optax_ext._src import validation
from optax_ext.momentum import _mixture


@metadata.describe(citations=('lucas2019aggregated',))
def aggmo_decays(a: float = 0.1, k: int = 3) -> tuple[float, ...]:
  r"""The AggMo paper's decays :math:`\beta_i = 1 - a^i`, ``i = 0..k-1``.

  Args:
    a: the damping base in ``(0, 1)``.
    k: the number of buffers, ``>= 1``.

  Returns:
    A tuple of ``k`` decays (``(0.0, 0.9, 0.99)`` by default).

  Example:
    >>> from optax_ext import momentum
    >>> momentum.aggmo_decays(0.1, 3)
    (0.0, 0.9, 0.99)

  References:
    Lucas et al., `Aggregated Momentum: Stability Through Passive Damping
    <https://arxiv.org/abs/1804.00325>`_, 2019.
  """
  validation.check_number(
    'aggmo_decays',
    'a',
    a,
    lower=0.0,
    upper=1.0,
    lower_inclusive=False,
    upper_inclusive=False,
    allow_schedule=False,
  )
  validation.check_integer('aggmo_decays', 'k', k, lower=1)
  return tuple(round(1.0 - a**i, 12) for i in range(k))


@metadata.describe(
  citations=('lucas2019aggregated',),
  case=metadata.Case(
    kind='param',
    kwargs=lambda: {'decays': (0.0, 0.5, 0.9)},
    lr=0.02,
    rosenbrock=(1e-3, 20000),
  ),
  row=metadata.Row(
    'momentum',
    'aggregated momentum',
    papers='[Lucas et al. 2019](https://arxiv.org/abs/1804.00325)',
    also=('aggmo', 'aggmo_decays'),
  ),
)
def scale_by_aggmo(
  decays: Sequence[float] = (0.0, 0.9, 0.99),
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AggMo: the mean of K undampened heavy-ball buffers.

  .. math::
    v_i \leftarrow \beta_i v_i + g, \qquad u = \frac1K \sum_i v_i .

  Built on :func:`scale_by_momentum_mixture` (undampened buffers, weights
  ``1/K``; a ``0.0`` decay is the gradient itself and is not stored). For a
  constant gradient the steady-state gain is :math:`\frac1K\sum_i
  1/(1-\beta_i)` (37 for the defaults): scale the learning rate accordingly.
  Duplicate decays are kept (the reference keys its buffers by decay and would
  merge them) and warned about.

  Args:
    decays: the :math:`\beta_i`, each in ``[0, 1)``; default ``(0, 0.9,
      0.99)`` = :func:`aggmo_decays` ``(0.1, 3)``.
    mu_dtype: storage dtype of the buffer(s) (see
      :func:`scale_by_momentum_mixture`: ``None`` is float32).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with state
    :class:`ScaleByMomentumMixtureState`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.scale_by_aggmo((0.0, 0.5))
    >>> g = jnp.array([2.0])
    >>> state = tx.init(g)
    >>> u, state = tx.update(g, state)
    >>> u, state = tx.update(g, state)
    >>> u  # (2 + (0.5 * 2 + 2)) / 2
    Array([2.5], dtype=float32)

  References:
    Lucas et al., `Aggregated Momentum: Stability Through Passive Damping
    <https://arxiv.org/abs/1804.00325>`_, 2019.
  """
  decays = tuple(decays)
  if len(set(decays)) != len(decays):
    warnings.warn(
      f'scale_by_aggmo: `decays` has duplicates {decays!r}; each is kept as a '
      'separate buffer (the reference implementation would merge them).',
      UserWarning,
      stacklevel=2,
    )
  k = len(decays)
  return _mixture.scale_by_momentum_mixture(
    decays=decays,
    coefficients=(1.0 / max(k, 1),) * k,
    dampening=False,
    mu_dtype=mu_dtype,
  )


@metadata.describe(
  citations=('lucas2019aggregated',),
  case=metadata.Case(
    kind='param',
    kwargs=lambda: {'learning_rate': 0.02, 'decays': (0.0, 0.5, 0.9)},
    alias=True,
    hyperparams=('learning_rate', 'weight_decay'),
    lr=0.02,
    rosenbrock=(1e-3, 20000),
  ),
  benchmarks=(
    metadata.Benchmark(
      'transforms', 'aggmo', args=(1e-3,), peer=('AggMo', {'lr': 1e-3})
    ),
  ),
)
def aggmo(
  learning_rate: optax.ScalarOrSchedule,
  decays: Sequence[float] = (0.0, 0.9, 0.99),
  weight_decay: optax.ScalarOrSchedule = 0.0,
  *,
  decouple_weight_decay: bool = False,
  mask: Any = None,
  mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AggMo optimiser; weight decay as L2 (added to the gradient) by default.

  Args:
    learning_rate: step size or schedule, ``>= 0`` (the reference's template
      uses 0.01).
    decays: the :math:`\beta_i` in ``[0, 1)``.
    weight_decay: coefficient :math:`\lambda \ge 0`, added to the gradient
      (L2) as in the reference.
    decouple_weight_decay: decoupled (AdamW-style) instead of L2 decay.
    mask: which params weight decay applies to (a tree of bools or a
      function of the params, as :func:`optax.add_decayed_weights`).
    mu_dtype: storage dtype of the buffer(s) (see
      :func:`scale_by_momentum_mixture`: ``None`` is float32).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax_ext import momentum
    >>> tx = momentum.aggmo(0.1)
    >>> params = jnp.array([1.0])
    >>> u, _ = tx.update(jnp.array([3.0]), tx.init(params), params)
    >>> u
    Array([-0.3], dtype=float32)

  References:
    Lucas et al., `Aggregated Momentum: Stability Through Passive Damping
    <https://arxiv.org/abs/1804.00325>`_, 2019.
  """
  where = 'aggmo'
  validation.check_non_negative(where, 'learning_rate', learning_rate)
  validation.check_non_negative(where, 'weight_decay', weight_decay)
  return alias.with_decay_and_lr(
    scale_by_aggmo(decays, mu_dtype),
    learning_rate,
    weight_decay,
    mask,
    coupled=not decouple_weight_decay,
  )
