"""Observation preprocessing, space <-> JSON (ours and SB2's), equality and validation."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from acktr_lab.preprocessing import (
    assert_valid_observations,
    check_observation_space,
    flat_observation_dim,
    image_layout,
    is_image_space,
    preprocess_observation,
    space_from_json,
    space_to_json,
    spaces_equal,
)

SPACES = {
    "box": gym.spaces.Box(-1.0, 2.0, shape=(3,), dtype=np.float32),
    "box_inf": gym.spaces.Box(np.array([-np.inf, 0.0]), np.array([np.inf, 1.5]), dtype=np.float64),
    "box_2d": gym.spaces.Box(np.arange(6).reshape(2, 3), 10, shape=(2, 3), dtype=np.int32),
    "image": gym.spaces.Box(0, 255, shape=(8, 6, 3), dtype=np.uint8),
    "discrete": gym.spaces.Discrete(5),
    "discrete_start": gym.spaces.Discrete(4, start=-2),
    "multidiscrete": gym.spaces.MultiDiscrete([3, 2, 4]),
    "multidiscrete_start": gym.spaces.MultiDiscrete([3, 2], start=[1, -1]),
    "multibinary": gym.spaces.MultiBinary(4),
    "multibinary_2d": gym.spaces.MultiBinary([2, 3]),
}


@pytest.mark.parametrize("name", sorted(SPACES))
def test_json_round_trip(name: str) -> None:
    space = SPACES[name]
    data = space_to_json(space)
    text = json.dumps(data, allow_nan=False)  # strict JSON: no Infinity/NaN literals
    rebuilt = space_from_json(json.loads(text))
    assert type(rebuilt) is type(space)
    assert spaces_equal(space, rebuilt), (space, rebuilt)


def test_json_box_bounds_format() -> None:
    data = space_to_json(SPACES["box_inf"])
    assert data == {
        "type": "Box",
        "shape": [2],
        "dtype": "float64",
        "low": ["-inf", 0.0],
        "high": ["inf", 1.5],
    }


def test_json_unknown_types() -> None:
    with pytest.raises(ValueError, match="Dict"):
        space_to_json(gym.spaces.Dict({"a": gym.spaces.Discrete(2)}))
    with pytest.raises(ValueError, match="unknown space type 'Tuple'"):
        space_from_json({"type": "Tuple", "spaces": []})
    with pytest.raises(ValueError, match="unknown space type 'Dict'"):
        space_from_json({":type:": "<class 'gym.spaces.dict.Dict'>", ":serialized:": "xx"})
    with pytest.raises(ValueError, match="type"):
        space_from_json({"n": 3})
    with pytest.raises(ValueError, match="malformed"):
        space_from_json({"type": "Discrete"})


def test_spaces_equal() -> None:
    box = SPACES["box"]
    assert spaces_equal(box, gym.spaces.Box(-1.0, 2.0, shape=(3,), dtype=np.float32))
    assert not spaces_equal(box, gym.spaces.Box(-1.0, 3.0, shape=(3,), dtype=np.float32))
    assert not spaces_equal(box, gym.spaces.Box(-1.0, 2.0, shape=(3,), dtype=np.float64))
    assert not spaces_equal(box, gym.spaces.Box(-1.0, 2.0, shape=(4,), dtype=np.float32))
    assert not spaces_equal(gym.spaces.Discrete(3), gym.spaces.Discrete(3, start=1))
    assert not spaces_equal(gym.spaces.Discrete(3), gym.spaces.Discrete(4))
    assert not spaces_equal(gym.spaces.Discrete(3), gym.spaces.MultiDiscrete([3]))
    assert not spaces_equal(gym.spaces.MultiDiscrete([2, 3]), gym.spaces.MultiDiscrete([3, 2]))
    assert not spaces_equal(gym.spaces.MultiBinary(3), gym.spaces.MultiBinary(4))


# ----------------------------------------------------------------------------------- SB2
def test_sb2_fixture_spaces_rebuild(shared_fixtures: Path) -> None:
    """The spaces in a real SB2 ``data`` file (readable fields only; the pickle is ignored)."""
    archive = shared_fixtures / "sb2" / "acktr_Pendulum-v0.zip"
    if not archive.is_file():
        pytest.skip(f"{archive} not found")
    with zipfile.ZipFile(archive) as zf:
        data = json.loads(zf.read("data"))
    obs_space = space_from_json(data["observation_space"])
    act_space = space_from_json(data["action_space"])
    assert spaces_equal(
        obs_space,
        gym.spaces.Box(
            np.array([-1.0, -1.0, -8.0], np.float32),
            np.array([1.0, 1.0, 8.0], np.float32),
            dtype=np.float32,
        ),
    )
    assert spaces_equal(act_space, gym.spaces.Box(-2.0, 2.0, shape=(1,), dtype=np.float32))
    # gymnasium's Pendulum-v1 has the same spaces.
    env = gym.make("Pendulum-v1")
    assert spaces_equal(obs_space, env.observation_space)
    assert spaces_equal(act_space, env.action_space)
    env.close()


def test_sb2_style_entries() -> None:
    """Entries shaped like SB2's ``data_to_json`` output for the other spaces."""
    discrete = {
        ":type:": "<class 'gym.spaces.discrete.Discrete'>",
        ":serialized:": "never-decoded",
        "n": 6,
        "shape": [],
        "dtype": "int64",
        "np_random": "<mtrand.RandomState object at 0x7f>",
    }
    assert spaces_equal(space_from_json(discrete), gym.spaces.Discrete(6))
    multi = {
        ":type:": "<class 'gym.spaces.multi_discrete.MultiDiscrete'>",
        ":serialized:": "never-decoded",
        "nvec": "[2 3 4]",
        "shape": [3],
        "dtype": "int64",
    }
    assert spaces_equal(space_from_json(multi), gym.spaces.MultiDiscrete([2, 3, 4]))
    binary = {":type:": "<class 'gym.spaces.multi_binary.MultiBinary'>", "n": 5, "shape": [5]}
    assert spaces_equal(space_from_json(binary), gym.spaces.MultiBinary(5))
    image = gym.spaces.Box(0, 255, shape=(84, 84, 4), dtype=np.uint8)
    atari = {
        ":type:": "<class 'gym.spaces.box.Box'>",
        ":serialized:": "never-decoded",
        "dtype": "uint8",
        "shape": [84, 84, 4],
        "low": str(image.low),  # summarised by NumPy with '...'
        "high": str(image.high),
    }
    assert "..." in atari["low"]
    assert spaces_equal(space_from_json(atari), image)
    inf_box = {
        ":type:": "<class 'gym.spaces.box.Box'>",
        "dtype": "float32",
        "shape": [2, 2],
        "low": str(np.array([[-np.inf, -1.0], [0.0, -3.5]], np.float32)),
        "high": str(np.array([[np.inf, 1.0], [2.0, 3.4028235e38]], np.float32)),
    }
    rebuilt = space_from_json(inf_box)
    np.testing.assert_array_equal(rebuilt.low, [[-np.inf, -1.0], [0.0, -3.5]])
    np.testing.assert_array_equal(rebuilt.high, np.array([[np.inf, 1.0], [2.0, 3.4028235e38]], np.float32))
    mixed = dict(atari, low=str(np.arange(84 * 84 * 4).reshape(84, 84, 4)))
    with pytest.raises(ValueError, match="summarised"):
        space_from_json(mixed)


