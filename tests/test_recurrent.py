"""Recurrent policies under K-FAC (MlpLstm, MlpLnLstm, CnnLstm, CnnLnLstm): state handling,
the LSTM's curvature blocks against explicit time steps, save/load, SB2's layouts, cloning
over trajectories, and memory tasks no feedforward policy solves."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from acktr_lab import ACKTR, CnnLnLstmPolicy, CnnLstmPolicy, MlpLnLstmPolicy, MlpLstmPolicy
from acktr_lab.evaluation import evaluate
from acktr_lab.expert import ExpertDataset
from acktr_lab.kfac import ScaleAndShiftBlock, capture
from acktr_lab.kfac.blocks import make_block
from acktr_lab.pretrain import episode_lanes
from acktr_lab.recurrent import parse_lstm_net_arch

sys.path.insert(0, str(Path(__file__).parent))
import identity_envs

SPACE = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _numpy_unroll(policy: MlpLstmPolicy, observations: np.ndarray, state: np.ndarray, starts: np.ndarray) -> tuple:
    """The LSTM by hand: per step the input rows [x_t, h_{t−1}] and the outputs h_t."""
    p = {k: v.numpy().astype(np.float64) for k, v in policy.parameters.items()}
    n = policy.n_lstm
    cell, hidden = state[:, :n].copy(), state[:, n:].copy()
    rows, outputs = [], []
    for t in range(observations.shape[0]):
        x = observations[t].astype(np.float32).astype(np.float64)  # observations enter as float32
        for i in range(len(policy.layers)):
            x = np.tanh(x @ p[f"model/pi_fc{i}/w:0"] + p[f"model/pi_fc{i}/b:0"])
        keep = 1.0 - starts[t][:, None]
        cell, hidden = cell * keep, hidden * keep
        row = np.concatenate([x, hidden], axis=1)
        rows.append(row)
        z = row @ p["model/lstm1/w:0"] + p["model/lstm1/b:0"]
        i_, f_, o_, u_ = np.split(z, 4, axis=1)
        cell = _sigmoid(f_) * cell + _sigmoid(i_) * np.tanh(u_)
        hidden = _sigmoid(o_) * np.tanh(cell)
        outputs.append(hidden)
    return np.stack(rows), np.stack(outputs), np.concatenate([cell, hidden], axis=1)


def test_lstm_block_factors_equal_a_direct_computation_over_time_steps() -> None:
    """The LSTM's K-FAC block is [x_t, h_{t−1}, 1] → 4·n_lstm, its input factor pooled over
    every (time step, env) row: A = mean of āāᵀ, in float64."""
    policy = MlpLstmPolicy(SPACE, gym.spaces.Discrete(2), n_lstm=5, layers=[4], seed=0, dtype=tf.float64)
    rng = np.random.default_rng(0)
    n_steps, n_envs = 6, 3
    observations = rng.uniform(-1, 1, (n_steps, n_envs, 3))
    state = rng.normal(size=(n_envs, 10))
    starts = np.zeros((n_steps, n_envs), bool)
    starts[3, 1] = True
    with capture() as recorded:
        output = policy.unroll(tf.constant(observations), (tf.constant(state),), tf.constant(starts))
    uses = recorded.uses_of(policy.lstm)
    assert len(uses) == n_steps  # one use per time step
    rows, hidden, final_state = _numpy_unroll(policy, observations, state, starts.astype(np.float64))
    for t, use in enumerate(uses):
        np.testing.assert_allclose(use.inputs.numpy(), rows[t], rtol=1e-10, atol=1e-12)
    block = make_block(policy.lstm)
    grads = [tf.ones_like(use.preactivations) for use in uses]
    input_factor, _ = block.batch_statistics(uses, grads)
    flat = np.concatenate([rows.reshape(-1, rows.shape[-1]), np.ones((n_steps * n_envs, 1))], axis=1)
    np.testing.assert_allclose(input_factor.numpy(), flat.T @ flat / (n_steps * n_envs), rtol=1e-10)
    np.testing.assert_allclose(output.state[0].numpy(), final_state, rtol=1e-10)
    # The heads read h_t in env-major order, like every batch.
    expected_values = hidden.swapaxes(0, 1).reshape(-1, 5) @ policy.value_head.kernel.numpy() + policy.value_head.bias
    np.testing.assert_allclose(output.values.numpy(), expected_values[:, 0], rtol=1e-10)


@pytest.mark.parametrize("policy_class", [MlpLstmPolicy, MlpLnLstmPolicy])
def test_unroll_equals_stepping(policy_class: type[MlpLstmPolicy]) -> None:
    policy = policy_class(SPACE, gym.spaces.Discrete(2), n_lstm=8, seed=1)
    rng = np.random.default_rng(1)
    observations = rng.uniform(-1, 1, (5, 2, 3)).astype(np.float32)
    starts = rng.random((5, 2)) < 0.3
    state = policy.initial_state(2)
    values = []
    for t in range(5):
        step = policy.step(observations[t], state, starts[t])
        state = step.state
        values.append(step.values.numpy())
    unrolled = policy.unroll(observations, policy.initial_state(2), starts)
    np.testing.assert_allclose(
        unrolled.values.numpy(), np.stack(values).swapaxes(0, 1).reshape(-1), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(unrolled.state[0].numpy(), state[0].numpy(), rtol=1e-5, atol=1e-7)


def _model(policy: str = "MlpLstmPolicy", **kwargs: object) -> ACKTR:
    return ACKTR(policy, "CartPole-v1", n_envs=2, n_steps=5, seed=0, policy_kwargs={"n_lstm": 8}, **kwargs)


def test_predict_carries_the_state_and_masks_reset_it() -> None:
    model = _model()
    assert model.initial_state.shape == (2, 16) and not model.initial_state.any()
    obs = np.random.default_rng(2).uniform(-0.05, 0.05, (3, 4)).astype(np.float32)
    _, state = model.predict(obs, deterministic=True)  # 3 observations: the state follows them
    assert state.shape == (3, 16) and np.abs(state).sum() > 0
    a_fresh, s_fresh = model.predict(obs, state=None, deterministic=True)
    a_masked, s_masked = model.predict(obs, state=state, mask=[True, True, True], deterministic=True)
    np.testing.assert_array_equal(a_fresh, a_masked)
    np.testing.assert_allclose(s_fresh, s_masked, rtol=1e-6)
    _, s_carried = model.predict(obs, state=state, mask=[False, False, False])
    assert not np.allclose(s_carried, s_fresh)
    with pytest.raises(ValueError, match="does not fit 2 observation"):
        model.predict(obs[:2], state=state)


def test_a_batch_and_one_env_at_a_time_agree() -> None:
    model = _model()
    rng = np.random.default_rng(3)
    batch_state, single_states = None, [None, None]
    for t in range(4):
        obs = rng.uniform(-0.05, 0.05, (2, 4)).astype(np.float32)
        batch_actions, batch_state = model.predict(obs, state=batch_state, deterministic=True)
        for i in range(2):
            action, single_states[i] = model.predict(obs[i : i + 1], state=single_states[i], deterministic=True)
            assert action[0] == batch_actions[i], t
            np.testing.assert_allclose(single_states[i][0], batch_state[i], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("policy", ["MlpLstmPolicy", "MlpLnLstmPolicy"])
def test_save_load_gives_identical_actions_along_an_episode(tmp_path: Path, policy: str) -> None:
    model = _model(policy)
    model.learn(10 * 15)
    model.save(tmp_path / "lstm")
    loaded = ACKTR.load(tmp_path / "lstm")
    assert type(loaded.policy).__name__ == policy and loaded.policy.n_lstm == 8
    for name, value in model.get_parameters().items():
        np.testing.assert_array_equal(loaded.get_parameters()[name], value)
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    state_a = state_b = None
    done, start = False, True
    while not done:
        action_a, state_a = model.predict(obs, state=state_a, mask=[start], deterministic=True)
        action_b, state_b = loaded.predict(obs, state=state_b, mask=[start], deterministic=True)
        assert action_a == action_b
        np.testing.assert_array_equal(state_a, state_b)
        obs, _, terminated, truncated, _ = env.step(action_a)
        done, start = terminated or truncated, False


def test_a_snapshot_restores_the_hidden_states() -> None:
    model = _model()
    trainer = model.trainer(2_000)
    trainer.step()
    snapshot = trainer.snapshot()
    first = [trainer.step() for _ in range(3)]
    trainer.restore(snapshot)
    again = [trainer.step() for _ in range(3)]
    for a, b in zip(first, again):
        assert a.policy_loss == pytest.approx(b.policy_loss, rel=1e-5)


def test_kfac_reports_the_lstm_blocks_eigenvalues() -> None:
    model = _model()
    reports = list(model.trainer(10 * 12))
    spectra = reports[-1].fisher_eigenvalues
    assert spectra is not None and "lstm1" in spectra
    assert spectra["lstm1"].input_factor.shape == (64 + 8 + 1,) and spectra["lstm1"].gradient_factor.shape == (32,)


# -- layer norm ------------------------------------------------------------------------------
def _ln(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + 1e-5)


def _numpy_ln_unroll(policy: MlpLnLstmPolicy, observations: np.ndarray, starts: np.ndarray) -> tuple:
    """SB2's ``lnlstm`` by hand from the SB2-named parameters: per step the rows entering
    ``W_x`` and ``W_h``, and the outputs h_t."""
    p = {k: v.numpy().astype(np.float64) for k, v in policy.parameters.items()}
    n = policy.n_lstm
    cell = hidden = np.zeros((observations.shape[1], n))
    x_rows, h_rows, outputs = [], [], []
    for t in range(observations.shape[0]):
        x = observations[t].astype(np.float32).astype(np.float64)  # observations enter as float32
        for i in range(len(policy.layers)):
            x = np.tanh(x @ p[f"model/pi_fc{i}/w:0"] + p[f"model/pi_fc{i}/b:0"])
        keep = 1.0 - starts[t][:, None]
        cell, hidden = cell * keep, hidden * keep
        x_rows.append(x)
        h_rows.append(hidden)
        z = (
            _ln(x @ p["model/lstm1/wx:0"]) * p["model/lstm1/gx:0"]
            + p["model/lstm1/bx:0"]
            + _ln(hidden @ p["model/lstm1/wh:0"]) * p["model/lstm1/gh:0"]
            + p["model/lstm1/bh:0"]
            + p["model/lstm1/b:0"]
        )
        i_, f_, o_, u_ = np.split(z, 4, axis=1)
        cell = _sigmoid(f_) * cell + _sigmoid(i_) * np.tanh(u_)
        hidden = _sigmoid(o_) * np.tanh(_ln(cell) * p["model/lstm1/gc:0"] + p["model/lstm1/bc:0"])
        outputs.append(hidden)
    return np.stack(x_rows), np.stack(h_rows), np.stack(outputs)


def test_layer_norm_lstm_is_sb2s_lnlstm_and_its_blocks_have_no_bias_column() -> None:
    """W_x and W_h get Kronecker blocks over x_t and h_{t−1} alone (layer norm removes any
    bias), pooled over every (time step, env) row; the gains and shifts get diagonal blocks."""
    policy = MlpLnLstmPolicy(SPACE, gym.spaces.Discrete(2), n_lstm=5, layers=[4], seed=0, dtype=tf.float64)
    rng = np.random.default_rng(4)
    for name, variable in policy.parameters.items():  # away from the ones/zeros initialisation
        if "/g" in name or "/b" in name:
            variable.assign(rng.normal(1.0 if "/g" in name else 0.0, 0.3, variable.shape))
    n_steps, n_envs = 6, 3
    observations = rng.uniform(-1, 1, (n_steps, n_envs, 3))
    starts = np.zeros((n_steps, n_envs), bool)
    starts[0] = starts[4, 2] = True
    with capture() as recorded:
        output = policy.unroll(tf.constant(observations), policy.initial_state(n_envs), tf.constant(starts))
    x_rows, h_rows, hidden = _numpy_ln_unroll(policy, observations, starts.astype(np.float64))
    expected_values = hidden.swapaxes(0, 1).reshape(-1, 5) @ policy.value_head.kernel.numpy() + policy.value_head.bias
    np.testing.assert_allclose(output.values.numpy(), expected_values[:, 0], rtol=1e-9)
    for layer, rows in ((policy.lstm_wx, x_rows), (policy.lstm_wh, h_rows)):
        uses = recorded.uses_of(layer)
        assert len(uses) == n_steps
        block = make_block(layer)
        input_factor, _ = block.batch_statistics(uses, [tf.ones_like(u.preactivations) for u in uses])
        flat = rows.reshape(-1, rows.shape[-1])
        assert input_factor.shape == (flat.shape[1], flat.shape[1])  # no column of ones
        np.testing.assert_allclose(input_factor.numpy(), flat.T @ flat / (n_steps * n_envs), rtol=1e-10)
    for layer in (policy.lstm_ln_x, policy.lstm_ln_h, policy.lstm_bias, policy.lstm_ln_c):
        assert isinstance(make_block(layer), ScaleAndShiftBlock)
        assert len(recorded.uses_of(layer)) == n_steps
    names = [name for name in policy.parameters if "lstm1" in name]
    assert names == [f"model/lstm1/{k}:0" for k in ("wx", "gx", "bx", "wh", "gh", "bh", "b", "gc", "bc")]


def test_layer_norm_lstm_runs_100_kfac_updates_with_finite_parameters() -> None:
    model = _model("MlpLnLstmPolicy", kfac_update=5)
    reports = list(model.trainer(100 * 10))
    assert len(reports) == 100 and sum(r.kfac_step for r in reports) == 90  # after the 10 cold updates
    assert all(np.all(np.isfinite(v)) for v in model.get_parameters().values())
    assert not any(r.skipped for r in reports)
    spectra = [r.fisher_eigenvalues for r in reports if r.fisher_eigenvalues is not None][-1]
    assert {"lstm1_wx", "lstm1_wh", "lstm1_ln_x", "lstm1_ln_c", "lstm1_b"} <= set(spectra)
    assert spectra["lstm1_wx"].input_factor.shape == (64,)  # x_t alone, no bias column
    assert spectra["lstm1_ln_c"].input_factor.shape == (16,) and np.any(spectra["lstm1_ln_c"].input_factor > 0)


# -- layouts: net_arch, CNN, Stable Baselines 2 --------------------------------------------------
def test_net_arch_with_an_lstm_entry_builds_sb2s_layers() -> None:
    policy = MlpLstmPolicy(
        SPACE, gym.spaces.Discrete(2), n_lstm=4, net_arch=[8, "lstm", 6, {"pi": [5], "vf": [3]}], seed=0
    )
    kernels = {name: tuple(v.shape) for name, v in policy.parameters.items() if name.endswith("/w:0")}
    assert kernels == {
        "model/shared_fc0/w:0": (3, 8),
        "model/lstm1/w:0": (8 + 4, 16),
        "model/shared_fc2/w:0": (4, 6),
        "model/pi_fc0/w:0": (6, 5),
        "model/vf_fc0/w:0": (6, 3),
        "model/vf/w:0": (3, 1),
        "model/pi/w:0": (5, 2),
        "model/q/w:0": (3, 2),
    }
    step = policy.step(np.zeros((2, 3), np.float32), policy.initial_state(2), np.ones(2, bool))
    assert step.values.shape == (2,) and step.state[0].shape == (2, 8)
    assert policy.constructor_kwargs()["net_arch"] == [8, "lstm", 6, {"pi": [5], "vf": [3]}]


@pytest.mark.parametrize(
    ("net_arch", "match"),
    [
        ([64, 64], "must contain 'lstm' once"),
        (["lstm", "lstm"], "only once"),
        (["lstm", {"pi": ["lstm"]}], "only in the shared part"),
        (["lstm", {"pi": [8]}, 4], "must be the last entry"),
        (["lstm", "gru"], "got 'gru'"),
        (["lstm", -3], "got -3"),
        ("lstm", "must be a list"),
    ],
)
def test_bad_recurrent_net_arch_is_refused_by_name(net_arch: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_lstm_net_arch(net_arch)  # type: ignore[arg-type]


def test_cnn_lstm_policies_take_images_and_refuse_vectors_and_net_arch() -> None:
    image = gym.spaces.Box(0, 255, (36, 36, 1), np.uint8)
    for policy_class in (CnnLstmPolicy, CnnLnLstmPolicy):
        policy = policy_class(image, gym.spaces.Discrete(2), n_lstm=8, seed=0)
        assert {"model/c1/w:0", "model/fc1/w:0"} <= set(policy.parameters)
        step = policy.step(np.zeros((3, 36, 36, 1), np.uint8), policy.initial_state(3), np.ones(3, bool))
        assert step.state[0].shape == (3, 16)
        with pytest.raises(ValueError, match="needs image observations"):
            policy_class(SPACE, gym.spaces.Discrete(2))
        with pytest.raises(ValueError, match="net_arch is only for Mlp"):
            policy_class(image, gym.spaces.Discrete(2), net_arch=["lstm"])


@pytest.mark.parametrize("policy", ["MlpLstmPolicy", "MlpLnLstmPolicy", "CnnLstmPolicy", "CnnLnLstmPolicy"])
def test_policy_names_work_in_the_constructor(policy: str) -> None:
    env = identity_envs.ImageCueMemoryEnv() if policy.startswith("Cnn") else "CartPole-v1"
    model = ACKTR(policy, env, n_steps=3, seed=0, policy_kwargs={"n_lstm": 8})
    assert type(model.policy).__name__ == policy
    assert model.initial_state.shape == (1, 16)


def test_sb2s_separate_wx_and_wh_load_into_the_joined_kernel() -> None:
    """SB2 stores the LSTM as wx, wh and b; the policy joins wx and wh into the kernel over
    [x_t, h_{t−1}], and acts as SB2's lstm() would from the separate matrices."""
    model = _model()
    rng = np.random.default_rng(5)
    sb2 = {name: rng.normal(0, 0.3, v.shape) for name, v in model.get_parameters().items() if "lstm1" not in name}
    sb2["model/lstm1/wx:0"] = rng.normal(0, 0.3, (64, 32))
    sb2["model/lstm1/wh:0"] = rng.normal(0, 0.3, (8, 32))
    sb2["model/lstm1/b:0"] = rng.normal(0, 0.3, (32,))
    model.load_parameters(model.policy.parameters_from_sb2(sb2))
    obs = rng.uniform(-0.05, 0.05, (4, 3, 4)).astype(np.float32)
    starts = np.zeros((4, 3))
    starts[0] = 1.0
    _, hidden, _ = _numpy_unroll(model.policy, obs, np.zeros((3, 16)), starts)
    x = obs[-1].astype(np.float64)
    for i in range(2):
        x = np.tanh(x @ sb2[f"model/pi_fc{i}/w:0"] + sb2[f"model/pi_fc{i}/b:0"])
    assert x.shape == (3, 64)
    state = None
    for t in range(4):
        _, state = model.predict(obs[t], state=state, mask=starts[t].astype(bool))
    np.testing.assert_allclose(state[:, 8:], hidden[-1], rtol=1e-4, atol=1e-6)


