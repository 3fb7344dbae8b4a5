"""Root conftest: applies tests/conftest.py to the doctests under optax_ext/.

pytest only applies a conftest's fixtures to the directory it sits in;
importing them here makes the 8-device, strict-promotion set-up (and its
standard-promotion exception for doctests) hold for
``pytest --doctest-modules optax_ext`` as well.
"""

from tests.conftest import _promotion_mode  # noqa: F401  (autouse fixture)
from tests.conftest import mesh  # noqa: F401  (re-exported fixture)