# -------------------------------------------------------------------------- preprocessing
def test_one_hot_discrete_with_start() -> None:
    space = gym.spaces.Discrete(4, start=-2)
    x = preprocess_observation(tf.constant([-2, 1, 0]), space)
    assert x.dtype == tf.float32
    np.testing.assert_array_equal(x, [[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]])
    assert flat_observation_dim(space) == 4


def test_one_hot_multidiscrete() -> None:
    space = gym.spaces.MultiDiscrete([3, 2], start=[1, 0])
    x = preprocess_observation(np.array([[1, 1], [3, 0]]), space)
    np.testing.assert_array_equal(x, [[1, 0, 0, 0, 1], [0, 0, 1, 1, 0]])
    assert flat_observation_dim(space) == 5


def test_image_scaling_and_other_boxes() -> None:
    space = SPACES["image"]
    assert is_image_space(space)
    obs = np.full((2, 8, 6, 3), 255, dtype=np.uint8)
    obs[0, 0, 0, 0] = 51
    x = preprocess_observation(obs, space)
    assert x.dtype == tf.float32 and x.shape == (2, 8, 6, 3)
    assert float(x[0, 0, 0, 0]) == pytest.approx(0.2)
    assert float(x[1, 0, 0, 0]) == 1.0
    assert flat_observation_dim(space) == 8 * 6 * 3
    # Float boxes are only cast.
    box = SPACES["box_2d"]
    assert not is_image_space(box)
    np.testing.assert_array_equal(preprocess_observation(np.ones((1, 2, 3), np.int32), box), 1.0)
    assert flat_observation_dim(box) == 6
    # Channel-first uint8 boxes are images too (gymnasium's Atari frame stacks); non-uint8
    # rank-3 boxes are not.
    assert image_layout(space) == "channels_last"
    assert image_layout(gym.spaces.Box(0, 255, shape=(4, 84, 84), dtype=np.uint8)) == "channels_first"
    assert image_layout(gym.spaces.Box(0, 255, shape=(84, 84, 4), dtype=np.uint8)) == "channels_last"
    assert image_layout(gym.spaces.Box(0, 255, shape=(4, 4, 4), dtype=np.uint8)) == "channels_last"  # ambiguous
    assert image_layout(gym.spaces.Box(0, 255, shape=(8, 3, 8), dtype=np.uint8)) is None
    assert not is_image_space(gym.spaces.Box(0.0, 1.0, shape=(8, 8, 3), dtype=np.float32))


