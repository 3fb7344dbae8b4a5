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
"""Scalarization: multi-task losses combined into one loss to differentiate.

Where the :mod:`optax_ext.alignment` rules combine the *gradients* of ``K``
task losses, these combine the *losses* themselves, so one ordinary
gradient follows. Each takes the vector of ``K`` task losses:

* :func:`scalarize_by_geometric_mean`: the geometric mean (GLS);
* :func:`scalarize_by_uncertainty`: uncertainty weighting with learned
  log-variances (Kendall et al. 2018);
* :func:`scalarize_by_imtl_l`: IMTL's loss balance with learned scales;
* :func:`scalarize_by_stch`: smooth Tchebycheff (Lin et al. 2024);
* :func:`scalarize_by_dwa`, :func:`dwa_init`, :func:`dwa_end_epoch`:
  dynamic weight average (Liu et al. 2019), from the epochs' mean losses;
* :func:`scalarize_by_famo`, :func:`famo_init`, :func:`famo_update`: FAMO
  (Liu et al. 2023), weights learned from how fast each loss falls;
* :func:`gradnorm_update`, :func:`gradnorm_init`, :func:`gradnorm_weights`,
  :func:`gradnorm_loss`: GradNorm (Chen et al. 2018), weights trained to
  balance the tasks' gradient norms on a shared layer.
"""

from optax_ext.scalarization._dwa import dwa_end_epoch
from optax_ext.scalarization._dwa import dwa_init
from optax_ext.scalarization._dwa import DwaState
from optax_ext.scalarization._dwa import scalarize_by_dwa
from optax_ext.scalarization._famo import famo_init
from optax_ext.scalarization._famo import famo_update
from optax_ext.scalarization._famo import FamoState
from optax_ext.scalarization._famo import scalarize_by_famo
from optax_ext.scalarization._geometric_mean import scalarize_by_geometric_mean
from optax_ext.scalarization._gradnorm import gradnorm_init
from optax_ext.scalarization._gradnorm import gradnorm_loss
from optax_ext.scalarization._gradnorm import gradnorm_update
from optax_ext.scalarization._gradnorm import gradnorm_weights
from optax_ext.scalarization._gradnorm import GradnormState
from optax_ext.scalarization._imtl_l import scalarize_by_imtl_l
from optax_ext.scalarization._stch import scalarize_by_stch
from optax_ext.scalarization._uncertainty import scalarize_by_uncertainty

__all__ = (
  'DwaState',
  'FamoState',
  'GradnormState',
  'dwa_end_epoch',
  'dwa_init',
  'famo_init',
  'famo_update',
  'gradnorm_init',
  'gradnorm_loss',
  'gradnorm_update',
  'gradnorm_weights',
  'scalarize_by_dwa',
  'scalarize_by_famo',
  'scalarize_by_geometric_mean',
  'scalarize_by_imtl_l',
  'scalarize_by_stch',
  'scalarize_by_uncertainty',
)
