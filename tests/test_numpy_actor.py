"""The NumPy rollout actor agrees with the TensorFlow policy, and seeded runs stay reproducible."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from acktr_lab import ACKTR, MlpLstmPolicy, MlpPolicy
from acktr_lab.numpy_actor import NUMPY_ACTIVATIONS, NumpyActor, RolloutActor, numpy_acting_unsupported
from acktr_lab.policies import ACTIVATIONS, CnnPolicy

BOX_OBS = gym.spaces.Box(-2.0, 2.0, (4,), np.float32)
ACTION_SPACES = {
    "Discrete": gym.spaces.Discrete(3, start=1),
    "Box": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
    "MultiDiscrete": gym.spaces.MultiDiscrete([3, 2]),
    "MultiBinary": gym.spaces.MultiBinary(3),
}
OBSERVATION_SPACES = {
    "Box": BOX_OBS,
    "Discrete": gym.spaces.Discrete(5, start=-2),
    "MultiDiscrete": gym.spaces.MultiDiscrete([2, 3]),
    "MultiBinary": gym.spaces.MultiBinary(3),
}


def _tf_sample(distribution: object, kind: str, noise: np.ndarray) -> np.ndarray:
    """The TensorFlow distribution's sample for given noise (the formulas of acktr_lab.distributions)."""
    u = tf.constant(noise)
    if kind == "diag_gaussian":
        return (distribution.mean + distribution.std * u).numpy()
    if kind == "bernoulli":
        return tf.cast(u < tf.sigmoid(distribution.logits), tf.float32).numpy()
    if kind == "categorical":
        return tf.argmax(distribution.logits - tf.math.log(-tf.math.log(u)), axis=-1).numpy()
    blocks = tf.split(u, [c.logits.shape[-1] for c in distribution.categoricals], axis=-1)
    return np.stack(
        [
            tf.argmax(c.logits - tf.math.log(-tf.math.log(b)), axis=-1).numpy()
            for c, b in zip(distribution.categoricals, blocks)
        ],
        axis=-1,
    )


def _head(distribution: object, kind: str) -> np.ndarray:
    if kind == "diag_gaussian":
        return distribution.mean.numpy()
    if kind == "multi_categorical":
        return np.concatenate([c.logits.numpy() for c in distribution.categoricals], axis=-1)
    return distribution.logits.numpy()


