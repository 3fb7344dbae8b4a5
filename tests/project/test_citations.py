"""Citations: every public transform cites its papers, from the packaged bib."""

import inspect

import pytest

import optax_ext
from optax_ext._src import citations
from tests import helpers
from tests import registry


def test_every_public_factory_has_a_citation():
  for name in sorted(helpers.FACTORIES):
    keys = optax_ext.citation_keys(name)
    assert keys, name
    bib = optax_ext.cite(name)
    for key in keys:
      assert f'{{{key},' in bib, (name, key)


def test_every_registered_key_exists_in_the_bib():
  entries = citations._entries()  # noqa: SLF001
  for name, keys in citations._keys().items():  # noqa: SLF001
    for key in keys:
      assert key in entries, (name, key)


def test_registry_names_are_public_functions():
  public = {
    n
    for m in helpers.MODULES
    for n in m.__all__
    if inspect.isfunction(getattr(m, n))
  } | {'optax_ext'}
  unknown = set(citations._keys()) - public  # noqa: SLF001
  assert not unknown, unknown


def test_cite_accepts_objects_and_qualified_names():
  a = optax_ext.cite(optax_ext.alignment.aggregate_by_pcgrad)
  b = optax_ext.cite('optax_ext.alignment.aggregate_by_pcgrad')
  assert a == b and a.startswith('@inproceedings{yu2020gradient,')
  assert optax_ext.cite('optax_ext').startswith('@misc{optax_ext2026,')


def test_bibliography_deduplicates_and_appends_the_library():
  bib = optax_ext.bibliography(
    ['qhm', 'qhadam'], optax_ext.momentum.momentum_mixture
  )
  heads = [line for line in bib.splitlines() if line.startswith('@')]
  assert heads == [
    '@inproceedings{ma2019quasi,',
    '@inproceedings{lucas2019aggregated,',
    '@misc{optax_ext2026,',
  ], heads
  assert 'optax_ext2026' not in optax_ext.bibliography(
    'qhm', include_library=False
  )


def test_unknown_names_raise():
  with pytest.raises(ValueError, match="no paper is registered for 'gather'"):
    optax_ext.cite(optax_ext.population.gather)
  with pytest.raises(TypeError, match='expected a public optax_ext function'):
    optax_ext.cite(3)


def test_registry_factories_are_covered():
  for entry in registry.REGISTRY:
    assert optax_ext.citation_keys(entry.name)
