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
"""Lookahead and Multilayer Lookahead with the slow weights in the state.

* :func:`lookahead`, :func:`lookahead_slow_params`;
* :func:`multilayer_lookahead`, :func:`multilayer_lookahead_slow_params`.
"""

from optax_ext.lookahead._lookahead import lookahead
from optax_ext.lookahead._lookahead import lookahead_slow_params
from optax_ext.lookahead._lookahead import LookaheadState
from optax_ext.lookahead._multilayer import multilayer_lookahead
from optax_ext.lookahead._multilayer import multilayer_lookahead_slow_params
from optax_ext.lookahead._multilayer import MultilayerLookaheadState

__all__ = (
  'LookaheadState',
  'MultilayerLookaheadState',
  'lookahead',
  'lookahead_slow_params',
  'multilayer_lookahead',
  'multilayer_lookahead_slow_params',
)
