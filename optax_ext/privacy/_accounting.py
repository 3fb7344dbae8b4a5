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
"""Privacy accounting for DP-SGD, by Google's ``dp-accounting`` package."""

from optax_ext._src import metadata
from optax_ext._src import validation


@metadata.describe(citations=('abadi2016deep', 'mironov2017renyi'))
def dp_sgd_epsilon(
  noise_multiplier: float,
  sampling_rate: float,
  steps: int,
  delta: float,
  *,
  accountant: str = 'rdp',
) -> float:
  r"""The :math:`\epsilon` of DP-SGD after ``steps`` steps, at ``delta``.

  Each step is the Poisson-subsampled Gaussian mechanism of
  :func:`aggregate_by_private_mean` (sampling rate ``q`` = expected batch
  size / dataset size, noise multiplier :math:`\sigma`), composed
  ``steps`` times, accounted by Google's ``dp-accounting`` library: its
  Rényi-DP accountant (``'rdp'``, as TF Privacy and Opacus report) or its
  privacy-loss-distribution accountant (``'pld'``, tighter).

  Args:
    noise_multiplier: :math:`\sigma > 0`.
    sampling_rate: :math:`q \in (0, 1]`.
    steps: number of steps, ``>= 0``.
    delta: :math:`\delta \in (0, 1)`.
    accountant: ``'rdp'`` or ``'pld'``.

  Returns:
    :math:`\epsilon` as a Python float (``inf`` when the accountant finds
    no finite bound).

  Raises:
    ImportError: without ``dp-accounting`` (``pip install
      'optax_ext[privacy]'``).

  Example:
    >>> from optax_ext import privacy
    >>> eps = privacy.dp_sgd_epsilon(1.1, 256 / 60_000, 60 * 234, 1e-5)
    >>> round(eps, 1)
    2.6

  References:
    Abadi et al., `Deep Learning with Differential Privacy
    <https://arxiv.org/abs/1607.00133>`_, CCS 2016; Mironov, `Rényi
    Differential Privacy <https://arxiv.org/abs/1702.07476>`_, 2017.
  """
  where = 'dp_sgd_epsilon'
  validation.check_positive(
    where, 'noise_multiplier', noise_multiplier, allow_schedule=False
  )
  validation.check_number(
    where,
    'sampling_rate',
    sampling_rate,
    lower=0.0,
    upper=1.0,
    lower_inclusive=False,
    allow_schedule=False,
  )
  validation.check_integer(where, 'steps', steps, lower=0)
  validation.check_number(
    where,
    'delta',
    delta,
    lower=0.0,
    upper=1.0,
    lower_inclusive=False,
    upper_inclusive=False,
    allow_schedule=False,
  )
  validation.check_one_of(where, 'accountant', accountant, ('rdp', 'pld'))
  if steps == 0:
    return 0.0
  try:
    import dp_accounting  # noqa: PLC0415 - optional dependency
  except ImportError as e:
    raise ImportError(
      f"{where} needs Google's dp-accounting package: pip install "
      "'optax_ext[privacy]' (or dp-accounting)."
    ) from e
  event = dp_accounting.SelfComposedDpEvent(
    dp_accounting.PoissonSampledDpEvent(
      sampling_rate, dp_accounting.GaussianDpEvent(noise_multiplier)
    ),
    steps,
  )
  if accountant == 'rdp':
    acc = dp_accounting.rdp.RdpAccountant()
  else:
    acc = dp_accounting.pld.PLDAccountant()
  acc.compose(event)
  return float(acc.get_epsilon(delta))
