"""Root conftest: makes the doctests under optax_ext/ see tests/conftest.py.

pytest only loads a conftest for the directories it collects from; importing
the test configuration here applies the 8-device, strict-promotion set-up to
``pytest --doctest-modules optax_ext`` runs as well.
"""

from tests.conftest import mesh  # noqa: F401  (re-exported fixture)
