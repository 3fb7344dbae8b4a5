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
"""The gradient population: one place for all maths over its members.

A *gradient population* is a set of ``K`` gradients of the same parameters:
per-example, per-microbatch, per-task or per-device gradients. It is laid out
in one of three ways, described by :class:`PopulationAxes`:

* **stacked**: every leaf has the members on a leading axis,
  ``[K, *param.shape]`` (``PopulationAxes(axis=0)``);
* **named**: under ``jax.shard_map``, ``jax.pmap`` or
  ``jax.vmap(..., axis_name=...)`` every index of a named mapped axis holds one
  param-shaped member (``PopulationAxes(axis=None, axis_name='data')``);
* **both**: every index of the named axis holds a local stack of ``k`` members
  (``PopulationAxes(axis=0, axis_name='data')``), ``K = k * axis_size``.

Every function here has a leading-axis path and a named-axis path that give
the same answer (tested on 8 simulated devices). Reductions accumulate in
float32 (float64 for float64 inputs). Member-ordering convention for the named
path: members are ordered by the index of the named axis first, then by the
position on the local axis, i.e. the order ``jax.lax.all_gather(...,
tiled=True)`` produces.

This module gathers the population core's public functions in one
namespace (``pop_lib`` in the families, ``optax_ext.population`` for users);
they live in layers that import only downwards: ``axes`` (layouts and
collectives) <- ``lean`` (microbatch populations) <- ``layouts`` (sizes,
gathering, coordinate maps) <- ``order_statistics`` <- ``gram`` (Gramian and
combinations) <- ``reductions``.
"""

# pylint: disable=redefined-builtin
from optax_ext._src import axes as axes_lib
from optax_ext._src import gram as gram_lib
from optax_ext._src import layouts
from optax_ext._src import order_statistics
from optax_ext._src import reductions

AxisName = axes_lib.AxisName
Population = axes_lib.Population
PopulationAxes = axes_lib.PopulationAxes
across_indices = axes_lib.across_indices
coordinate_shardings = axes_lib.coordinate_shardings
local_slice = axes_lib.local_slice
vary_like = axes_lib.vary_like
vary_over_members = axes_lib.vary_over_members
combine = gram_lib.combine
gramian = gram_lib.gramian
mean_of_selected = gram_lib.mean_of_selected
mix = gram_lib.mix
squared_distances = gram_lib.squared_distances
all_members = layouts.all_members
gather = layouts.gather
member_dtypes = layouts.member_dtypes
vary_like_members = layouts.vary_like_members
grad_population = layouts.grad_population
local_size = layouts.local_size
map_coordinates = layouts.map_coordinates
shard_coordinates = layouts.shard_coordinates
size = layouts.size
stack = layouts.stack
unstack = layouts.unstack
median = order_statistics.median
network_sort = order_statistics.network_sort
sort = order_statistics.sort
all_norms = reductions.all_norms
clip_factors = reductions.clip_factors
deviations = reductions.deviations
dots = reductions.dots
mean = reductions.mean
mean_and_var = reductions.mean_and_var
mean_of_clipped_deviations = reductions.mean_of_clipped_deviations
mean_of_scaled_deviations = reductions.mean_of_scaled_deviations
range_means = reductions.range_means
norms = reductions.norms
scale_members = reductions.scale_members
sum = reductions.sum
