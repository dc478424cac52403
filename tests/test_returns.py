"""n-step returns and GAE against small cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from acktr_lab.returns import (
    bootstrap_truncated,
    gae_advantages,
    gae_returns,
    nstep_returns,
)

G = 0.9


def col(*xs: float) -> np.ndarray:
    """A [n_steps, 1] column (one environment)."""
    return np.array(xs, dtype=np.float64).reshape(-1, 1)


def test_nstep_no_done_bootstraps_from_last_value() -> None:
    r = col(1.0, 2.0, 3.0)
    v = col(0.0, 0.0, 0.0)
    d = col(0, 0, 0)
    last = np.array([10.0])
    # R2 = 3 + 0.9*10 = 12; R1 = 2 + 0.9*12 = 12.8; R0 = 1 + 0.9*12.8 = 12.52
    expected = col(12.52, 12.8, 12.0)
    out = nstep_returns(r, v, d, last, G)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_nstep_done_in_middle_and_at_end() -> None:
    # env 0: episode ends at t=1; env 1: episode ends at the last step.
    r = np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
    v = np.zeros_like(r)
    d = np.array([[0, 0], [1, 0], [0, 1]])
    last = np.array([10.0, 10.0])
    # env 0: R2 = 3 + 0.9*10 = 12; R1 = 2 (done); R0 = 1 + 0.9*2 = 2.8
    # env 1: R2 = 1 (done, no bootstrap); R1 = 1 + 0.9*1 = 1.9; R0 = 1 + 0.9*1.9 = 2.71
    expected = np.array([[2.8, 2.71], [2.0, 1.9], [12.0, 1.0]])
    np.testing.assert_allclose(nstep_returns(r, v, d, last, G), expected, rtol=1e-6)


def test_gae_by_hand() -> None:
    r = col(1.0, 0.0, 2.0)
    v = col(0.5, 1.0, 1.5)
    d = col(0, 1, 0)
    last = np.array([2.0])
    lam = 0.5
    # t=2: δ = 2 + 0.9*2.0 - 1.5 = 2.3;            A2 = 2.3
    # t=1: done → δ = 0 - 1.0 = -1.0;             A1 = -1.0 (no carry over the boundary)
    # t=0: δ = 1 + 0.9*1.0 - 0.5 = 1.4;            A0 = 1.4 + 0.9*0.5*(-1.0) = 0.95
    adv = col(0.95, -1.0, 2.3)
    np.testing.assert_allclose(gae_advantages(r, v, d, last, G, lam), adv, rtol=1e-6)
    np.testing.assert_allclose(gae_returns(r, v, d, last, G, lam), adv + v, rtol=1e-6)
    assert gae_returns(r, v, d, last, G, lam).dtype == np.float32


def test_truncation_via_bootstrap_truncated() -> None:
    # One env; the episode is truncated at t=1 (time limit), V(final_obs_1) = 5.
    # The next episode runs from t=2 and is still going at the end (V(s_3) = 10).
    r = col(1.0, 1.0, 1.0)
    truncated = col(0, 1, 0)
    terminated = col(0, 0, 0)
    final_values = col(np.nan, 5.0, np.nan)  # only read where truncated
    new_r = bootstrap_truncated(r, truncated, final_values, G, terminated=terminated)
    # r1 becomes 1 + 0.9*5 = 5.5
    np.testing.assert_allclose(new_r, col(1.0, 5.5, 1.0), rtol=1e-6)
    assert not np.isnan(new_r).any()
    dones = np.logical_or(truncated, terminated)
    # R2 = 1 + 0.9*10 = 10; R1 = 5.5 (done); R0 = 1 + 0.9*5.5 = 5.95
    out = nstep_returns(new_r, np.zeros_like(r), dones, np.array([10.0]), G)
    np.testing.assert_allclose(out, col(5.95, 5.5, 10.0), rtol=1e-6)
    assert np.isnan(final_values).any()  # input untouched


def test_bootstrap_truncated_skips_terminated() -> None:
    r = col(1.0, 1.0)
    new_r = bootstrap_truncated(r, col(1, 1), col(5.0, 5.0), G, terminated=col(1, 0))
    # t=0 is both terminated and truncated: a real end, no bootstrap. t=1: 1 + 4.5.
    np.testing.assert_allclose(new_r, col(1.0, 5.5), rtol=1e-6)
    # Without `terminated` every truncated step is bootstrapped.
    np.testing.assert_allclose(bootstrap_truncated(r, col(1, 0), 2.0, 0.5), col(2.0, 1.0))


def test_lambda_one_equals_nstep_and_lambda_zero_equals_td0() -> None:
    rng = np.random.default_rng(0)
    r = rng.normal(size=(7, 3))
    v = rng.normal(size=(7, 3))
    d = rng.random(size=(7, 3)) < 0.3
    last = rng.normal(size=3)
    np.testing.assert_allclose(
        gae_returns(r, v, d, last, G, 1.0), nstep_returns(r, v, d, last, G), rtol=1e-5, atol=1e-5
    )
    # TD(0): r_t + γ (1 - done_t) V_{t+1}, with V_T = last
    next_v = np.concatenate([v[1:], last[None]], axis=0)
    td0 = r + G * (1.0 - d) * next_v
    np.testing.assert_allclose(gae_returns(r, v, d, last, G, 0.0), td0, rtol=1e-5, atol=1e-5)


def test_lambda_one_by_hand() -> None:
    # Monte Carlo with bootstrap: R0 = 1 + 0.9*2 + 0.81*10 = 10.9 when nothing ends.
    r = col(1.0, 2.0)
    v = col(3.0, 4.0)
    out = gae_returns(r, v, col(0, 0), np.array([10.0]), G, 1.0)
    np.testing.assert_allclose(out, col(10.9, 11.0), rtol=1e-6)


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="dones"):
        nstep_returns(col(1.0, 2.0), col(0.0, 0.0), col(0, 0, 0), np.array([0.0]), G)
    with pytest.raises(ValueError, match="values"):
        gae_returns(col(1.0, 2.0), col(0.0), col(0, 0), np.array([0.0]), G, 0.9)
