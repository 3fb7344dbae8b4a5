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
"""Momentum mixtures: the N-EMA core and the methods built on or beside it.

* :func:`scale_by_momentum_mixture` / :func:`momentum_mixture`: the core;
* QHM (:func:`scale_by_qhm`, :func:`qhm`), QHAdam (:func:`scale_by_qhadam`,
  :func:`qhadam`), AggMo (:func:`scale_by_aggmo`, :func:`aggmo`,
  :func:`aggmo_decays`);
* AdEMAMix warm-ups for :func:`optax.contrib.ademamix`
  (:func:`ademamix_alpha_schedule`, :func:`ademamix_beta3_schedule`,
  :func:`ademamix_with_warmup`);
* MARS (:func:`scale_by_mars`, :func:`mars`), Grams (:func:`scale_by_grams`,
  :func:`grams`);
* IGT (:func:`igt`, :func:`igt_sgd`, :func:`igt_adam`,
  :func:`igt_true_params`) and cluster-wise multi-momentum
  (:func:`scale_by_cluster_momentum`, :func:`cluster_igt`);
* positive-negative momentum (:func:`scale_by_pnm`, :func:`pnm`,
  :func:`scale_by_adapnm`, :func:`adapnm`) and Ranger21 (:func:`ranger21`);
* XGrad weight prediction (:func:`xgrad`, :func:`xgrad_sgd`,
  :func:`xgrad_adam`, :func:`xgrad_adamw`, :func:`xgrad_true_params`).
"""

from optax_ext.momentum._ademamix import ademamix_alpha_schedule
from optax_ext.momentum._ademamix import ademamix_beta3_schedule
from optax_ext.momentum._ademamix import ademamix_with_warmup
from optax_ext.momentum._ademamix import AdemamixWithWarmupState
from optax_ext.momentum._aggmo import aggmo
from optax_ext.momentum._aggmo import aggmo_decays
from optax_ext.momentum._aggmo import scale_by_aggmo
from optax_ext.momentum._cautious import cautious
from optax_ext.momentum._cautious import CautiousState
from optax_ext.momentum._cluster import cluster_igt
from optax_ext.momentum._cluster import ClusterIgtState
from optax_ext.momentum._cluster import scale_by_cluster_momentum
from optax_ext.momentum._cluster import ScaleByClusterMomentumState
from optax_ext.momentum._grams import grams
from optax_ext.momentum._grams import scale_by_grams
from optax_ext.momentum._grams import ScaleByGramsState
from optax_ext.momentum._igt import igt
from optax_ext.momentum._igt import igt_adam
from optax_ext.momentum._igt import igt_sgd
from optax_ext.momentum._igt import igt_true_params
from optax_ext.momentum._igt import IgtState
from optax_ext.momentum._mars import mars
from optax_ext.momentum._mars import scale_by_mars
from optax_ext.momentum._mars import ScaleByMarsState
from optax_ext.momentum._mixture import momentum_mixture
from optax_ext.momentum._mixture import scale_by_momentum_mixture
from optax_ext.momentum._mixture import ScaleByMomentumMixtureState
from optax_ext.momentum._pnm import adapnm
from optax_ext.momentum._pnm import pnm
from optax_ext.momentum._pnm import scale_by_adapnm
from optax_ext.momentum._pnm import scale_by_pnm
from optax_ext.momentum._pnm import ScaleByAdapnmState
from optax_ext.momentum._pnm import ScaleByPnmState
from optax_ext.momentum._qhadam import qhadam
from optax_ext.momentum._qhadam import scale_by_qhadam
from optax_ext.momentum._qhadam import ScaleByQhadamState
from optax_ext.momentum._qhm import qhm
from optax_ext.momentum._qhm import scale_by_qhm
from optax_ext.momentum._ranger21 import ranger21
from optax_ext.momentum._ranger21 import ranger21_schedule
from optax_ext.momentum._xgrad import xgrad
from optax_ext.momentum._xgrad import xgrad_adam
from optax_ext.momentum._xgrad import xgrad_adamw
from optax_ext.momentum._xgrad import xgrad_sgd
from optax_ext.momentum._xgrad import xgrad_true_params
from optax_ext.momentum._xgrad import XgradState

__all__ = (
  'AdemamixWithWarmupState',
  'CautiousState',
  'ClusterIgtState',
  'IgtState',
  'ScaleByAdapnmState',
  'ScaleByClusterMomentumState',
  'ScaleByGramsState',
  'ScaleByMarsState',
  'ScaleByMomentumMixtureState',
  'ScaleByPnmState',
  'ScaleByQhadamState',
  'XgradState',
  'adapnm',
  'ademamix_alpha_schedule',
  'ademamix_beta3_schedule',
  'ademamix_with_warmup',
  'aggmo',
  'aggmo_decays',
  'cautious',
  'cluster_igt',
  'grams',
  'igt',
  'igt_adam',
  'igt_sgd',
  'igt_true_params',
  'mars',
  'momentum_mixture',
  'pnm',
  'qhadam',
  'qhm',
  'ranger21',
  'ranger21_schedule',
  'scale_by_adapnm',
  'scale_by_aggmo',
  'scale_by_cluster_momentum',
  'scale_by_grams',
  'scale_by_mars',
  'scale_by_momentum_mixture',
  'scale_by_pnm',
  'scale_by_qhadam',
  'scale_by_qhm',
  'xgrad',
  'xgrad_adam',
  'xgrad_adamw',
  'xgrad_sgd',
  'xgrad_true_params',
)
