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
"""Small on-device solvers for the ``K x K`` problems of task weightings.

Everything here is pure ``jax.numpy``/``lax`` with static iteration caps: no
host callbacks, no external solvers, jit- and vmap-able.
"""

import jax
from jax import lax
import jax.numpy as jnp


def normalised_gramian(
  gramian: jax.Array, norm_eps: float, reg_eps: float
) -> jax.Array:
  """``G / tr(G) + reg_eps * I``, with ``G / tr(G)`` as 0 below ``norm_eps``.

  Weights computed from it are invariant to a global scale of the Jacobian.
  """
  k = gramian.shape[0]
  trace = jnp.trace(gramian)
  scaled = jnp.where(trace >= norm_eps, gramian / jnp.maximum(trace, 1e-30), 0)
  return scaled + reg_eps * jnp.eye(k, dtype=gramian.dtype)


def box_qp(
  gramian: jax.Array, lower: jax.Array, max_iters: int | None = None
) -> jax.Array:
  r"""Solves :math:`\min_{v \ge u} \tfrac12 v^\top G v` for PD ``G``.

  Lawson-Hanson active-set method in Gramian form on :math:`v = u + z`,
  :math:`z \ge 0`: the passive set grows by the index whose gradient is most
  negative; each inner step solves the equality-constrained problem on the
  passive set as a masked full-size solve, stepping back to the boundary
  and dropping indices that would go negative. Exact (to the solve's
  rounding) for positive-definite ``G`` after finitely many steps; capped at
  ``max_iters`` (default ``3 K``) solves.

  Args:
    gramian: ``[K, K]`` symmetric positive-definite (add a ridge).
    lower: ``[K]`` lower bounds :math:`u`.
    max_iters: cap on the number of linear solves.

  Returns:
    The ``[K]`` minimiser :math:`v^*`.
  """
  k = gramian.shape[0]
  dtype = gramian.dtype
  max_iters = 3 * k + 3 if max_iters is None else max_iters
  linear = gramian @ lower  # the objective in z: 1/2 z'Gz + (Gu)'z
  eye = jnp.eye(k, dtype=dtype)
  tol = 10 * jnp.finfo(dtype).eps * (1 + jnp.max(jnp.abs(linear)))

  def restricted_solve(passive):
    a = jnp.where(passive[:, None] & passive[None, :], gramian, eye)
    s = jnp.linalg.solve(a, jnp.where(passive, -linear, 0))
    return jnp.where(passive, s, 0)

  def outer_cond(carry):
    z, passive, it, done = carry
    return (~done) & (it < max_iters)

  def outer_body(carry):
    z, passive, it, _ = carry
    descent = -(gramian @ z + linear)
    candidates = jnp.where(passive, -jnp.inf, descent)
    t = jnp.argmax(candidates)
    stop = candidates[t] <= tol
    passive = jnp.where(stop, passive, passive.at[t].set(True))

    def inner_cond(c):
      z, passive, it, settled = c
      return (~settled) & (it < max_iters)

    def inner_body(c):
      z, passive, it, _ = c
      s = restricted_solve(passive)
      feasible = jnp.all(jnp.where(passive, s > 0, True))
      # Step from z towards s until the first passive entry hits zero.
      blocking = passive & (s <= 0)
      ratios = jnp.where(blocking, z / jnp.maximum(z - s, 1e-30), jnp.inf)
      alpha = jnp.clip(jnp.min(ratios), 0.0, 1.0)
      z_step = z + alpha * (s - z)
      z_new = jnp.where(feasible, s, z_step)
      passive_new = jnp.where(feasible, passive, passive & (z_step > tol))
      z_new = jnp.where(passive_new, jnp.maximum(z_new, 0), 0)
      return z_new, passive_new, it + 1, feasible

    z, passive, it, _ = lax.cond(
      stop,
      lambda c: c,
      lambda c: lax.while_loop(inner_cond, inner_body, c),
      (z, passive, it, jnp.array(False)),
    )
    return z, passive, it, stop

  z0 = jnp.zeros(k, dtype)
  p0 = jnp.zeros(k, bool)
  z, _, _, _ = lax.while_loop(
    outer_cond, outer_body, (z0, p0, jnp.int32(0), jnp.array(False))
  )
  return lower + z


