"""Recording an expert's episodes in the expert-data format (:func:`generate_expert_traj`)."""

from __future__ import annotations

import os
import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from acktr_lab.expert.data import PathLike, save_expert_data, save_image


def _is_recordable_image_space(space: gym.Space) -> bool:
    """SB2's rule: ``Box`` of ``uint8`` shaped ``(H, W, C)`` with ``C ∈ {1, 3, 4}``."""
    return (
        isinstance(space, gym.spaces.Box)
        and len(space.shape) == 3
        and space.shape[-1] in (1, 3, 4)
        and space.dtype == np.uint8
    )


def _resolve_env(model: Any, env: gym.Env | gym.vector.VectorEnv | str | None) -> tuple[Any, bool]:
    """``(env, created_here)``; an id string is made with ``gymnasium.make``."""
    if isinstance(env, str):
        return gym.make(env), True
    if env is None and hasattr(model, "get_env"):
        env = model.get_env()
    if env is None:
        raise ValueError("no env to record from: pass env=(a gymnasium Env or an env id), or give the model an env")
    return env, False


def _check_recordable_space(space: gym.Space, what: str) -> None:
    supported = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)
    if not isinstance(space, supported):
        raise ValueError(f"cannot record {what} space {space}; supported: Box, Discrete, MultiDiscrete, MultiBinary")


def _recordable_spaces(env: Any) -> tuple[bool, gym.Space, gym.Space]:
    """``(is_vector_env, observation_space, action_space)`` of one env; ``ValueError`` for
    vector envs with more than one env and for unsupported spaces."""
    is_vec_env = isinstance(env, gym.vector.VectorEnv) or hasattr(env, "num_envs")
    if is_vec_env:
        if int(env.num_envs) != 1:
            raise ValueError(
                f"generate_expert_traj records from a single environment, but the vector env has "
                f"{env.num_envs} envs; pass env=<one gymnasium Env> or a vector env with num_envs=1"
            )
        obs_space = getattr(env, "single_observation_space", env.observation_space)
        action_space = getattr(env, "single_action_space", env.action_space)
    else:
        obs_space, action_space = env.observation_space, env.action_space
    _check_recordable_space(obs_space, "observation")
    _check_recordable_space(action_space, "action")
    return is_vec_env, obs_space, action_space


def _env_action(action: Any, space: gym.Space) -> Any:
    """An action as ``env.step`` of a single env expects it."""
    array = np.asarray(action)
    if isinstance(space, gym.spaces.Discrete):
        if array.size != 1:
            raise ValueError(f"the expert returned an action of shape {array.shape} for {space}")
        return int(array.reshape(-1)[0])
    return array.reshape(space.shape).astype(space.dtype, copy=False)


