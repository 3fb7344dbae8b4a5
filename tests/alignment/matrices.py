"""Named families of task Jacobians for the multi-task property tests.

Our own NumPy samplers, in the spirit of TorchJD's test inputs: a random
``[K, D]`` matrix of a given rank whose left singular vectors are chosen so
that the matrix is (or is not) *stationary*:

* ``normal``: random left and right singular vectors;
* ``strong``: a positive ``v`` with ``v^T J = 0`` (strongly stationary: a
  positive combination of the tasks cancels, so no update helps every task);
* ``weak``: a non-negative, non-zero ``v`` with ``v^T J = 0`` but no positive
  one (strictly weakly stationary);
* ``non_weak``: a positive left singular vector with a positive singular
  value, so no non-negative combination cancels.
"""

import numpy as np


def _orthonormal_complement(q: np.ndarray, rng) -> np.ndarray:
  """``[m, m - r]`` orthonormal columns orthogonal to the ``r`` of ``q``."""
  m, r = q.shape
  a = rng.normal(size=(m, m - r))
  a -= q @ (q.T @ a)
  out, _ = np.linalg.qr(a)
  return out


def _orthonormal(m: int, rng) -> np.ndarray:
  return _orthonormal_complement(np.zeros((m, 0)), rng)


def _compose(left: np.ndarray, n: int, rank: int, rng) -> np.ndarray:
  right = _orthonormal(n, rng)[:rank]
  s = np.abs(rng.normal(size=rank)) + 0.1
  return (left[:, :rank] * s) @ right


def normal(m: int, n: int, rank: int, rng) -> np.ndarray:
  return _compose(_orthonormal(m, rng), n, rank, rng)


def strong(m: int, n: int, rank: int, rng) -> np.ndarray:
  assert 0 < rank <= min(m - 1, n)
  v = np.abs(rng.normal(size=(m, 1))) + 0.1
  v /= np.linalg.norm(v)
  return _compose(_orthonormal_complement(v, rng), n, rank, rng)


def weak(m: int, n: int, rank: int, rng) -> np.ndarray:
  """``v^T J = 0`` for ``v >= 0`` supported on part of the tasks only, and a
  non-negative left singular vector ``v'`` on the other part."""
  assert 0 < rank <= min(m - 1, n)
  u = np.abs(rng.normal(size=m)) + 0.1
  split = rng.integers(1, m)
  order = rng.permutation(m)
  v, v_prime = np.zeros(m), np.zeros(m)
  v[order[:split]] = u[order[:split]] / np.linalg.norm(u[order[:split]])
  v_prime[order[split:]] = u[order[split:]] / np.linalg.norm(u[order[split:]])
  first = np.stack([v, v_prime], axis=1)
  basis = np.hstack([first, _orthonormal_complement(first, rng)])
  return _compose(basis[:, 1:], n, rank, rng)


def non_weak(m: int, n: int, rank: int, rng) -> np.ndarray:
  assert rank > 0
  u = np.abs(rng.normal(size=(m, 1))) + 0.1
  u /= np.linalg.norm(u)
  basis = np.hstack([u, _orthonormal_complement(u, rng)])
  return _compose(basis, n, rank, rng)


SAMPLERS = {
  'normal': normal,
  'strong': strong,
  'weak': weak,
  'non_weak': non_weak,
}

NORMAL_DIMS = [
  (2, 3, 2),
  (4, 3, 1),
  (4, 3, 2),
  (4, 3, 3),
  (9, 11, 5),
  (9, 11, 9),
  (20, 10, 10),
]
STATIONARY_DIMS = [
  (20, 10, 10),
  (20, 10, 5),
  (20, 10, 1),
  (20, 100, 1),
  (20, 100, 19),
  (4, 3, 3),
  (4, 3, 2),
]
SCALES = [1e-10, 1e-5, 1.0, 1e5, 1e10]


def family(seed: int = 0):
  """``[(name, matrix)]``: every sampler over its dimensions (float64)."""
  rng = np.random.default_rng(seed)
  out = []
  for m, n, r in NORMAL_DIMS:
    out.append((f'normal{m}x{n}r{r}', normal(m, n, r, rng)))
  for kind in ('strong', 'weak', 'non_weak'):
    for m, n, r in STATIONARY_DIMS:
      if kind != 'non_weak' and r > min(m - 1, n):
        continue
      out.append((f'{kind}{m}x{n}r{r}', SAMPLERS[kind](m, n, r, rng)))
  return out


def scaled(seed: int = 1):
  """``[(name, matrix)]``: the normal family at every scale."""
  rng = np.random.default_rng(seed)
  base = [
    (f'normal{m}x{n}r{r}', normal(m, n, r, rng)) for m, n, r in NORMAL_DIMS
  ]
  return [(f'{name}*{s:g}', s * j) for s in SCALES for name, j in base]
