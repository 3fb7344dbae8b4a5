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
"""Pure, jit-safe maths over a gradient population.

Every function takes the population and a :class:`PopulationAxes` saying
where its members live (stacked on a leading axis, spread over a named mapped
axis, or both) and gives the same answer on every path.
"""

# pylint: disable=redefined-builtin
from optax_ext._src.ghost import ghost
from optax_ext._src.ghost import GhostPopulation
from optax_ext._src.ghost import report as ghost_report
from optax_ext._src.lean import Microbatches
from optax_ext._src.lean import microbatches
from optax_ext._src.population import combine
from optax_ext._src.population import coordinate_shardings
from optax_ext._src.population import deviations
from optax_ext._src.population import dots
from optax_ext._src.population import gather
from optax_ext._src.population import grad_population
from optax_ext._src.population import gramian
from optax_ext._src.population import local_size
from optax_ext._src.population import mean
from optax_ext._src.population import mean_and_var
from optax_ext._src.population import median
from optax_ext._src.population import norms
from optax_ext._src.population import PopulationAxes
from optax_ext._src.population import shard_coordinates
from optax_ext._src.population import size
from optax_ext._src.population import sort
from optax_ext._src.population import stack
from optax_ext._src.population import sum
from optax_ext._src.population import unstack
from optax_ext._src.population import vary_like

__all__ = (
  'GhostPopulation',
  'Microbatches',
  'PopulationAxes',
  'combine',
  'coordinate_shardings',
  'deviations',
  'dots',
  'gather',
  'ghost',
  'ghost_report',
  'grad_population',
  'gramian',
  'local_size',
  'mean',
  'mean_and_var',
  'median',
  'microbatches',
  'norms',
  'shard_coordinates',
  'size',
  'sort',
  'stack',
  'sum',
  'unstack',
  'vary_like',
)