def test_an_sb2_lstm_zip_loads_as_the_lstm_policy(tmp_path: Path, shared_fixtures: Path) -> None:
    """A Stable Baselines 2 zip whose policy is MlpLstmPolicy (built from the Pendulum agent's
    file: its data, with the policy and parameters of an SB2 LSTM of 256 units)."""
    source = shared_fixtures / "sb2" / "acktr_Pendulum-v0.zip"
    if not source.is_file():
        pytest.skip(f"{source} not present")
    with zipfile.ZipFile(source) as archive:
        data = json.loads(archive.read("data"))
    data["policy"] = {"__module__": "stable_baselines.common.policies", "__init__": "<function MlpLstmPolicy.__init__>"}
    rng = np.random.default_rng(6)
    shapes = {
        "model/pi_fc0/w:0": (3, 64),
        "model/pi_fc0/b:0": (64,),
        "model/pi_fc1/w:0": (64, 64),
        "model/pi_fc1/b:0": (64,),
        "model/lstm1/wx:0": (64, 1024),
        "model/lstm1/wh:0": (256, 1024),
        "model/lstm1/b:0": (1024,),
        "model/vf/w:0": (256, 1),
        "model/vf/b:0": (1,),
        "model/pi/w:0": (256, 1),
        "model/pi/b:0": (1,),
        "model/pi/logstd:0": (1, 1),
        "model/q/w:0": (256, 1),
        "model/q/b:0": (1,),
    }
    parameters = {name: rng.normal(0, 0.1, shape).astype(np.float32) for name, shape in shapes.items()}
    buffer = tmp_path / "params.npz"
    np.savez(buffer, **parameters)
    with zipfile.ZipFile(tmp_path / "sb2_lstm.zip", "w") as archive:
        archive.writestr("data", json.dumps(data))
        archive.writestr("parameters", buffer.read_bytes())
        archive.writestr("parameter_list", json.dumps(list(shapes)))
    model = ACKTR.load(tmp_path / "sb2_lstm.zip")
    assert type(model.policy).__name__ == "MlpLstmPolicy" and model.policy.n_lstm == 256
    joined = np.concatenate([parameters["model/lstm1/wx:0"], parameters["model/lstm1/wh:0"]])
    np.testing.assert_array_equal(model.get_parameters()["model/lstm1/w:0"], joined)


