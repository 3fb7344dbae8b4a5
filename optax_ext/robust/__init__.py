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
"""Robust and clipped aggregation of gradient populations.

Aggregators (population -> update), each stating its breakdown point and
cost: :func:`aggregate_by_coordinate_median`, :func:`aggregate_by_trimmed_mean`,
:func:`aggregate_by_krum`, :func:`aggregate_by_geometric_median` (and the
function :func:`geometric_median`), :func:`aggregate_by_nearest_neighbors`,
:func:`aggregate_by_centered_clipping`; per-member clipping
:func:`clip_each_by_global_norm` (population -> population); across
iterations: median tracking (:func:`scale_by_median_tracking`,
:func:`median_tracking`) and AutoClip (:func:`clip_by_norm_percentile`).
"""

from optax_ext.robust._centered_clipping import aggregate_by_centered_clipping
from optax_ext.robust._centered_clipping import AggregateByCenteredClippingState
from optax_ext.robust._clip_each import clip_each_by_global_norm
from optax_ext.robust._geometric_median import aggregate_by_geometric_median
from optax_ext.robust._geometric_median import geometric_median
from optax_ext.robust._geometric_median import GeometricMedianState
from optax_ext.robust._krum import aggregate_by_krum
from optax_ext.robust._nearest_neighbors import aggregate_by_nearest_neighbors
from optax_ext.robust._nearest_neighbors import mix_by_nearest_neighbors
from optax_ext.robust._nearest_neighbors import nna_mix
from optax_ext.robust._order_statistics import aggregate_by_coordinate_median
from optax_ext.robust._order_statistics import aggregate_by_trimmed_mean
from optax_ext.robust._tracking import clip_by_norm_percentile
from optax_ext.robust._tracking import ClipByNormPercentileState
from optax_ext.robust._tracking import median_tracking
from optax_ext.robust._tracking import MedianTrackingState
from optax_ext.robust._tracking import scale_by_median_tracking

__all__ = (
  'AggregateByCenteredClippingState',
  'ClipByNormPercentileState',
  'GeometricMedianState',
  'MedianTrackingState',
  'aggregate_by_centered_clipping',
  'aggregate_by_coordinate_median',
  'aggregate_by_geometric_median',
  'aggregate_by_krum',
  'aggregate_by_nearest_neighbors',
  'aggregate_by_trimmed_mean',
  'clip_by_norm_percentile',
  'clip_each_by_global_norm',
  'geometric_median',
  'median_tracking',
  'mix_by_nearest_neighbors',
  'nna_mix',
  'scale_by_median_tracking',
)