@pytest.mark.parametrize("action_name", list(ACTION_SPACES))
@pytest.mark.parametrize("observation_name", list(OBSERVATION_SPACES))
def test_numpy_forward_and_actions_agree_with_tensorflow(observation_name: str, action_name: str) -> None:
    obs_space, action_space = OBSERVATION_SPACES[observation_name], ACTION_SPACES[action_name]
    policy = MlpPolicy(obs_space, action_space, seed=0, net_arch=[16, {"pi": [8], "vf": [8, 4]}])
    rng = np.random.default_rng(0)
    for variable in policy.trainable:  # away from the initialisation (zero biases, tiny pi head)
        variable.assign(variable.numpy() + rng.normal(0.0, 0.3, variable.shape).astype(np.float32))
    actor = NumpyActor(policy)
    obs_space.seed(1)
    observations = np.stack([obs_space.sample() for _ in range(64)])
    step = policy.step(tf.constant(observations), (), tf.ones(64, tf.bool))
    kind = policy.distribution_factory.kind
    head, values = actor.forward(observations)
    assert head.dtype == np.float32 and values.dtype == np.float32
    np.testing.assert_allclose(head, _head(step.distribution, kind), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values, step.values.numpy(), rtol=1e-5, atol=1e-6)
    if kind == "diag_gaussian":  # the mode is the mean: equal to float32 round-off
        np.testing.assert_allclose(actor.choose(head, None), step.distribution.mode().numpy(), rtol=1e-5, atol=1e-6)
    else:  # discrete choices: identical
        np.testing.assert_array_equal(actor.choose(head, None), step.distribution.mode().numpy())
    if kind == "diag_gaussian":
        noise = rng.normal(size=head.shape).astype(np.float32)
    else:
        noise = rng.uniform(np.finfo(np.float32).tiny, 1.0, head.shape).astype(np.float32)
    np.testing.assert_allclose(
        actor.choose(head, noise), _tf_sample(step.distribution, kind, noise), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("act_fun", sorted(ACTIVATIONS))
def test_numpy_activations_equal_tensorflows(act_fun: str) -> None:
    x = np.linspace(-8.0, 8.0, 1001, dtype=np.float32)
    np.testing.assert_allclose(NUMPY_ACTIVATIONS[act_fun](x), ACTIVATIONS[act_fun](x).numpy(), rtol=2e-6, atol=2e-7)


def test_normalised_observations_and_refresh_follow_the_policy() -> None:
    policy = MlpPolicy(BOX_OBS, ACTION_SPACES["Discrete"], seed=0, normalize_observations=True)
    policy.observation_mean.assign([0.5, -1.0, 0.0, 2.0])
    policy.observation_var.assign([4.0, 0.25, 1.0, 0.01])
    actor = NumpyActor(policy)
    observations = np.random.default_rng(2).uniform(-2, 2, (16, 4)).astype(np.float32)
    _, values = actor.forward(observations)
    np.testing.assert_allclose(values, policy.step(observations, (), tf.ones(16, tf.bool)).values.numpy(), rtol=1e-5)
    policy.value_head.bias.assign([3.0])  # a copy until refreshed, as between two rollouts
    np.testing.assert_allclose(actor.forward(observations)[1], values)
    actor.refresh()
    np.testing.assert_allclose(actor.forward(observations)[1], values + 3.0, rtol=1e-5)


def test_policies_numpy_cannot_mirror_act_through_tensorflow() -> None:
    image = gym.spaces.Box(0, 255, (36, 36, 1), np.uint8)
    assert "recurrent" in numpy_acting_unsupported(MlpLstmPolicy(BOX_OBS, ACTION_SPACES["Discrete"], n_lstm=4))
    assert "feature extractor" in numpy_acting_unsupported(CnnPolicy(image, ACTION_SPACES["Discrete"]))
    assert "float64" in numpy_acting_unsupported(MlpPolicy(BOX_OBS, ACTION_SPACES["Discrete"], dtype=tf.float64))
    with pytest.raises(ValueError, match="cannot mirror this policy: a recurrent policy"):
        NumpyActor(MlpLstmPolicy(BOX_OBS, ACTION_SPACES["Discrete"], n_lstm=4))
    lstm = ACKTR("MlpLstmPolicy", "CartPole-v1", n_steps=3, policy_kwargs={"n_lstm": 4})
    assert lstm.learner.rollout_actor is lstm.learner
    assert isinstance(ACKTR("MlpPolicy", "CartPole-v1").learner.rollout_actor, RolloutActor)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_seeded_runs_with_numpy_acting_are_bit_reproducible(env_id: str) -> None:
    def run() -> tuple[dict[str, np.ndarray], list[float]]:
        model = ACKTR("MlpPolicy", env_id, n_envs=4, n_steps=8, seed=3)
        reports = list(model.trainer(4 * 8 * 30))
        return model.get_parameters(), [r.policy_loss for r in reports]

    (first, losses_a), (second, losses_b) = run(), run()
    assert losses_a == losses_b
    for name, value in first.items():
        np.testing.assert_array_equal(second[name], value)


def test_a_rollouts_sampled_actions_follow_the_policy() -> None:
    """Actions drawn in rollouts have the policy's probabilities (a fixed two-action policy)."""
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=8, n_steps=50, seed=0)
    model.policy.pi_head.kernel.assign(np.zeros_like(model.policy.pi_head.kernel.numpy()))
    model.policy.pi_head.bias.assign([0.0, np.log(3.0)])  # π(1) = 0.75 whatever the observation
    batch = model.collector.collect(50, 0.99)
    assert abs(float(np.mean(batch.actions)) - 0.75) < 0.05  # 400 draws: 4 standard errors ≈ 0.087
