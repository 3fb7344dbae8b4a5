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
"""Privacy: differentially private aggregation of a gradient population.

* :func:`aggregate_by_private_mean`: DP-SGD's clipped, noised mean of
  per-example (or per-microbatch) gradients, on every population layout;
* :func:`dp_sgd_epsilon`: the privacy spent, from Google's ``dp-accounting``
  (the ``privacy`` extra).
"""

from optax_ext.privacy._accounting import dp_sgd_epsilon
from optax_ext.privacy._private_mean import aggregate_by_private_mean
from optax_ext.privacy._private_mean import AggregateByPrivateMeanState

__all__ = (
  'AggregateByPrivateMeanState',
  'aggregate_by_private_mean',
  'dp_sgd_epsilon',
)
