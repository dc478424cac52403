"""Identity environments (after Stable Baselines 3's test suite): the observation names the
action to take; reward 1 for taking it (Box: 1 minus a penalty growing with the error).

The memory task :class:`~acktr_lab.tasks.CueMemoryEnv` is in the library; it is imported
here so that the tests name it ``identity_envs.CueMemoryEnv`` beside its image version."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from acktr_lab.tasks import CueMemoryEnv  # the memory task lives in the library (notebook 08)


class IdentityEnv(gym.Env):
    """Observation = target; one episode = ``ep_length`` targets."""

    def __init__(self, space: gym.Space, ep_length: int = 20) -> None:
        self.observation_space = space
        self.action_space = space
        self.ep_length = ep_length
        self._t = 0
        self._state: Any = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self.observation_space.seed(seed)
        self._t = 0
        self._state = self.observation_space.sample()
        return self._state, {}

    def _reward(self, action: Any) -> float:
        return float(np.all(np.asarray(action) == np.asarray(self._state)))

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        reward = self._reward(action)
        self._t += 1
        self._state = self.observation_space.sample()
        return self._state, reward, False, self._t >= self.ep_length, {}


class IdentityEnvBox(IdentityEnv):
    """Continuous: reward 1 when |action - target| < eps, else 0 (SB3's IdentityEnvBox)."""

    def __init__(self, low: float = -1.0, high: float = 1.0, eps: float = 0.05, ep_length: int = 20) -> None:
        super().__init__(gym.spaces.Box(low, high, (1,), np.float32), ep_length)
        self.eps = eps

    def _reward(self, action: Any) -> float:
        return float(abs(float(np.asarray(action).reshape(-1)[0]) - float(self._state[0])) < self.eps)


def discrete(n: int = 4) -> IdentityEnv:
    return IdentityEnv(gym.spaces.Discrete(n))


def multi_discrete() -> IdentityEnv:
    return IdentityEnv(gym.spaces.MultiDiscrete([3, 3]))


def multi_binary() -> IdentityEnv:
    return IdentityEnv(gym.spaces.MultiBinary(3))


class ImageIdentityEnv(gym.Env):
    """An image identity env for ``CnnPolicy``: a 40x40 grey image (the smallest the Nature
    CNN takes is 36x36) with a bright 10x10 square in one of ``n`` places along a diagonal;
    the action to take is the square's place. Reward 1 for naming it."""

    size = 40

    def __init__(self, n: int = 3, ep_length: int = 20) -> None:
        if not 1 <= n <= 3:
            raise ValueError(f"the 40x40 image has room for 1 to 3 places, got n={n}")
        self.observation_space = gym.spaces.Box(0, 255, (self.size, self.size, 1), np.uint8)
        self.action_space = gym.spaces.Discrete(n)
        self.ep_length = ep_length
        self._t = 0
        self._target = 0

    def _observe(self) -> np.ndarray:
        self._target = int(self.np_random.integers(self.action_space.n))
        image = self.np_random.integers(0, 64, (self.size, self.size, 1), dtype=np.uint8)
        corner = 3 + self._target * 12
        image[corner : corner + 10, corner : corner + 10] = 255
        return image

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self._t = 0
        return self._observe(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        reward = float(int(action) == self._target)
        self._t += 1
        return self._observe(), reward, False, self._t >= self.ep_length, {}


class ImageCueMemoryEnv(gym.Env):
    """:class:`CueMemoryEnv` in pictures, for the CNN-LSTM policies: 36×36 single-channel
    ``uint8`` images (the Nature CNN's smallest input). The cue is a bright square in the
    left or right half at the first step only; blank frames follow; the query frame is a
    bar across the middle, the same for both cues."""

    observation_space = gym.spaces.Box(0, 255, (36, 36, 1), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, delay: int = 3) -> None:
        self.memory = CueMemoryEnv(delay)

    def _image(self, obs: np.ndarray) -> np.ndarray:
        image = np.zeros((36, 36, 1), np.uint8)
        if obs[0] or obs[1]:
            left = 2 if obs[0] else 20
            image[10:26, left : left + 14] = 255
        elif obs[2]:
            image[16:20, :] = 255
        return image

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.memory.reset(seed=seed)
        return self._image(obs), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.memory.step(action)
        return self._image(obs), reward, terminated, truncated, info
