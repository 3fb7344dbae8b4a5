"""AGVM against a transcription of the authors' ``AgvmOptimizerHook`` (the
half sums, the per-group cosine distances, the factors' EMA and the
parameter groups' learning rates multiplied around ``torch.optim.SGD``'s
step), its properties and its errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_ext import variance

SIZES = {'backbone': 6, 'head': 4}
LABELS = {'backbone': 'backbone', 'head': 'head'}


def _population(params, k, rng):
  """Per-member gradients of a noisy quadratic, the head noisier."""
  return {
    name: np.stack(
      [
        0.5 * (params[name] - 1.0)
        + rng.normal(size=SIZES[name]) * (0.2 if name == 'backbone' else 2.0)
        for _ in range(k)
      ]
    ).astype(np.float32)
    for name in SIZES
  }


def _reference(pops, lr, *, momentum, interval, start, stop):
  """The hook's ``after_train_iter`` for SGD, ranks = members."""
  torch = pytest.importorskip('torch')
  groups = [torch.zeros(SIZES[n], requires_grad=True) for n in SIZES]
  opt = torch.optim.SGD([{'params': [g]} for g in groups], lr=lr, momentum=0.9)
  factors = [1.0] * len(groups)
  history = []
  for it, pop in enumerate(pops):
    k = next(iter(pop.values())).shape[0]
    if start <= it <= stop and it % interval == 0:
      # all_reduce within ranks [0, k//2) and [k//2, k): the two halves' means
      a = [pop[n][: k // 2].mean(0) for n in SIZES]
      b = [pop[n][k // 2 :].mean(0) for n in SIZES]
      sims = [
        1.0 - float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)))
        for x, y in zip(a, b, strict=True)
      ]
      new = [
        float(np.sqrt(np.clip((sims[0] + 1e-6) / (s + 1e-6), 0.5, 10.0)))
        for s in sims
      ]
      factors = [
        momentum * old + (1 - momentum) * n
        for old, n in zip(factors, new, strict=True)
      ]
    for g, n in zip(groups, SIZES, strict=True):
      g.grad = torch.tensor(pop[n].mean(0))
    scaled = start <= it <= stop
    if scaled:
      for group, f in zip(opt.param_groups, factors, strict=True):
        group['lr'] *= f
    opt.step()
    if scaled:
      for group, f in zip(opt.param_groups, factors, strict=True):
        group['lr'] /= f
    history.append(
      (
        {
          n: g.detach().numpy().copy()
          for n, g in zip(SIZES, groups, strict=True)
        },
        factors,
      )
    )
  return history


@pytest.mark.parametrize('k', [6, 5])
def test_agvm_matches_the_reference_hook(k):
  lr, kw = 0.1, {'momentum': 0.5, 'interval': 3, 'start': 2, 'stop': 9}
  tx = variance.agvm(
    optax.sgd(lr, momentum=0.9),
    LABELS,
    'backbone',
    momentum=kw['momentum'],
    update_interval=kw['interval'],
    start_step=kw['start'],
    stop_step=kw['stop'],
  )
  params = {n: jnp.zeros(s) for n, s in SIZES.items()}
  state = tx.init(params)
  step = jax.jit(tx.update)
  # The reference's gradients depend on its parameters: produce them from
  # ours step by step (identical up to float32 rounding, checked below).
  rng = np.random.default_rng(0)
  pops = []
  ours = []
  for _ in range(12):
    pop = _population({n: np.asarray(p) for n, p in params.items()}, k, rng)
    pops.append(pop)
    u, state = step(jax.tree.map(jnp.asarray, pop), state, params)
    params = optax.apply_updates(params, u)
    ours.append((params, np.asarray(state.factors)))
  theirs = _reference(pops, lr, **kw)
  for (p, f), (tp, tf) in zip(ours, theirs, strict=True):
    np.testing.assert_allclose(f, tf, rtol=1e-5)
    for n in SIZES:
      np.testing.assert_allclose(p[n], tp[n], rtol=1e-5, atol=1e-6)
  # The factors moved (the comparison would be vacuous otherwise).
  assert max(abs(float(f) - 1.0) for f in ours[-1][1]) > 0.05


def test_agvm_outside_its_window_is_the_inner_optimizer_on_the_mean():
  pop = {
    'backbone': jnp.arange(12.0).reshape(4, 3),
    'head': jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]),
  }
  params = jax.tree.map(lambda x: jnp.zeros(x.shape[1:]), pop)
  ref = optax.sgd(0.1, momentum=0.9)
  tx = variance.agvm(ref, LABELS, 'backbone', start_step=3, update_interval=1)
  state, ref_state = tx.init(params), ref.init(params)
  for _ in range(3):
    u, state = tx.update(pop, state, params)
    r, ref_state = ref.update(
      jax.tree.map(lambda x: x.mean(0), pop), ref_state, params
    )
    for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(r), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-6)
  np.testing.assert_array_equal(state.factors, 1.0)
  # From start_step on, the head's update is scaled (its halves disagree).
  u, state = tx.update(pop, state, params)
  r, ref_state = ref.update(
    jax.tree.map(lambda x: x.mean(0), pop), ref_state, params
  )
  np.testing.assert_allclose(u['backbone'], r['backbone'], rtol=1e-6)
  assert float(state.factors[1]) != 1.0
  np.testing.assert_allclose(u['head'], r['head'] * state.factors[1], rtol=1e-6)


