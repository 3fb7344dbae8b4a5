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
"""Losses: classifier-free-guidance diffusion training losses.

* :func:`cfg_aligned_loss`: a CFG-aligned loss (our interpretation of
  Patel, Salamanca and Barba 2023; see its note);
* :func:`cfg_standard_loss`: the standard CFG training loss, for comparison;
* :func:`cfg_guided_prediction`: the guided combination samplers use;
* :func:`apg_guided_prediction`: adaptive projected guidance (APG), CFG
  without oversaturation at large guidance scales.
"""

from optax_ext.losses._apg import apg_guided_prediction
from optax_ext.losses._cfg import cfg_aligned_loss
from optax_ext.losses._cfg import cfg_guided_prediction
from optax_ext.losses._cfg import cfg_standard_loss

__all__ = (
  'apg_guided_prediction',
  'cfg_aligned_loss',
  'cfg_guided_prediction',
  'cfg_standard_loss',
)
