"""Small tasks that isolate one ability of a policy.

:class:`CueMemoryEnv` needs memory: the one observation that tells the right action comes
``delay + 1`` steps before the action counts, and the observation at that moment is the same
whatever the answer. A feedforward policy (``MlpPolicy``) acts on the current observation only,
so it is right half the time; a recurrent policy (``MlpLstmPolicy``) can carry the cue in its
state. Notebook 08 and the recurrent tests use it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["CueMemoryEnv"]


class CueMemoryEnv(gym.Env):
    """Remember a cue over ``delay`` blank steps and name it at a query.

    An episode is ``delay + 2`` steps. Observations are 3 numbers in ``{0, 1}``:

    ======  ===================  ==========================================
    step    observation          reward for action ``a``
    ======  ===================  ==========================================
    0       ``[1, 0, 0]`` or     0 (the cue: ``[1, 0, 0]`` is cue 0,
            ``[0, 1, 0]``        ``[0, 1, 0]`` is cue 1)
    1…d     ``[0, 0, 0]``        0 (blank)
    d + 1   ``[0, 0, 1]``        ``1`` if ``a`` equals the cue, else 0; the
                                 episode terminates (the query)
    ======  ===================  ==========================================

    Actions are ``Discrete(2)``: the cue named. Only the answer at the query counts, so the
    episode return is 1 (remembered) or 0 (not). The query observation is the same for both
    cues, so a policy without memory scores 0.5 in expectation, whatever it learns.

    The cue is drawn uniformly from the env's generator at each ``reset``;
    ``reset(options={"cue": c})`` fixes it (0 or 1).
    """

    def __init__(self, delay: int = 3) -> None:
        if isinstance(delay, bool) or not isinstance(delay, (int, np.integer)) or delay < 0:
            raise ValueError(f"delay must be a non-negative integer, got {delay!r}")
        self.observation_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.delay = int(delay)
        self._t = 0
        self._cue = 0

    @property
    def cue(self) -> int:
        """The cue of the current episode (0 or 1)."""
        return self._cue

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        cue = (options or {}).get("cue")
        if cue is None:
            cue = int(self.np_random.integers(2))
        elif cue not in (0, 1):
            raise ValueError(f"options['cue'] must be 0 or 1, got {cue!r}")
        self._t = 0
        self._cue = int(cue)
        obs = np.zeros(3, np.float32)
        obs[self._cue] = 1.0
        return obs, {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._t > self.delay:  # the observation acted on was the query
            return np.zeros(3, np.float32), float(int(action) == self._cue), True, False, {}
        self._t += 1
        obs = np.zeros(3, np.float32)
        if self._t > self.delay:
            obs[2] = 1.0
        return obs, 0.0, False, False, {}