# -- behaviour cloning over trajectories ----------------------------------------------------------
def test_episodes_are_laid_end_to_end_in_the_shortest_lane() -> None:
    bounds = np.array([0, 3, 5, 9, 10])  # episodes of 3, 2, 4 and 1 transitions
    indices, starts = episode_lanes(bounds, np.array([0, 1, 2, 3]), n_lanes=2, multiple=4)
    # Episode 0 → lane 0 (3 steps); 1 → lane 1 (2); 2 → lane 1, the shorter (6); 3 → lane 0 (4).
    np.testing.assert_array_equal(indices[:, 0], [0, 1, 2, 9, -1, -1, -1, -1])
    np.testing.assert_array_equal(indices[:, 1], [3, 4, 5, 6, 7, 8, -1, -1])
    np.testing.assert_array_equal(starts[:, 0], [1, 0, 0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(starts[:, 1], [1, 0, 1, 0, 0, 0, 1, 1])


def _cue_expert(n_episodes: int, delay: int = 3) -> dict[str, np.ndarray]:
    """An expert for CueMemoryEnv that names the cue at every step (only the query's counts).

    An expert that plays 0 until the query teaches mostly "play 0": cloned, the LSTM
    saturates to a constant output and forgets the cue (measured: the query stays at chance)."""
    env = identity_envs.CueMemoryEnv(delay)
    obs, actions, starts = [], [], []
    for episode in range(n_episodes):
        o, _ = env.reset(seed=episode)
        cue, done, first = int(np.argmax(o[:2])), False, True
        while not done:
            action = cue
            obs.append(o)
            actions.append([action])
            starts.append(first)
            o, _, terminated, truncated, _ = env.step(action)
            done, first = terminated or truncated, False
    return {"obs": np.array(obs), "actions": np.array(actions), "episode_starts": np.array(starts)}


def test_recurrent_pretraining_learns_to_remember_from_whole_trajectories() -> None:
    """Cloned over trajectories, an LSTM names the cue it saw 4 steps earlier; a feedforward
    clone of the same data cannot (it sees the same query observation for both cues)."""
    data = _cue_expert(60)

    def cloned_score(policy: str, **kwargs: object) -> float:
        dataset = ExpertDataset(traj_data=data, batch_size=64, verbose=0, seed=0)
        model = ACKTR(policy, identity_envs.CueMemoryEnv(3), seed=0, **kwargs)
        model.pretrain(dataset, n_epochs=30, learning_rate=3e-3, sequence_length=8)
        return float(np.mean(evaluate(model, identity_envs.CueMemoryEnv(3), 40, seed=1000)))

    assert cloned_score("MlpLstmPolicy", policy_kwargs={"n_lstm": 16}) >= 0.95
    assert cloned_score("MlpPolicy") <= 0.75


def test_recurrent_pretraining_reports_train_and_validation_losses() -> None:
    dataset = ExpertDataset(traj_data=_cue_expert(20), batch_size=32, verbose=0, seed=0)
    model = ACKTR("MlpLnLstmPolicy", identity_envs.CueMemoryEnv(3), seed=0, policy_kwargs={"n_lstm": 8})
    reports = list(model.pretrainer(dataset, n_epochs=4, val_interval=2, sequence_length=4))
    assert [r.epoch for r in reports] == [1, 2, 3, 4]
    assert all(np.isfinite(r.train_loss) for r in reports) and reports[-1].train_loss < reports[0].train_loss
    assert [r.val_loss is not None for r in reports] == [False, True, False, True]
    with pytest.raises(ValueError, match="sequence_length must be a positive integer"):
        model.pretrain(dataset, sequence_length=0)


def test_expert_data_from_a_recurrent_model(tmp_path: Path) -> None:
    from acktr_lab.expert import generate_expert_traj

    model = _model()
    data = generate_expert_traj(model, tmp_path / "expert", env="CartPole-v1", n_episodes=2, seed=0, verbose=0)
    assert len(data["episode_returns"]) == 2
    dataset = ExpertDataset(expert_path=str(tmp_path / "expert.npz"), verbose=0)
    reports = list(model.pretrainer(dataset, n_epochs=1))
    assert np.isfinite(reports[0].train_loss)


# -- memory tasks ------------------------------------------------------------------------------
def _memory_score(policy: str, env_class: type[gym.Env], timesteps: int, **kwargs: object) -> float:
    env = gym.vector.SyncVectorEnv([lambda: env_class(3) for _ in range(8)])
    model = ACKTR(policy, env, n_steps=5, ent_coef=0.0, seed=0, **kwargs)
    model.learn(timesteps)
    return float(np.mean(evaluate(model, env_class(3), 40, seed=1000)))


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["MlpLstmPolicy", "MlpLnLstmPolicy"])
def test_an_lstm_solves_a_memory_task_a_feedforward_policy_cannot(policy: str) -> None:
    """A cue at the first step, named 4 steps later (identity_envs.CueMemoryEnv), on a plain
    gymnasium vector env (next-step autoreset). Measured: MlpLstmPolicy (n_lstm 32) evaluates
    at 40/40 after 20k steps for seeds 0, 1, 2; MlpPolicy at 0.6 (chance is 0.5)."""
    assert _memory_score(policy, identity_envs.CueMemoryEnv, 20_000, policy_kwargs={"n_lstm": 32}) >= 0.95
    if policy == "MlpLstmPolicy":
        assert _memory_score("MlpPolicy", identity_envs.CueMemoryEnv, 20_000) <= 0.75


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["CnnLstmPolicy", "CnnLnLstmPolicy"])
def test_a_cnn_lstm_solves_the_memory_task_in_pictures(policy: str) -> None:
    """identity_envs.ImageCueMemoryEnv: the cue is a square left or right in the first
    frame only. Measured: both policies (n_lstm 32) evaluate at 40/40 after 10k steps (≈ 55 s
    each on 2 cores)."""
    assert _memory_score(policy, identity_envs.ImageCueMemoryEnv, 10_000, policy_kwargs={"n_lstm": 32}) >= 0.95


