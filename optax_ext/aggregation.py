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
"""Aggregators: transforms from a gradient population to param-shaped updates.

An aggregator comes first in an :func:`optax.chain`; everything after it is an
ordinary optax transform::

  tx = optax.chain(optax_ext.aggregation.aggregate_by_mean(), optax.adam(1e-3))
"""

from optax_ext._src.aggregation import aggregate_by_mean
from optax_ext._src.aggregation import aggregate_by_sum
from optax_ext._src.base import Aggregator
from optax_ext._src.population import grad_population
from optax_ext._src.population import PopulationAxes

__all__ = (
  'Aggregator',
  'PopulationAxes',
  'aggregate_by_mean',
  'aggregate_by_sum',
  'grad_population',
)
