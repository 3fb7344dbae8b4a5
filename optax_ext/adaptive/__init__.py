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
"""Adaptive step-size methods beside Adam.

* diffGrad (:func:`scale_by_diffgrad`, :func:`diffgrad`): Adam damped by a
  friction coefficient from the change of the gradient;
* AdamP / SGDP (:func:`scale_by_adamp`, :func:`adamp`,
  :func:`scale_by_sgdp`, :func:`sgdp`): no radial step (and less decay) for
  scale-invariant weights;
* SGD-SaI (:func:`scale_by_sgd_sai`, :func:`sgd_sai`): momentum SGD with
  per-tensor rates from the first gradient's signal-to-noise ratio;
* Gravity (:func:`scale_by_gravity`, :func:`gravity`).
"""

from optax_ext.adaptive._adamp import adamp
from optax_ext.adaptive._adamp import scale_by_adamp
from optax_ext.adaptive._adamp import scale_by_sgdp
from optax_ext.adaptive._adamp import ScaleByAdampState
from optax_ext.adaptive._adamp import ScaleBySgdpState
from optax_ext.adaptive._adamp import sgdp
from optax_ext.adaptive._diffgrad import diffgrad
from optax_ext.adaptive._diffgrad import scale_by_diffgrad
from optax_ext.adaptive._diffgrad import ScaleByDiffgradState
from optax_ext.adaptive._gravity import gravity
from optax_ext.adaptive._gravity import scale_by_gravity
from optax_ext.adaptive._gravity import ScaleByGravityState
from optax_ext.adaptive._sgd_sai import scale_by_sgd_sai
from optax_ext.adaptive._sgd_sai import ScaleBySgdSaiState
from optax_ext.adaptive._sgd_sai import sgd_sai

__all__ = (
  'ScaleByAdampState',
  'ScaleByDiffgradState',
  'ScaleByGravityState',
  'ScaleBySgdSaiState',
  'ScaleBySgdpState',
  'adamp',
  'diffgrad',
  'gravity',
  'scale_by_adamp',
  'scale_by_diffgrad',
  'scale_by_gravity',
  'scale_by_sgd_sai',
  'scale_by_sgdp',
  'sgd_sai',
  'sgdp',
)
