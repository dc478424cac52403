"""Replays: one episode of a model rendered to frames, written as a GIF (or MP4), or shown in
a notebook (``IPython.display.Image(data=replay_gif(frames))``).

The model acts with ``predict`` (its state carried through the episode and reset at the
start); the env renders with ``render_mode="rgb_array"``, which needs no display.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from matplotlib.animation import FFMpegWriter, PillowWriter
from matplotlib.figure import Figure
from PIL import Image

__all__ = ["episode_frames", "replay_gif", "write_replay"]


def episode_frames(
    model: Any,
    env: str | gym.Env,
    *,
    seed: int = 0,
    max_frames: int = 1_000,
    deterministic: bool = True,
) -> tuple[list[np.ndarray], float]:
    """``(frames, return)`` of one episode: the first frame after ``reset(seed=seed)``, then
    one per step, at most ``max_frames`` steps. ``env``: an env id (made with
    ``render_mode="rgb_array"`` and closed afterwards) or an env that renders RGB arrays."""
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise ValueError(f"max_frames must be a positive integer, got {max_frames!r}")
    # Off-screen frames need no display: keep SDL (pygame) from probing for one and
    # printing "XDG_RUNTIME_DIR is invalid" on headless machines.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    created = isinstance(env, str)
    environment = gym.make(env, render_mode="rgb_array") if isinstance(env, str) else env
    if environment.render_mode != "rgb_array":
        raise ValueError(f"the env must render RGB arrays (render_mode='rgb_array'), not {environment.render_mode!r}")
    try:
        obs, _ = environment.reset(seed=seed)
        frames = [np.asarray(environment.render())]
        total, state, start = 0.0, None, True
        for _ in range(max_frames):
            action, state = model.predict(obs, state=state, mask=[start], deterministic=deterministic)
            start = False
            obs, reward, terminated, truncated, _ = environment.step(action)
            total += float(reward)
            frames.append(np.asarray(environment.render()))
            if terminated or truncated:
                break
    finally:
        if created:
            environment.close()
    return frames, total


def replay_gif(frames: Sequence[np.ndarray], *, fps: int = 30, every: int = 2, width: int | None = 320) -> bytes:
    """An animated GIF of every ``every``-th frame at ``fps``, scaled to ``width`` pixels (None:
    as rendered); the bytes a notebook shows with ``IPython.display.Image(data=...)``."""
    if not frames:
        raise ValueError("no frames to animate")
    images = [Image.fromarray(np.asarray(frame, dtype=np.uint8)) for frame in frames[::every]]
    if width is not None and images[0].width != width:
        height = round(images[0].height * width / images[0].width)
        images = [image.resize((width, height)) for image in images]
    buffer = io.BytesIO()
    duration = round(1000 * every / fps)
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
    return buffer.getvalue()


def write_replay(frames: Sequence[np.ndarray], path: str | os.PathLike[str], *, fps: int = 30) -> Path:
    """Write every other frame to ``path``: a GIF, or an MP4 where ffmpeg is installed
    (``RuntimeError`` naming the problem otherwise)."""
    target = Path(path)
    if not frames:
        raise ValueError("no frames to write")
    if target.suffix == ".mp4" and not FFMpegWriter.isAvailable():
        raise RuntimeError("writing an MP4 needs ffmpeg on the PATH; write a .gif instead")
    figure = Figure(figsize=(frames[0].shape[1] / 100, frames[0].shape[0] / 100), dpi=100)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.axis("off")
    image = axes.imshow(frames[0])
    writer = FFMpegWriter(fps=fps) if target.suffix == ".mp4" else PillowWriter(fps=fps)
    with writer.saving(figure, str(target), dpi=100):
        for frame in frames[::2]:
            image.set_data(frame)
            writer.grab_frame()
    return target
