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
"""optax_ext: gradient-population aggregators and optimisers for optax.

Public API:

* :mod:`optax_ext.population`: maths over a gradient population;
* :mod:`optax_ext.aggregation`: aggregators (population -> updates);
* :mod:`optax_ext.momentum`: momentum mixtures (QHM, AggMo, MARS, PNM, ...);
* :mod:`optax_ext.adaptive`: adaptive step sizes (diffGrad, AdamP, ...);
* :mod:`optax_ext.robust`: robust and clipped aggregation;
* :mod:`optax_ext.variance`: GSNR variance reduction (VRGD), the gradient
  noise scale, adaptive batch-size tests, AGVM;
* :mod:`optax_ext.alignment`: multi-task aggregation (UPGrad, MGDA, CAGrad,
  ...) and gradient alignment (GradAlign, FedGA, Bloop, ProGrad, DGA);
* :mod:`optax_ext.lookahead`: Lookahead and Multilayer Lookahead;
* :mod:`optax_ext.pruning`: DPF, dynamic pruning with feedback;
* :mod:`optax_ext.losses`: CFG diffusion training losses;
* :mod:`optax_ext.privacy`: DP-SGD (per-member clipping, Gaussian noise,
  accounting);
* :mod:`optax_ext.scalarization`: multi-task losses combined before
  differentiating (GradNorm, uncertainty weighting, FAMO, ...);
* :func:`cite`, :func:`bibliography`: BibTeX of the papers behind a name;
* the most used names re-exported at the top level.
"""

from optax_ext import adaptive
from optax_ext import aggregation
from optax_ext import alignment
from optax_ext import lookahead
from optax_ext import losses
from optax_ext import momentum
from optax_ext import population
from optax_ext import privacy
from optax_ext import pruning
from optax_ext import robust
from optax_ext import scalarization
from optax_ext import variance
from optax_ext._src.citations import bibliography
from optax_ext._src.citations import citation_keys
from optax_ext._src.citations import cite
from optax_ext.aggregation import aggregate_by_mean
from optax_ext.aggregation import aggregate_by_sum
from optax_ext.aggregation import Aggregator
from optax_ext.aggregation import grad_population
from optax_ext.aggregation import PopulationAxes

__version__ = '0.1.0.dev0'

__all__ = (
  'Aggregator',
  'PopulationAxes',
  'adaptive',
  'aggregate_by_mean',
  'aggregate_by_sum',
  'aggregation',
  'alignment',
  'bibliography',
  'citation_keys',
  'cite',
  'grad_population',
  'lookahead',
  'losses',
  'momentum',
  'population',
  'privacy',
  'pruning',
  'robust',
  'scalarization',
  'variance',
)