def test_the_dashboard_shows_every_lstm_block_of_a_real_run() -> None:
    """A real MlpLnLstmPolicy run through the live dashboard: the LSTM's Kronecker and
    diagonal blocks get spectrum lines like every other layer, and the figure renders."""
    from acktr_lab.widgets import Dashboard

    model = _model("MlpLnLstmPolicy")
    dashboard = Dashboard(model.trainer(14 * 10), redraw_interval=3600.0)
    assert dashboard.run_blocking() == 14
    png = dashboard.plots.render_png()
    lines_a = dashboard.plots.panel("spectrum_a").layer_lines
    lines_g = dashboard.plots.panel("spectrum_g").layer_lines
    assert {"lstm1_wx", "lstm1_wh", "lstm1_ln_x", "lstm1_ln_h", "lstm1_b", "lstm1_ln_c", "pi", "vf"} <= set(lines_a)
    assert set(lines_g) == set(lines_a)
    line_a, line_g = lines_a["lstm1_ln_c"], lines_g["lstm1_ln_c"]
    assert len(line_a.get_xdata()) == 16 and list(line_g.get_ydata()) == [1.0]
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_sb2_lstm_matrices_that_do_not_fit_are_refused_and_nothing_changes() -> None:
    model = _model()
    before = {k: v.copy() for k, v in model.get_parameters().items()}
    sb2 = {k: v for k, v in before.items() if "lstm1" not in k}
    sb2.update(
        {"model/lstm1/wx:0": np.ones((64, 32)), "model/lstm1/wh:0": np.ones((8, 31)), "model/lstm1/b:0": np.ones(32)}
    )
    with pytest.raises(ValueError, match="do not fit together: wx \\(64, 32\\), wh \\(8, 31\\)"):
        model.load_parameters(model.policy.parameters_from_sb2(sb2))
    sb2["model/lstm1/wh:0"] = np.ones((9, 32))  # fits wx, not this model's n_lstm
    with pytest.raises(ValueError, match="model/lstm1/w:0 has shape \\(73, 32\\)"):
        model.load_parameters(model.policy.parameters_from_sb2(sb2))
    for name, value in model.get_parameters().items():
        np.testing.assert_array_equal(value, before[name])