def generate_expert_traj(
    model: Any,
    save_path: PathLike | None = None,
    env: gym.Env | gym.vector.VectorEnv | str | None = None,
    n_timesteps: int = 0,
    n_episodes: int = 100,
    image_folder: str = "recorded_images",
    seed: int | None = None,
    *,
    deterministic: bool = False,
    progress_bar: bool = False,
    verbose: int = 1,
) -> dict[str, np.ndarray]:
    """Train the expert (if asked) and record ``n_episodes`` episodes of it.

    Args:
        model: an RL model (anything with ``predict(obs, deterministic=...) -> (action,
            state)``; if ``n_timesteps > 0`` and it has ``learn``, ``model.learn(n_timesteps)``
            runs first) or any callable ``obs -> action`` (a hand-written controller).
        save_path: where to save (``'expert_cartpole'`` → ``expert_cartpole.npz``); nothing
            is saved when ``None``. Needed to record image observations as files.
        env: a gymnasium ``Env``, a vector env with ``num_envs == 1`` or an env id; ``None``
            uses ``model.get_env()``.
        n_timesteps: training steps before recording (models only).
        n_episodes: episodes to record; an episode ends on ``terminated or truncated``.
        image_folder: for image observations (``Box`` ``uint8`` ``(H, W, C)``, ``C ∈ {1,3,4}``),
            the folder, relative to ``save_path``'s directory, for the PNG files; ``obs`` then
            holds their paths (``<dirname(save_path)>/<image_folder>/<t>.png``, as SB2).
        seed: seed of the first ``env.reset``.
        deterministic: passed to ``model.predict`` (SB2 records with its default, ``False``).
        progress_bar: show a tqdm bar over episodes.
        verbose: 1 prints the shapes of the recorded arrays, as SB2 does.

    Returns:
        ``{'actions', 'obs', 'rewards', 'episode_returns', 'episode_starts'}`` where
        ``episode_starts[t]`` is True iff step t opens an episode and
        ``episode_returns[e] = Σ_t r_t`` over episode e.
    """
    if int(n_episodes) < 1:
        raise ValueError(f"n_episodes must be at least 1, got {n_episodes}")
    is_model = hasattr(model, "predict")
    if not is_model and not callable(model):
        raise TypeError(f"model must have a predict() method or be a callable obs -> action, got {model!r}")

    env, created_here = _resolve_env(model, env)
    try:
        is_vec_env, obs_space, action_space = _recordable_spaces(env)
    except BaseException:
        if created_here:
            env.close()
        raise

    record_images = _is_recordable_image_space(obs_space)
    if record_images and save_path is None:
        warnings.warn(
            "Observations are images but no save_path was given, so they are kept in the arrays; "
            "this can use a lot of memory.",
            stacklevel=2,
        )
        record_images = False
    image_dir = ""
    if record_images:
        assert save_path is not None
        image_dir = os.path.join(os.path.dirname(os.fspath(save_path)), image_folder)
        os.makedirs(image_dir or ".", exist_ok=True)
        if verbose >= 1:
            print(f"Images will be recorded to {image_dir}/ (image shape {obs_space.shape})")

    if n_timesteps > 0 and is_model and hasattr(model, "learn"):
        model.learn(int(n_timesteps))

    observations: list[Any] = []
    actions: list[np.ndarray] = []
    rewards: list[float] = []
    episode_starts: list[bool] = []
    episode_returns = np.zeros((int(n_episodes),))

    progress = None
    if progress_bar:
        from tqdm.auto import tqdm

        progress = tqdm(total=int(n_episodes), desc="recording", unit="episode")

    try:
        obs, _ = env.reset(seed=seed)
        for episode in range(int(n_episodes)):
            if episode > 0:
                # Explicit reset for every autoreset mode of vector envs, too.
                obs, _ = env.reset()
            state = None
            reward_sum = 0.0
            start = True
            while True:
                single_obs = np.asarray(obs[0] if is_vec_env else obs)
                if record_images:
                    image_path = os.path.join(image_dir, f"{len(observations)}.png")
                    save_image(image_path, single_obs)
                    observations.append(image_path)
                else:
                    observations.append(single_obs.copy())

                if is_model:
                    kwargs: dict[str, Any] = {"deterministic": deterministic}
                    if state is not None:  # recurrent models only
                        kwargs["state"] = state
                    action, state = model.predict(obs, **kwargs)
                else:
                    action = model(obs)
                single_action = np.asarray(action)
                if is_vec_env:
                    single_action = single_action.reshape((1, -1))[0] if single_action.ndim > 0 else single_action
                    step_action = np.asarray(_env_action(single_action, action_space))[None]
                else:
                    step_action = _env_action(single_action, action_space)
                obs, reward, terminated, truncated, _ = env.step(step_action)
                if is_vec_env:
                    reward, terminated, truncated = reward[0], terminated[0], truncated[0]

                actions.append(np.asarray(_env_action(single_action, action_space)).reshape(-1))
                rewards.append(float(reward))
                episode_starts.append(start)
                start = False
                reward_sum += float(reward)
                if terminated or truncated:
                    break
            episode_returns[episode] = reward_sum
            if progress is not None:
                progress.update(1)
    finally:
        if progress is not None:
            progress.close()
        if created_here:
            env.close()
        elif env is getattr(model, "env", None) and hasattr(model, "set_env"):
            # Recording reset the model's own env: let the model start its next rollout afresh.
            model.set_env(env)

    if record_images:
        obs_array = np.array(observations)
    elif isinstance(obs_space, gym.spaces.Discrete):
        obs_array = np.array(observations).reshape((-1, 1))
    else:
        obs_array = np.stack(observations).reshape((-1, *obs_space.shape))

    if isinstance(action_space, gym.spaces.Discrete):
        actions_array = np.array(actions, dtype=np.int64).reshape((-1, 1))
    else:
        actions_array = np.stack(actions).reshape((-1, *action_space.shape))

    data = {
        "actions": actions_array,
        "obs": obs_array,
        "rewards": np.array(rewards),
        "episode_returns": episode_returns,
        "episode_starts": np.array(episode_starts, dtype=bool),
    }
    if verbose >= 1:
        for key, value in data.items():
            print(key, value.shape)
    if save_path is not None:
        save_expert_data(save_path, data)
    return data
