"""``learn``: a loop over a trainer with progress, logging, TensorBoard and callbacks.

Reports flow out of the trainer to these consumers; none of them reaches into the run.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from acktr_lab.logger import TableLogger, TensorBoardLogger

if TYPE_CHECKING:
    from acktr_lab.report import UpdateReport
    from acktr_lab.trainer import Trainer


def _table_row(trainer: Trainer, report: UpdateReport) -> dict[str, Any]:
    """The values Stable Baselines 2's ACKTR logs, under its names."""
    returns, lengths = trainer.episode_returns, trainer.episode_lengths
    return {
        "nupdates": report.update,
        "total_timesteps": report.timesteps,
        "fps": int(report.fps),
        "policy_entropy": report.entropy,
        "policy_loss": report.policy_loss,
        "value_loss": report.value_loss,
        "explained_variance": report.explained_variance,
        "kl": report.kl,
        "ep_reward_mean": float(np.mean(returns)) if returns else float("nan"),
        "ep_len_mean": float(np.mean(lengths)) if lengths else float("nan"),
    }


def _tensorboard_row(report: UpdateReport) -> dict[str, Any]:
    row = {"step": report.timesteps, **report.scalars()}
    # Stable Baselines 2 names, so existing TensorBoard layouts keep working.
    row.update(
        {
            "loss/entropy_loss": report.entropy,
            "loss/policy_gradient_loss": report.policy_loss,
            "loss/value_function_loss": report.value_loss,
            "input_info/learning_rate": report.learning_rate,
        }
    )
    if report.episode_returns:
        row["episode_reward"] = float(np.mean(report.episode_returns))
    return row


def _callbacks(callback: Any) -> list[Any]:
    """``callback`` as a list: None, one callback, or a list/tuple of them (every one is called)."""
    if callback is None:
        return []
    return list(callback) if isinstance(callback, list | tuple) else [callback]


def check_learn_arguments(
    callback: Any, log_interval: Any, tb_log_name: Any, reset_num_timesteps: Any = True, progress_bar: Any = None
) -> None:
    """``ValueError`` naming the argument, before a run starts, for: a callback that is
    neither an object with ``on_update`` nor a function taking ``(locals, globals)``; a
    ``log_interval`` that is not a positive integer; a ``tb_log_name`` that is not a plain
    folder name (no path separators, not ``.``/``..``: the run's logs stay under
    ``tensorboard_log``); ``reset_num_timesteps`` not a bool, ``progress_bar`` not a bool or None."""
    for each in _callbacks(callback):
        if hasattr(each, "on_update"):
            if not callable(each.on_update):
                raise ValueError(f"callback {each!r}: its on_update is not callable")
            continue
        if not callable(each):
            raise ValueError(
                f"callback must be a function callback(locals, globals), an object with on_update(report), "
                f"or a list of them; got {each!r}"
            )
        try:
            signature = inspect.signature(each)
        except (TypeError, ValueError):  # a builtin without a signature: let the call decide
            continue
        try:
            signature.bind(None, None)
        except TypeError as error:
            raise ValueError(f"callback {each!r} cannot be called as callback(locals, globals): {error}") from error
    if isinstance(log_interval, bool) or not isinstance(log_interval, int | np.integer) or log_interval < 1:
        raise ValueError(f"log_interval must be a positive integer, got {log_interval!r}")
    if not isinstance(tb_log_name, str) or tb_log_name in ("", ".", "..") or any(c in tb_log_name for c in "/\\"):
        raise ValueError(f"tb_log_name must be a plain folder name (no path separators), got {tb_log_name!r}")
    if not isinstance(reset_num_timesteps, bool | np.bool_):
        raise ValueError(f"reset_num_timesteps must be True or False, got {reset_num_timesteps!r}")
    if progress_bar is not None and not isinstance(progress_bar, bool | np.bool_):
        raise ValueError(f"progress_bar must be True, False or None, got {progress_bar!r}")


def _wants_to_stop(callback: Any, report: UpdateReport, frame_locals: dict[str, Any]) -> bool:
    if hasattr(callback, "on_update"):
        return callback.on_update(report) is False
    return callback(frame_locals, globals()) is False


def run_learn(
    trainer: Trainer,
    *,
    callback: Any = None,
    log_interval: int = 100,
    verbose: int = 0,
    progress_bar: bool | None = None,
    tensorboard_log: str | None = None,
    tb_log_name: str = "ACKTR",
    full_tensorboard_log: bool = False,
) -> Trainer:
    """Run ``trainer`` to its end (or until ``callback`` returns False), showing and logging it.

    ``callback``: a Stable Baselines 2 function ``callback(locals, globals)`` or an object with
    ``on_update(report)`` and optionally ``on_training_start(trainer)``/``on_training_end(trainer)``
    (see :mod:`acktr_lab.callbacks`), or a list of them (as Stable Baselines 3's ``CallbackList``).

    ``verbose >= 1``: a progress bar (unless ``progress_bar`` says otherwise) and Stable
    Baselines 2's table every ``log_interval`` updates. ``tensorboard_log``: scalars (and
    parameter histograms with ``full_tensorboard_log``) under ``tb_log_name``.
    """
    check_learn_arguments(callback, log_interval, tb_log_name, progress_bar=progress_bar)
    callbacks = _callbacks(callback)
    for each in callbacks:
        if hasattr(each, "on_training_start"):
            each.on_training_start(trainer)
    table = TableLogger() if verbose >= 1 else None
    tensorboard = TensorBoardLogger(tensorboard_log, tb_log_name) if tensorboard_log else None
    show_bar = verbose >= 1 if progress_bar is None else progress_bar
    bar = tqdm(total=trainer.run_length, unit="step", disable=not show_bar, dynamic_ncols=True)
    try:
        for report in trainer:
            bar.update(min(report.timesteps, trainer.total_timesteps) - trainer.start_timesteps - bar.n)
            if trainer.episode_returns:
                bar.set_postfix(ep_return=f"{np.mean(trainer.episode_returns):.1f}", refresh=False)
            if tensorboard is not None:
                tensorboard.write(_tensorboard_row(report))
                if full_tensorboard_log:
                    tensorboard.histograms(trainer.learner.get_parameters(), report.timesteps)
            if table is not None and (report.update % max(1, log_interval) == 0 or report.update == 1):
                table.write(_table_row(trainer, report))
            frame_locals = {"self": trainer.model, "trainer": trainer, "report": report, "update": report.update}
            # every callback sees every report; any one returning False stops the run
            if [each for each in callbacks if _wants_to_stop(each, report, frame_locals)]:
                break
    finally:
        bar.close()
        if tensorboard is not None:
            tensorboard.close()
    for each in callbacks:
        if hasattr(each, "on_training_end"):
            each.on_training_end(trainer)
    return trainer
