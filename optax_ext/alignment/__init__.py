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
"""Gradient alignment and multi-task aggregation.

* Multi-task aggregators (Gramian weightings): :func:`aggregate_by_upgrad`,
  :func:`aggregate_by_dualproj`, :func:`aggregate_by_mgda`,
  :func:`aggregate_by_pcgrad`, :func:`aggregate_by_cagrad`,
  :func:`aggregate_by_aligned_mtl`, :func:`aggregate_by_imtl_g`,
  :func:`aggregate_by_config`, :func:`aggregate_by_nash_mtl`,
  :func:`aggregate_by_constant`, :func:`aggregate_by_random`,
  :func:`aggregate_by_graddrop`, :func:`aggregate_by_gradvac`, and the
  general :func:`aggregate_by_weighting` with the ``*_weighting`` functions
  (``K x K`` Gramian -> ``K`` weights); Krum and the trimmed mean are in
  :mod:`optax_ext.robust`;
* task populations from a vector loss: :func:`task_jacobian`,
  :func:`task_gramian` (lean) and :func:`gramian_weighted_grad`; a shared
  trunk's rows only with ``task_jacobian(..., shared=)`` and
  :func:`aggregate_shared_trunk`;
* :func:`conflict_report`: pairwise cosines and conflict counts;
* :func:`bloop`: auxiliary gradients projected off an EMA of the main one;
* :func:`prograd`: the task gradient, its conflict with a general-direction
  gradient projected out (ProGrad);
* DGA (:func:`dga_mixture`, :func:`dga_alignment_scores`,
  :func:`domain_alignment_scores`): online data-mixture weights;

* :func:`gradalign_grad`, :func:`gradalign_value_and_grad`: the GradAlign
  oracle over a worker population;
* :func:`fedga_grad`: a FedGA round as a server pseudo-gradient;
* :func:`gradalign_displacement`, :func:`gradient_variance`: the pieces (the
  displacement and the implicit regulariser's variance).
"""

from optax_ext.alignment._bloop import bloop
from optax_ext.alignment._bloop import BloopState
from optax_ext.alignment._cagrad import aggregate_by_cagrad
from optax_ext.alignment._cagrad import cagrad_weighting
from optax_ext.alignment._dga import dga_alignment_scores
from optax_ext.alignment._dga import dga_mixture
from optax_ext.alignment._dga import DgaMixtureState
from optax_ext.alignment._dga import domain_alignment_scores
from optax_ext.alignment._dga import MixtureController
from optax_ext.alignment._diagnostics import conflict_report
from optax_ext.alignment._diagnostics import ConflictReport
from optax_ext.alignment._gradalign import fedga_grad
from optax_ext.alignment._gradalign import gradalign_displacement
from optax_ext.alignment._gradalign import gradalign_grad
from optax_ext.alignment._gradalign import gradalign_value_and_grad
from optax_ext.alignment._gradalign import gradient_variance
from optax_ext.alignment._graddrop import aggregate_by_graddrop
from optax_ext.alignment._gradvac import aggregate_by_gradvac
from optax_ext.alignment._gradvac import AggregateByGradvacState
from optax_ext.alignment._gradvac import gradvac_weighting
from optax_ext.alignment._jacobian import gramian_weighted_grad
from optax_ext.alignment._jacobian import task_gramian
from optax_ext.alignment._jacobian import task_jacobian
from optax_ext.alignment._mgda import aggregate_by_mgda
from optax_ext.alignment._mgda import mgda_weighting
from optax_ext.alignment._nash_mtl import aggregate_by_nash_mtl
from optax_ext.alignment._nash_mtl import nash_mtl_weighting
from optax_ext.alignment._pcgrad import aggregate_by_pcgrad
from optax_ext.alignment._pcgrad import pcgrad_weighting
from optax_ext.alignment._prograd import prograd
from optax_ext.alignment._shared_trunk import aggregate_shared_trunk
from optax_ext.alignment._shared_trunk import AggregateSharedTrunkState
from optax_ext.alignment._spectral import aggregate_by_aligned_mtl
from optax_ext.alignment._spectral import aggregate_by_config
from optax_ext.alignment._spectral import aggregate_by_imtl_g
from optax_ext.alignment._spectral import aligned_mtl_weighting
from optax_ext.alignment._spectral import config_weighting
from optax_ext.alignment._spectral import imtl_g_weighting
from optax_ext.alignment._upgrad import aggregate_by_dualproj
from optax_ext.alignment._upgrad import aggregate_by_upgrad
from optax_ext.alignment._upgrad import dualproj_weighting
from optax_ext.alignment._upgrad import upgrad_weighting
from optax_ext.alignment._weighting import aggregate_by_constant
from optax_ext.alignment._weighting import aggregate_by_random
from optax_ext.alignment._weighting import aggregate_by_weighting
from optax_ext.alignment._weighting import AggregateByWeightingState
from optax_ext.alignment._weighting import constant_weighting
from optax_ext.alignment._weighting import mean_weighting
from optax_ext.alignment._weighting import random_weighting
from optax_ext.alignment._weighting import sum_weighting

__all__ = (
  'AggregateByGradvacState',
  'AggregateByWeightingState',
  'AggregateSharedTrunkState',
  'BloopState',
  'ConflictReport',
  'DgaMixtureState',
  'MixtureController',
  'aggregate_by_aligned_mtl',
  'aggregate_by_cagrad',
  'aggregate_by_config',
  'aggregate_by_constant',
  'aggregate_by_dualproj',
  'aggregate_by_graddrop',
  'aggregate_by_gradvac',
  'aggregate_by_imtl_g',
  'aggregate_by_mgda',
  'aggregate_by_nash_mtl',
  'aggregate_by_pcgrad',
  'aggregate_by_random',
  'aggregate_by_upgrad',
  'aggregate_by_weighting',
  'aggregate_shared_trunk',
  'aligned_mtl_weighting',
  'bloop',
  'cagrad_weighting',
  'config_weighting',
  'conflict_report',
  'constant_weighting',
  'dga_alignment_scores',
  'dga_mixture',
  'domain_alignment_scores',
  'dualproj_weighting',
  'fedga_grad',
  'gradalign_displacement',
  'gradalign_grad',
  'gradalign_value_and_grad',
  'gradient_variance',
  'gradvac_weighting',
  'gramian_weighted_grad',
  'imtl_g_weighting',
  'mean_weighting',
  'mgda_weighting',
  'nash_mtl_weighting',
  'pcgrad_weighting',
  'prograd',
  'random_weighting',
  'sum_weighting',
  'task_gramian',
  'task_jacobian',
  'upgrad_weighting',
)