def test_agvm_callable_labels_and_reference_choice():
  pop = {'a': jnp.ones((2, 3)), 'b': jnp.array([[1.0, 0.0], [0.0, 1.0]])}
  params = jax.tree.map(lambda x: x[0], pop)
  tx = variance.agvm(
    optax.sgd(1.0),
    lambda p: {'a': 'x', 'b': 'y'},
    'y',
    momentum=0.0,
    start_step=0,
  )
  _, state = tx.update(pop, tx.init(params), params)
  # Reference 'y' is fully noisy (Phi = 1), 'x' noiseless: ratio capped at
  # max_factor, i.e. sqrt(10) for 'x'.
  np.testing.assert_allclose(state.factors, [np.sqrt(10.0), 1.0], rtol=1e-6)


@pytest.mark.parametrize(
  ('kwargs', 'error', 'match'),
  [
    ({'inner': 'sgd'}, TypeError, r'agvm: `inner`'),
    ({'momentum': 1.0}, ValueError, r'agvm: `momentum`'),
    ({'update_interval': 0}, ValueError, r'agvm: `update_interval`'),
    ({'start_step': -1}, ValueError, r'agvm: `start_step`'),
    ({'min_factor': 0.0}, ValueError, r'agvm: `min_factor`'),
    (
      {'min_factor': 2.0, 'max_factor': 1.0},
      ValueError,
      r'agvm: `max_factor` must be >= `min_factor`',
    ),
  ],
)
def test_agvm_hyperparameter_errors(kwargs, error, match):
  args = {
    'inner': optax.sgd(0.1),
    'module_labels': LABELS,
    'reference_module': 'backbone',
    **kwargs,
  }
  with pytest.raises(error, match=match):
    variance.agvm(**args)


def test_agvm_trace_time_errors():
  params = {n: jnp.zeros(s) for n, s in SIZES.items()}
  with pytest.raises(ValueError, match=r"agvm: `reference_module` 'neck'"):
    variance.agvm(optax.sgd(0.1), LABELS, 'neck').init(params)
  with pytest.raises(ValueError, match=r'agvm: `module_labels` must have'):
    variance.agvm(optax.sgd(0.1), {'backbone': 'b'}, 'b').init(params)
  tx = variance.agvm(optax.sgd(0.1), LABELS, 'backbone')
  one = jax.tree.map(lambda p: p[None], params)
  with pytest.raises(ValueError, match=r'agvm: the two halves need K >= 2'):
    tx.update(one, tx.init(params), params)
