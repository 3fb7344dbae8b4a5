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

from optax_ext._src import axes as axes_lib


def solve_dtype(dtype) -> jnp.dtype:
  """The dtype the ``K x K`` problems are solved in: float64 for float64
  input, float32 otherwise (bfloat16/float16 Gramians are too coarse)."""
  return jnp.dtype(
    jnp.float64 if jnp.dtype(dtype) == jnp.float64 else jnp.float32
  )


def solve_dtype_gramian(gramian: jax.Array) -> jax.Array:
  """``gramian`` as an array of :func:`solve_dtype`."""
  g = jnp.asarray(gramian)
  return g.astype(solve_dtype(g.dtype))


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
  passive set, stepping back to the boundary and dropping indices that
  would go negative. Exact (to the solve's rounding) for positive-definite
  ``G`` after finitely many steps; capped at ``max_iters`` (default
  ``3 K + 3``) solves.

  One problem (``lower`` of shape ``[K]``) factorises the passive block at
  every solve, :math:`O(K^3)`. A batch of problems with one ``G``
  (``lower`` of shape ``[Q, K]``: UPGrad's ``K`` projections) runs as one
  loop that keeps the inverse of each passive block (zero outside it),
  updated as indices join (a bordering step) or leave (a rank-one
  downdate), each :math:`O(K^2)`; a solve is a product with it plus one
  step of iterative refinement. Updated inverses lose accuracy when ``G``
  is ill-conditioned in float32 (a ridge near ``1e-7``): a problem whose
  solution misses its KKT conditions by more than ``1e-5`` of its scale is
  solved again by factorisations.

  Args:
    gramian: ``[K, K]`` symmetric positive-definite (add a ridge).
    lower: ``[K]`` lower bounds :math:`u`, or ``[Q, K]``: ``Q`` problems.
    max_iters: cap on the number of linear solves (per problem).

  Returns:
    The minimiser :math:`v^*`, shaped like ``lower``.
  """
  k = gramian.shape[0]
  dtype = gramian.dtype
  max_iters = 3 * k + 3 if max_iters is None else max_iters
  if jnp.ndim(lower) == 1:
    return _box_qp_factorised(gramian, lower, max_iters)
  u = jnp.asarray(lower, dtype)  # [Q, K]
  v = _box_qp_bordered(gramian, u, max_iters)
  # KKT: v >= u (by construction), G v >= 0, (G v) . (v - u) = 0.
  grad = jnp.matmul(v, gramian, precision=lax.Precision.HIGHEST)
  scale = 1 + jnp.max(jnp.abs(u @ gramian), axis=1)
  bad = (
    (jnp.min(grad, axis=1) < -1e-5 * scale)
    | (jnp.max(jnp.abs(grad * (v - u)), axis=1) > 1e-5 * scale)
    | ~jnp.all(jnp.isfinite(v), axis=1)
  )
  v = lax.cond(
    jnp.any(bad),
    lambda: jnp.where(
      bad[:, None],
      jax.vmap(lambda w: _box_qp_factorised(gramian, w, max_iters))(u),
      v,
    ),
    lambda: v,
  )
  return v


def _box_qp_bordered(
  gramian: jax.Array, u: jax.Array, max_iters: int
) -> jax.Array:
  """:func:`box_qp` for ``[Q, K]`` lower bounds with the bordered inverse
  of the passive block."""
  k = gramian.shape[0]
  dtype = gramian.dtype
  q = u.shape[0]
  linear = u @ gramian  # the objective in z: 1/2 z'Gz + (Gu)'z (G = G')
  tol = 10 * jnp.finfo(dtype).eps * (1 + jnp.max(jnp.abs(linear), axis=1))
  hi = lax.Precision.HIGHEST

  def times(inv, x):  # [Q, K, K] @ [Q, K]
    return jnp.einsum('qij,qj->qi', inv, x, precision=hi)

  def solve(inv, passive):
    """The equality-constrained minimiser on the passive set, ``[Q, K]``."""
    rhs = jnp.where(passive, -linear, 0)
    x = times(inv, rhs)
    residual = jnp.where(passive, rhs - jnp.matmul(x, gramian, precision=hi), 0)
    return x + times(inv, residual)

  def join(inv, t):
    """Borders the inverse with index ``t`` (not passive)."""
    col = gramian[t]  # [Q, K]: column t (G = G')
    m_col = times(inv, col)  # zero at t and outside the passive set
    schur = gramian[t, t] - jnp.sum(col * m_col, axis=1)
    schur = jnp.maximum(schur, jnp.finfo(dtype).tiny)
    w = m_col - jax.nn.one_hot(t, k, dtype=dtype)
    return inv + w[:, :, None] * w[:, None, :] / schur[:, None, None]

  def leave(inv, gone):
    """Removes the indices ``gone`` (``[Q, K]`` bool) from the inverse."""

    def body(c):
      inv, gone = c
      j = jnp.argmax(gone, axis=1)
      any_ = jnp.any(gone, axis=1)
      m_j = jnp.take_along_axis(inv, j[:, None, None], 2)[..., 0]  # [Q, K]
      pivot = jnp.take_along_axis(m_j, j[:, None], 1)[:, 0]
      pivot = jnp.where(any_, pivot, 1.0)
      down = m_j[:, :, None] * m_j[:, None, :] / pivot[:, None, None]
      inv = jnp.where(any_[:, None, None], inv - down, inv)
      return inv, gone & (jnp.arange(k)[None] != j[:, None])

    inv, _ = lax.while_loop(lambda c: jnp.any(c[1]), body, (inv, gone))
    return inv

  def inner_body(c):
    (z, passive, inv), it, settled = c
    s = solve(inv, passive)
    feasible = jnp.all(jnp.where(passive, s > 0, True), axis=1)
    # Step from z towards s until the first passive entry hits zero.
    blocking = passive & (s <= 0)
    ratios = jnp.where(blocking, z / jnp.maximum(z - s, 1e-30), jnp.inf)
    alpha = jnp.clip(jnp.min(ratios, axis=1), 0.0, 1.0)[:, None]
    z_step = z + alpha * (s - z)
    active = (~settled & (it < max_iters))[:, None]
    z_new = jnp.where(feasible[:, None], s, z_step)
    keep = jnp.where(
      feasible[:, None], passive, passive & (z_step > tol[:, None])
    )
    z_new = jnp.where(keep, jnp.maximum(z_new, 0), 0)
    keep = jnp.where(active, keep, passive)
    inv = leave(inv, passive & ~keep)
    state = (jnp.where(active, z_new, z), keep, inv)
    return (
      state,
      it + active[:, 0].astype(jnp.int32),
      settled | feasible | ~active[:, 0],
    )

  def inner_cond(c):
    _, it, settled = c
    return jnp.any(~settled & (it < max_iters))

  def outer_body(carry):
    (z, passive, inv), it, done = carry
    descent = -(jnp.matmul(z, gramian, precision=hi) + linear)
    candidates = jnp.where(passive, -jnp.inf, descent)
    t = jnp.argmax(candidates, axis=1)
    best = jnp.take_along_axis(candidates, t[:, None], 1)[:, 0]
    stop = done | (best <= tol) | (it >= max_iters)
    go = ~stop
    inv = jnp.where(go[:, None, None], join(inv, t), inv)
    passive = passive | (go[:, None] & (jnp.arange(k)[None] == t[:, None]))
    state, it, _ = lax.while_loop(
      inner_cond, inner_body, ((z, passive, inv), it, stop)
    )
    return state, it, stop

  def outer_cond(carry):
    _, it, done = carry
    return jnp.any(~done & (it < max_iters))

  init = (
    jnp.zeros((q, k), dtype),
    jnp.zeros((q, k), bool),
    jnp.zeros((q, k, k), dtype),
  )
  # A loop's carry varies like its data (a per-device Gramian under
  # jax.shard_map): constants are marked so, or the carry types differ.
  carry = axes_lib.vary_like(
    (init, jnp.zeros((q,), jnp.int32), jnp.zeros((q,), bool)),
    (gramian, u),
  )
  ((z, _, _), _, _) = lax.while_loop(outer_cond, outer_body, carry)
  return u + z


def _box_qp_factorised(
  gramian: jax.Array, lower: jax.Array, max_iters: int
) -> jax.Array:
  """:func:`box_qp` for one problem, factorising the passive block at
  every solve (``K^3`` each): the reference the bordered form is checked
  against, and its fallback."""
  k = gramian.shape[0]
  dtype = gramian.dtype
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
      axes_lib.vary_like((z, passive, it, jnp.array(False)), gramian),
    )
    return z, passive, it, stop

  z0 = jnp.zeros(k, dtype)
  p0 = jnp.zeros(k, bool)
  # A loop's carry varies like its data (a per-device Gramian under
  # jax.shard_map): constants are marked so, or the carry types differ.
  init = axes_lib.vary_like(
    (z0, p0, jnp.int32(0), jnp.array(False)), (gramian, lower)
  )
  z, _, _, _ = lax.while_loop(outer_cond, outer_body, init)
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
  init = axes_lib.vary_like((w0, jnp.int32(0), jnp.array(1.0, dtype)), gramian)
  w, _, _ = lax.while_loop(cond, body, init)
  return w


def simplex_min_quadratic(gramian: jax.Array) -> jax.Array:
  r"""Exact :math:`\arg\min_{w \in \Delta} w^\top G w` (MGDA's problem).

  :math:`w^* = v/\mathbb 1^\top v` with :math:`v = \arg\min_{v \ge 0}
  \tfrac12 v^\top \hat G v - \mathbb 1^\top v` on the trace-normalised
  Gramian with a ``1e-7`` ridge (the same KKT system up to the scale of
  :math:`v`), solved by :func:`box_qp` after shifting the linear term into
  its lower bound. Uniform weights for a zero Gramian.
  """
  k = gramian.shape[0]
  g_hat = normalised_gramian(gramian, 0.0, 1e-7)
  shift = jnp.linalg.solve(g_hat, jnp.ones_like(g_hat[0]))
  v = jnp.maximum(box_qp(g_hat, -shift) + shift, 0.0)
  total = jnp.sum(v)
  return jnp.where(
    total > 0, v / jnp.maximum(total, 1e-30), jnp.asarray(1.0 / k, v.dtype)
  )


def projection_simplex(v: jax.Array) -> jax.Array:
  """Euclidean projection of ``v`` onto the probability simplex (sort-based).

  Written here rather than using :func:`optax.projections.projection_simplex`,
  which mixes int and float dtypes (not clean under strict promotion).
  """
  k = v.shape[0]
  # The projection commutes with shifts along the ones vector; shifting the
  # largest entry to 0 keeps the result on the simplex for huge inputs
  # (e.g. a long projected-gradient step), where v - theta would round to 0.
  v = v - jnp.max(v)
  u = jnp.sort(v)[::-1]
  css = jnp.cumsum(u) - 1.0
  idx = jnp.arange(1, k + 1, dtype=v.dtype)
  support = u - css / idx > 0
  rho = jnp.max(jnp.where(support, jnp.arange(k), 0))
  theta = css[rho] / (rho + 1).astype(v.dtype)
  return jnp.maximum(v - theta, 0.0)


def simplex_minimise(
  objective,
  w0: jax.Array,
  max_iters: int = 200,
  tol: float = 1e-9,
  memory: int = 10,
) -> jax.Array:
  r"""Spectral projected gradient (SPG) on the simplex.

  For small smooth convex problems (CAGrad's dual). The method of Birgin,
  Martinez and Raydan (2000): the direction :math:`d = P(w - \alpha g) - w`
  with the Barzilai-Borwein step :math:`\alpha = s^\top s / s^\top y`
  (clipped to ``[1e-10, 1e10]``), then a *non-monotone* backtracking line
  search (the Armijo test against the largest of the last ``memory``
  objective values, halving up to 30 times). The line search makes it
  converge from any start (without it, BB steps can settle on a
  non-optimal vertex); being non-monotone, it does not stall on the flat
  float32 objective near the optimum. Stops when the projected-gradient
  step moves less than ``tol`` (in the max norm) or after ``max_iters``
  iterations. Returns the best point visited.

  Args:
    objective: ``w [K] -> scalar``, convex and differentiable on the simplex.
    w0: a ``[K]`` point of the simplex.
    max_iters: iteration cap.
    tol: stopping size of the projected-gradient step.
    memory: how many past objective values the line search compares with.

  Returns:
    The ``[K]`` approximate minimiser, on the simplex.
  """
  value_and_grad = jax.value_and_grad(objective)
  dtype = w0.dtype
  f0, g0 = value_and_grad(w0)
  history = jnp.full((memory,), f0, dtype)
  alpha0 = jnp.asarray(1.0, dtype)

  def cond(c):
    it, step = c[0], c[-1]
    return (it < max_iters) & (step > tol)

  def body(c):
    it, w, f, g, alpha, history, w_best, f_best, _ = c
    d = projection_simplex(w - alpha * g) - w
    slope = g @ d
    f_ref = jnp.max(history)

    def ls_cond(lc):
      lam, f_new, n = lc
      return (f_new > f_ref + 1e-4 * lam * slope) & (n < 30)

    def ls_body(lc):
      lam, _, n = lc
      lam = 0.5 * lam
      return lam, objective(w + lam * d), n + 1

    lam, _, _ = lax.while_loop(
      ls_cond,
      ls_body,
      axes_lib.vary_like(
        (jnp.asarray(1.0, dtype), objective(w + d), 0), (w, d, f_ref)
      ),
    )
    w_new = w + lam * d
    f_new, g_new = value_and_grad(w_new)
    s, y = w_new - w, g_new - g
    sy = s @ y
    alpha_new = jnp.where(
      sy > 0, (s @ s) / jnp.where(sy > 0, sy, 1.0), jnp.asarray(1e10, dtype)
    )
    alpha_new = jnp.clip(alpha_new, 1e-10, 1e10).astype(dtype)
    history = history.at[it % memory].set(f_new)
    better = f_new < f_best
    w_best = jnp.where(better, w_new, w_best)
    f_best = jnp.where(better, f_new, f_best)
    step = jnp.max(jnp.abs(d))
    return (it + 1, w_new, f_new, g_new, alpha_new, history, w_best, f_best,
            step)  # fmt: skip

  init = (jnp.int32(0), w0, f0, g0, alpha0, history, w0, f0,
          jnp.asarray(jnp.inf, dtype))  # fmt: skip
  init = axes_lib.vary_like(init, (w0, f0, g0))
  # The best point visited: a non-monotone search may cycle through worse
  # points (BB steps of period 2-3 around the optimum were seen).
  return lax.while_loop(cond, body, init)[6]


def symmetric_pinv(matrix: jax.Array, rtol: float | None = None) -> jax.Array:
  """Pseudo-inverse of a symmetric PSD matrix via ``eigh`` (rank tolerance)."""
  k = matrix.shape[0]
  evals, evecs = jnp.linalg.eigh(matrix)
  rtol = k * jnp.finfo(matrix.dtype).eps if rtol is None else rtol
  keep = evals > rtol * jnp.maximum(jnp.max(evals), 0)
  inv = jnp.where(keep, 1.0 / jnp.where(keep, evals, 1.0), 0.0)
  return (evecs * inv) @ evecs.T
