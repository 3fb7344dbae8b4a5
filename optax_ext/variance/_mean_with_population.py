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
"""The variance family's aggregator shape: the mean for the optimiser, the
population (and its statistics) for the transforms that need them."""

import jax
import optax

from optax_ext._src import base
from optax_ext._src import population as pop_lib


def mean_with_population(
  where: str,
  inner: optax.GradientTransformation,
  axes: pop_lib.PopulationAxes | None,
) -> base.Aggregator:
  """An aggregator feeding ``inner`` the mean gradient *and* the population.

  ``update(population, ...)`` computes the population's mean and variance in
  one pass and calls ``inner.update(mean, ..., group_grads=population,
  group_mean_var=(mean, var))``: param-shaped transforms in ``inner`` that
  need the population (``scale_by_gsnr``) receive it, and its statistics, as
  named extra arguments, while the rest of ``inner`` sees the ordinary mean
  gradient. Passing the statistics avoids a second pass over the members
  (XLA does not merge the two).

  Args:
    where: the public name, for error messages.
    inner: a transform on param-shaped updates.
    axes: where the members live.

  Returns:
    An :class:`optax_ext.Aggregator`.
  """
  axes = base.resolve_axes(where, axes)

  def update_fn(updates, state, params=None, **extra_args):
    for name in ('group_grads', 'group_mean_var'):
      if name in extra_args:
        raise ValueError(
          f'{where} takes the gradient population as its updates; do not '
          f'also pass `{name}=`.'
        )
    updates = base.population_arg(where, updates, extra_args)
    extra_args.pop('population', None)
    base.check_population(where, updates, params, axes, lean_ok=True)
    mean_f32, var = pop_lib.mean_and_var(updates, axes)
    mean = jax.tree.map(
      lambda m, dt: m.astype(dt), mean_f32, pop_lib.member_dtypes(updates)
    )
    return inner.update(
      mean,
      state,
      params,
      group_grads=updates,
      group_mean_var=(mean_f32, var),
      **extra_args,
    )

  return base.Aggregator(inner.init, update_fn)
