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
"""Pruning: DPF, dynamic pruning with feedback.

* :func:`dpf`, :class:`DpfState`: the wrapper (dense weights, periodic
  magnitude mask, gradients taken at the pruned point);
* :func:`dpf_pruned_params`, :func:`dpf_sparsity`: the pruned weights and the
  realised sparsity; :func:`dpf_refresh`: the mask refresh outside the
  train step;
* :func:`cubic_sparsity_schedule`: the gradual (cubic) sparsity ramp.
"""

from optax_ext.pruning._dpf import dpf
from optax_ext.pruning._dpf import dpf_pruned_params
from optax_ext.pruning._dpf import dpf_refresh
from optax_ext.pruning._dpf import dpf_sparsity
from optax_ext.pruning._dpf import DpfState
from optax_ext.pruning._sparsity_schedule import cubic_sparsity_schedule

__all__ = (
  'DpfState',
  'cubic_sparsity_schedule',
  'dpf',
  'dpf_pruned_params',
  'dpf_refresh',
  'dpf_sparsity',
)
