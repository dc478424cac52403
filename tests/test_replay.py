"""Replays: an episode's frames and return match a plain rollout; GIFs decode with every frame."""

from __future__ import annotations

import io
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

from acktr_lab import ACKTR
from acktr_lab.evaluation import evaluate
from acktr_lab.replay import episode_frames, replay_gif, write_replay


@pytest.fixture(scope="module")
def model() -> ACKTR:
    return ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=5, seed=0)


def test_episode_frames_are_one_per_step_and_the_return_is_the_evaluations(model: ACKTR) -> None:
    frames, total = episode_frames(model, "CartPole-v1", seed=4)
    assert total == evaluate(model, "CartPole-v1", 1, seed=4)[0]  # same episode, deterministic
    assert len(frames) == int(total) + 1  # CartPole: reward 1 per step, plus the frame after reset
    assert all(frame.shape == (400, 600, 3) and frame.dtype == np.uint8 for frame in frames)
    short, _ = episode_frames(model, "CartPole-v1", seed=4, max_frames=3)
    assert len(short) == 4 and all(np.array_equal(a, b) for a, b in zip(short, frames))


def test_a_gif_holds_every_other_frame_scaled(model: ACKTR, tmp_path: Path) -> None:
    frames, _ = episode_frames(model, "CartPole-v1", seed=1, max_frames=20)
    gif = Image.open(io.BytesIO(replay_gif(frames, fps=25, width=150)))
    assert gif.format == "GIF" and gif.size == (150, 100)
    # Pillow merges identical consecutive frames, adding up their durations: the total stays
    assert _duration_ms(gif) == len(frames[::2]) * 80  # every other frame, 2 / 25 s each
    written = Image.open(write_replay(frames, tmp_path / "replay.gif", fps=25))
    assert written.size == (600, 400) and _duration_ms(written) == len(frames[::2]) * 40


def _duration_ms(gif: Image.Image) -> int:
    total = 0
    for index in range(gif.n_frames):
        gif.seek(index)
        total += gif.info["duration"]
    return total


def test_bad_replay_requests_are_refused(model: ACKTR) -> None:
    with pytest.raises(ValueError, match="rgb_array"):
        episode_frames(model, gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="max_frames"):
        episode_frames(model, "CartPole-v1", max_frames=0)
    with pytest.raises(ValueError, match="no frames"):
        replay_gif([])