def simplex_min_quadratic_fw(
  gramian: jax.Array, max_iters: int = 100, epsilon: float = 1e-3
) -> jax.Array:
  r"""Frank-Wolfe for :math:`\min_{w \in \Delta} w^\top G w` (MGDA).

  TorchJD's iteration: from :math:`w = \mathbb 1/K`, move towards the vertex
  :math:`e_t`, :math:`t = \arg\min (Gw)_t`, with the exact line-search step
  :math:`\gamma`; stop when :math:`\gamma <` ``epsilon`` or after
  ``max_iters`` steps. Exact for ``K = 2``.
  """
  k = gramian.shape[0]
  dtype = gramian.dtype

  def cond(c):
    _, it, gamma = c
    return (it < max_iters) & (gamma >= epsilon)

  def body(c):
    w, it, _ = c
    gw = gramian @ w
    t = jnp.argmin(gw)
    a, b, cc = gw[t], w @ gw, gramian[t, t]
    gamma = jnp.where(
      cc <= a,
      1.0,
      jnp.where(b <= a, 0.0, (b - a) / jnp.maximum(b + cc - 2 * a, 1e-30)),
    ).astype(dtype)
    w = (1 - gamma) * w + gamma * jax.nn.one_hot(t, k, dtype=dtype)
    return w, it + 1, gamma

  w0 = jnp.full((k,), 1.0 / k, dtype)
  w, _, _ = lax.while_loop(
    cond, body, (w0, jnp.int32(0), jnp.array(1.0, dtype))
  )
  return w


def projection_simplex(v: jax.Array) -> jax.Array:
  """Euclidean projection of ``v`` onto the probability simplex (sort-based).

  Written here rather than using ``optax.projections.projection_simplex``,
  which mixes int and float dtypes (not clean under strict promotion).
  """
  k = v.shape[0]
  u = jnp.sort(v)[::-1]
  css = jnp.cumsum(u) - 1.0
  idx = jnp.arange(1, k + 1, dtype=v.dtype)
  support = u - css / idx > 0
  rho = jnp.max(jnp.where(support, jnp.arange(k), 0))
  theta = css[rho] / (rho + 1).astype(v.dtype)
  return jnp.maximum(v - theta, 0.0)


def simplex_minimise(
  objective, w0: jax.Array, max_iters: int = 200, tol: float = 1e-9
) -> jax.Array:
  """Spectral (Barzilai-Borwein) projected gradient on the simplex.

  For small smooth convex problems (CAGrad's dual). Steps are
  :math:`\\alpha = s^\\top s / s^\\top y` from the last step ``s`` and
  gradient change ``y`` (clipped to ``[1e-8, 1e8]``), without a line search:
  near the optimum float32 objective values are too flat for Armijo tests
  to resolve, while gradients still are, so this reaches ~1e-7 relative
  accuracy where an Armijo-backtracked projected gradient stalled at ~1e-4
  (measured against SciPy's SLSQP in float64 for K <= 20). Stops when an
  iterate moves less than ``tol`` or after ``max_iters`` steps.
  """
  grad_fn = jax.grad(objective)
  g0 = grad_fn(w0)
  w1 = projection_simplex(w0 - 0.1 * g0)

  def cond(c):
    return (c[3] < max_iters) & (c[4] > tol)

  def body(c):
    w_prev, g_prev, w, it, _ = c
    g = grad_fn(w)
    s, y = w - w_prev, g - g_prev
    sy = s @ y
    ok = sy > 1e-30
    alpha = jnp.where(ok, (s @ s) / jnp.where(ok, sy, 1.0), 1.0)
    alpha = jnp.clip(alpha, 1e-8, 1e8)
    w_new = projection_simplex(w - alpha * g)
    return w, g, w_new, it + 1, jnp.max(jnp.abs(w_new - w))

  init = (w0, g0, w1, jnp.int32(1), jnp.array(jnp.inf, w0.dtype))
  return lax.while_loop(cond, body, init)[2]


def symmetric_pinv(matrix: jax.Array, rtol: float | None = None) -> jax.Array:
  """Pseudo-inverse of a symmetric PSD matrix via ``eigh`` (rank tolerance)."""
  k = matrix.shape[0]
  evals, evecs = jnp.linalg.eigh(matrix)
  rtol = k * jnp.finfo(matrix.dtype).eps if rtol is None else rtol
  keep = evals > rtol * jnp.maximum(jnp.max(evals), 0)
  inv = jnp.where(keep, 1.0 / jnp.where(keep, evals, 1.0), 0.0)
  return (evecs * inv) @ evecs.T
