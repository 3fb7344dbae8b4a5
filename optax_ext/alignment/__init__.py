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
"""Gradient alignment: GradAlign and FedGA gradient oracles.

* :func:`gradalign_grad`, :func:`gradalign_value_and_grad`: the GradAlign
  oracle over a worker population;
* :func:`fedga_grad`: a FedGA round as a server pseudo-gradient;
* :func:`gradalign_displacement`, :func:`gradient_variance`: the pieces (the
  displacement and the implicit regulariser's variance).
"""

from optax_ext.alignment._gradalign import fedga_grad
from optax_ext.alignment._gradalign import gradalign_displacement
from optax_ext.alignment._gradalign import gradalign_grad
from optax_ext.alignment._gradalign import gradalign_value_and_grad
from optax_ext.alignment._gradalign import gradient_variance

__all__ = (
  'fedga_grad',
  'gradalign_displacement',
  'gradalign_grad',
  'gradalign_value_and_grad',
  'gradient_variance',
)