def test_multibinary_cast() -> None:
    space = gym.spaces.MultiBinary(3)
    x = preprocess_observation(np.array([[1, 0, 1]], dtype=np.int8), space)
    assert x.dtype == tf.float32
    np.testing.assert_array_equal(x, [[1.0, 0.0, 1.0]])
    assert flat_observation_dim(gym.spaces.MultiBinary([2, 3])) == 6


def test_preprocess_in_tf_function() -> None:
    space = gym.spaces.Discrete(3)
    fn = tf.function(lambda obs: preprocess_observation(obs, space))
    np.testing.assert_array_equal(fn(tf.constant([2, 0])), [[0, 0, 1], [1, 0, 0]])


def test_unsupported_observation_spaces() -> None:
    for space in (
        gym.spaces.Dict({"a": gym.spaces.Discrete(2)}),
        gym.spaces.Tuple((gym.spaces.Discrete(2),)),
        gym.spaces.Text(4),
    ):
        with pytest.raises(ValueError, match="supported: Box, Discrete") as info:
            check_observation_space(space)
        assert type(space).__name__ in str(info.value)
        with pytest.raises(ValueError):
            preprocess_observation(np.zeros(1), space)


def test_assert_valid_observations() -> None:
    box = SPACES["box"]
    assert_valid_observations(np.zeros((4, 3), np.float32), box)
    assert_valid_observations(np.zeros(3, np.float32), box)
    with pytest.raises(ValueError, match="shape"):
        assert_valid_observations(np.zeros((4, 2), np.float32), box)
    bad = np.zeros((4, 3), np.float32)
    bad[2, 1] = np.nan
    bad[3, 0] = np.inf
    with pytest.raises(ValueError, match=r"2 non-finite.*\(2, 1\)"):
        assert_valid_observations(bad, box)
    wide = np.zeros((2, 3), np.float64)  # finite in float64, inf once the network reads it
    assert_valid_observations(wide + 3e38, box)
    wide[1, 2] = -1e39
    with pytest.raises(ValueError, match=r"1 non-finite value\(s\) in float32.*\(1, 2\)"):
        assert_valid_observations(wide, box)
    assert_valid_observations(np.array([-2, 1]), gym.spaces.Discrete(4, start=-2))
    with pytest.raises(ValueError, match="out of range"):
        assert_valid_observations(np.array([2]), gym.spaces.Discrete(4, start=-2))
    with pytest.raises(ValueError, match="0 or 1"):
        assert_valid_observations(np.array([[0, 2]]), gym.spaces.MultiBinary(2))
