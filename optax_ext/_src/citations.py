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
"""Citations: the BibTeX of the papers behind each public name."""

from collections.abc import Callable, Iterable
import functools
import importlib.resources
import re
from typing import Any

_LIBRARY = 'optax_ext2026'

# Public name -> BibTeX keys of the papers it implements (references.bib).
_KEYS: dict[str, tuple[str, ...]] = {}


def _register(keys: tuple[str, ...], *names: str) -> None:
  for name in names:
    _KEYS[name] = keys


_register(('robbins1951stochastic',), 'aggregate_by_mean')
_register(
  ('quinton2024jacobian',),
  'aggregate_by_sum',
  'aggregate_by_upgrad',
  'upgrad_weighting',
  'aggregate_by_weighting',
  'aggregate_by_constant',
  'constant_weighting',
  'mean_weighting',
  'sum_weighting',
  'task_jacobian',
  'task_gramian',
  'aggregate_shared_trunk',
  'gramian_weighted_grad',
)
_register(
  ('lopezpaz2017gradient', 'quinton2024jacobian'),
  'aggregate_by_dualproj',
  'dualproj_weighting',
)
_register(
  ('desideri2012mgda', 'sener2018multitask'),
  'aggregate_by_mgda',
  'mgda_weighting',
)
_register(('yu2020gradient',), 'aggregate_by_pcgrad', 'pcgrad_weighting')
_register(('liu2021conflict',), 'aggregate_by_cagrad', 'cagrad_weighting')
_register(
  ('senushkin2023independent',),
  'aggregate_by_aligned_mtl',
  'aligned_mtl_weighting',
)
_register(('liu2021towards',), 'aggregate_by_imtl_g', 'imtl_g_weighting')
_register(('liu2025config',), 'aggregate_by_config', 'config_weighting')
_register(
  ('navon2022multitask',), 'aggregate_by_nash_mtl', 'nash_mtl_weighting'
)
_register(('chen2020just',), 'aggregate_by_graddrop')
_register(('wang2021gradient',), 'aggregate_by_gradvac', 'gradvac_weighting')
_register(('lin2022reasonable',), 'aggregate_by_random', 'random_weighting')
_register(('hsieh2024careful',), 'bloop')
_register(
  ('fan2024dynamic', 'fan2024doge'),
  'dga_mixture',
  'dga_alignment_scores',
  'domain_alignment_scores',
)
_register(
  ('dandi2022implicit',),
  'gradalign_grad',
  'gradalign_value_and_grad',
  'gradalign_displacement',
  'gradient_variance',
  'fedga_grad',
)
_register(('zhang2019lookahead',), 'lookahead', 'lookahead_slow_params')
_register(
  ('pushkin2021multilayer', 'zhang2019lookahead'),
  'multilayer_lookahead',
  'multilayer_lookahead_slow_params',
)
_register(('patel2023bridging', 'ho2022classifier'), 'cfg_aligned_loss')
_register(('ho2022classifier',), 'cfg_standard_loss', 'cfg_guided_prediction')
_register(('sadat2025eliminating',), 'apg_guided_prediction')
_register(
  ('pagliardini2025ademamix',),
  'ademamix_alpha_schedule',
  'ademamix_beta3_schedule',
  'ademamix_with_warmup',
)
_register(('lucas2019aggregated',), 'aggmo', 'scale_by_aggmo', 'aggmo_decays')
_register(('tondji2021variance',), 'scale_by_cluster_momentum', 'cluster_igt')
_register(('cao2024grams',), 'grams', 'scale_by_grams')
_register(
  ('arnold2019reducing',), 'igt', 'igt_sgd', 'igt_adam', 'igt_true_params'
)
_register(('yuan2024mars',), 'mars', 'scale_by_mars')
_register(
  ('ma2019quasi', 'lucas2019aggregated'),
  'momentum_mixture',
  'scale_by_momentum_mixture',
)
_register(('ma2019quasi',), 'qhm', 'scale_by_qhm', 'qhadam', 'scale_by_qhadam')
_register(('dubey2020diffgrad',), 'diffgrad', 'scale_by_diffgrad')
_register(('heo2021adamp',), 'adamp', 'scale_by_adamp', 'sgdp', 'scale_by_sgdp')
_register(('xu2024nomore',), 'sgd_sai', 'scale_by_sgd_sai')
_register(('bahrami2021gravity',), 'gravity', 'scale_by_gravity')
_register(
  ('xie2021positive',), 'pnm', 'scale_by_pnm', 'adapnm', 'scale_by_adapnm'
)
_register(
  ('wright2021ranger21', 'xie2021positive', 'zhang2019lookahead'),
  'ranger21',
  'ranger21_schedule',
)
_register(
  ('guan2023xgrad',),
  'xgrad',
  'xgrad_sgd',
  'xgrad_adam',
  'xgrad_adamw',
  'xgrad_true_params',
)
_register(('lin2020dynamic',), 'dpf', 'dpf_pruned_params', 'dpf_sparsity')
_register(('zhu2017prune',), 'cubic_sparsity_schedule')
_register(('karimireddy2021learning',), 'aggregate_by_centered_clipping')
_register(
  ('yin2018byzantine',),
  'aggregate_by_coordinate_median',
  'aggregate_by_trimmed_mean',
)
_register(
  ('pillutla2022robust',),
  'aggregate_by_geometric_median',
  'geometric_median',
)
_register(('blanchard2017machine',), 'aggregate_by_krum')
_register(
  ('farhadkhani2023robust',), 'aggregate_by_nearest_neighbours', 'nna_mix'
)
_register(('allouah2023fixing',), 'mix_by_nearest_neighbours')
_register(('seetharaman2020autoclip',), 'clip_by_norm_percentile')
_register(
  ('abadi2016deep',), 'clip_each_by_global_norm', 'aggregate_by_private_mean'
)
_register(('abadi2016deep', 'mironov2017renyi'), 'dp_sgd_epsilon')
_register(('schaipp2024sgd',), 'scale_by_median_tracking', 'median_tracking')
_register(('liu2020understanding',), 'gsnr', 'gsnr_by_leaf')
_register(('liang2024cautious',), 'cautious')
_register(
  ('byrd2012sample', 'bollapragada2018adaptive'),
  'batch_size_tests',
  'aggregate_by_mean_with_batch_size_tests',
)
_register(('chennupati2019multinet',), 'scalarize_by_geometric_mean')
_register(('kendall2018multi',), 'scalarize_by_uncertainty')
_register(('liu2021towards',), 'scalarize_by_imtl_l')
_register(('lin2024smooth',), 'scalarize_by_stch')
_register(
  ('chen2018gradnorm',),
  'gradnorm_init',
  'gradnorm_loss',
  'gradnorm_update',
  'gradnorm_weights',
)
_register(('liu2019end',), 'scalarize_by_dwa', 'dwa_init', 'dwa_end_epoch')
_register(('xue2022large',), 'agvm')
_register(('zhu2023prompt',), 'prograd')
_register(('liu2023famo',), 'scalarize_by_famo', 'famo_init', 'famo_update')
_register(
  ('mccandlish2018empirical',),
  'gradient_noise_scale',
  'aggregate_by_mean_with_noise_scale',
)
_register(
  ('jiang2023accelerating', 'liu2020understanding'),
  'scale_by_gsnr',
  'aggregate_by_gsnr',
  'vr_sgd',
  'vr_adam',
  'vr_lamb',
  'vr_lars',
)
_register((_LIBRARY,), 'optax_ext')


