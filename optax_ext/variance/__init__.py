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
"""GSNR variance reduction: the GSNR statistic, GSNR-scaled updates, VRGD.

* :func:`gsnr`, :func:`gsnr_by_leaf`: the per-parameter (and per-layer)
  gradient signal-to-noise ratio of a population, a diagnostic on its own;
* :func:`scale_by_gsnr`: scales param-shaped updates by the normalised,
  bounded GSNR of the population passed as ``group_grads=``;
* :func:`aggregate_by_gsnr`: the aggregator form (population in, update out);
* :func:`vr_sgd`, :func:`vr_adam`, :func:`vr_lamb`, :func:`vr_lars`: VRGD
  optimisers built from optax's own pieces, taking the population;
* :func:`gradient_noise_scale`, :func:`aggregate_by_mean_with_noise_scale`:
  the gradient noise scale (critical batch size) of McCandlish et al.;
* :func:`agvm`: per-module learning-rate factors that align the modules'
  gradient noise (Xue et al. 2022), around any optimiser.
"""

from optax_ext.variance._agvm import agvm
from optax_ext.variance._agvm import AgvmState
from optax_ext.variance._batch_size_tests import (
  aggregate_by_mean_with_batch_size_tests,
)
from optax_ext.variance._batch_size_tests import (
  AggregateByMeanWithBatchSizeTestsState,
)
from optax_ext.variance._batch_size_tests import batch_size_tests
from optax_ext.variance._batch_size_tests import BatchSizeTests
from optax_ext.variance._gsnr import aggregate_by_gsnr
from optax_ext.variance._gsnr import gsnr
from optax_ext.variance._gsnr import gsnr_by_leaf
from optax_ext.variance._gsnr import scale_by_gsnr
from optax_ext.variance._gsnr import ScaleByGsnrState
from optax_ext.variance._noise_scale import aggregate_by_mean_with_noise_scale
from optax_ext.variance._noise_scale import AggregateByMeanWithNoiseScaleState
from optax_ext.variance._noise_scale import gradient_noise_scale
from optax_ext.variance._noise_scale import NoiseScaleEstimate
from optax_ext.variance._vrgd import vr_adam
from optax_ext.variance._vrgd import vr_lamb
from optax_ext.variance._vrgd import vr_lars
from optax_ext.variance._vrgd import vr_sgd

__all__ = (
  'AggregateByMeanWithBatchSizeTestsState',
  'AggregateByMeanWithNoiseScaleState',
  'AgvmState',
  'BatchSizeTests',
  'NoiseScaleEstimate',
  'ScaleByGsnrState',
  'aggregate_by_gsnr',
  'aggregate_by_mean_with_batch_size_tests',
  'aggregate_by_mean_with_noise_scale',
  'agvm',
  'batch_size_tests',
  'gradient_noise_scale',
  'gsnr',
  'gsnr_by_leaf',
  'scale_by_gsnr',
  'vr_adam',
  'vr_lamb',
  'vr_lars',
  'vr_sgd',
)