@functools.cache
def _entries() -> dict[str, str]:
  """BibTeX key -> entry text, from the packaged ``references.bib``."""
  text = (
    importlib.resources.files('optax_ext')
    .joinpath('references.bib')
    .read_text(encoding='utf-8')
  )
  entries = {}
  for match in re.finditer(r'^@\w+\{([^,]+),.*?^\}', text, re.M | re.S):
    entries[match.group(1).strip()] = match.group(0)
  return entries


def _name_of(obj: Any) -> str:
  if isinstance(obj, str):
    return obj.rsplit('.', 1)[-1]
  name = getattr(obj, '__name__', None)
  if name is None:
    raise TypeError(
      f'cite: expected a public optax_ext function or its name, got {obj!r}.'
    )
  return name.rsplit('.', 1)[-1]


def citation_keys(obj_or_name: Callable[..., Any] | str) -> tuple[str, ...]:
  """The BibTeX keys of the papers behind a public name.

  Args:
    obj_or_name: a public function (``optax_ext.alignment.aggregate_by_upgrad``)
      or its name, qualified or not; ``'optax_ext'`` for the library itself.

  Returns:
    The keys, in the order the docstring cites them.

  Raises:
    ValueError: for a name without papers (e.g. population utilities).

  Example:
    >>> import optax_ext
    >>> optax_ext.citation_keys(optax_ext.alignment.aggregate_by_mgda)
    ('desideri2012mgda', 'sener2018multitask')
  """
  name = _name_of(obj_or_name)
  if name not in _KEYS:
    raise ValueError(
      f'cite: no paper is registered for {name!r} (utilities such as the '
      'population maths have none; cite the library with '
      "cite('optax_ext'))."
    )
  return _KEYS[name]


def cite(obj_or_name: Callable[..., Any] | str) -> str:
  """The BibTeX of the paper(s) behind a transform, loss or helper.

  Args:
    obj_or_name: a public function or its name; ``'optax_ext'`` for the
      library itself.

  Returns:
    BibTeX entries, separated by blank lines.

  Example:
    >>> import optax_ext
    >>> print(optax_ext.cite('lookahead').splitlines()[0])
    @inproceedings{zhang2019lookahead,
  """
  entries = _entries()
  return '\n\n'.join(entries[k] for k in citation_keys(obj_or_name))


def bibliography(
  *objs_or_names: Callable[..., Any] | str | Iterable[Any],
  include_library: bool = True,
) -> str:
  """The BibTeX of a whole pipeline: every paper once, then the library.

  Args:
    *objs_or_names: public functions or names (or iterables of them), e.g.
      the factories a training script chains.
    include_library: append the library's own entry.

  Returns:
    De-duplicated BibTeX entries, in first-use order.

  Example:
    >>> import optax_ext
    >>> bib = optax_ext.bibliography('aggregate_by_upgrad', 'lookahead')
    >>> for line in bib.splitlines():
    ...   if line.startswith('@'):
    ...     print(line)
    @article{quinton2024jacobian,
    @inproceedings{zhang2019lookahead,
    @misc{optax_ext2026,
  """
  keys: list[str] = []
  flat: list[Any] = []
  for item in objs_or_names:
    if isinstance(item, (list, tuple, set)):
      flat.extend(item)
    else:
      flat.append(item)
  for item in flat:
    for key in citation_keys(item):
      if key not in keys:
        keys.append(key)
  if include_library and _LIBRARY not in keys:
    keys.append(_LIBRARY)
  entries = _entries()
  return '\n\n'.join(entries[k] for k in keys)
