"""Sweeps on a local Ray Tune (2 CPUs, small budgets): grid, failures, ASHA and PBT.

One Ray instance serves the module (starting Ray costs tens of seconds here); ``sweep.run``
leaves a Ray it did not start running.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the sweep extra (ray[tune]) is not installed")
from ray import tune  # noqa: E402

from acktr_lab.sweep import run  # noqa: E402
from acktr_lab.sweep.runner import make_scheduler, search_space  # noqa: E402

pytestmark = pytest.mark.slow
FIXED = {"n_envs": 4, "lr_schedule": "constant"}


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_grid_runs_every_configuration_and_seed(tmp_path: Path) -> None:
    result = run(
        "CartPole-v1",
        {"kfac_clip": [0.001, 0.01]},
        seeds=[0, 1],
        timesteps=1_600,
        fixed=FIXED,
        report_every=5,
        eval_episodes=2,
        storage_path=tmp_path,
        name="grid",
    )
    table = result.table.sort_values(["kfac_clip", "seed"]).reset_index(drop=True)
    assert table[["kfac_clip", "seed"]].values.tolist() == [[0.001, 0], [0.001, 1], [0.01, 0], [0.01, 1]]
    assert (table["status"] == "finished").all() and table["error"].isna().all()
    assert (table["timesteps"] == 1_600).all() and table["eval/mean_return"].notna().all()
    best = table.loc[table["eval/mean_return"].idxmax()]
    assert result.best_config == {"kfac_clip": best["kfac_clip"], "seed": best["seed"]}
    model = result.best_model()
    assert model.num_timesteps == 1_600 and model.kfac_clip == best["kfac_clip"]
    assert model.predict(np.zeros(4, np.float32), deterministic=True)[0] in (0, 1)
    assert set(result.scores()) == {"kfac_clip=0.001", "kfac_clip=0.01"}
    history = result.histories[str(best["trial_id"])]
    assert history["timesteps"].is_monotonic_increasing and history["train/kl"].notna().all()


def test_a_failing_trial_is_reported_and_the_others_finish(tmp_path: Path) -> None:
    result = run(
        "CartPole-v1",
        {"policy_kwargs": [None, {"net_arch": [{"pi": [-3]}]}]},
        seeds=[0],
        timesteps=800,
        fixed=FIXED,
        report_every=5,
        eval_episodes=1,
        storage_path=tmp_path,
        name="failing",
    )
    table = result.table.set_index(result.table["policy_kwargs"].isna())
    assert table.loc[True, "status"] == "finished" and table.loc[True, "timesteps"] == 800
    assert table.loc[False, "status"] == "error"
    assert "ValueError" in table.loc[False, "error"] and "-3" in table.loc[False, "error"]
    assert result.best_model_path is not None


def test_asha_stops_the_worst_trials_early(tmp_path: Path) -> None:
    result = run(
        "CartPole-v1",
        {"learning_rate": [1e-4, 1e-3, 0.25, 0.5]},
        seeds=[0],
        timesteps=3_200,
        fixed=FIXED,
        scheduler="asha",
        report_every=5,
        eval_episodes=1,
        max_concurrent_trials=2,
        storage_path=tmp_path,
        name="asha",
    )
    finished = result.table["timesteps"] == 3_200
    assert 1 <= finished.sum() < 4  # some trials were stopped before their budget
    assert result.table.loc[~finished, "eval/mean_return"].isna().all()  # no final evaluation for them


def test_pbt_exploits_a_checkpoint_with_its_kfac_statistics(tmp_path: Path) -> None:
    result = run(
        "CartPole-v1",
        {"learning_rate": tune.uniform(0.01, 0.5)},
        seeds=[0],
        timesteps=2_400,
        fixed=FIXED,
        search="random",
        num_samples=2,
        scheduler="pbt",
        perturbation_interval=1_200,  # one exploit, at 1,200 steps (synchronous PBT: both have a score)
        report_every=5,
        eval_episodes=1,
        storage_path=tmp_path,
        name="pbt",
    )
    histories = result.histories
    exploits = [
        (trial, row)
        for trial, history in histories.items()
        for _, row in history.iterrows()
        if row["pbt/parent"] not in ("", trial) and not np.isnan(row.get("kfac/restored_fingerprint", np.nan))
    ]
    assert exploits, "no exploit happened"
    for _trial, row in exploits:
        assert row["pbt/parent"] in histories, (row["pbt/parent"], list(histories))
        donor = histories[row["pbt/parent"]]
        saved = donor[donor["timesteps"] == row["pbt/parent_timesteps"]]
        # the statistics it continued from are the donor's at that checkpoint, by value
        expected = saved["kfac/statistics_fingerprint"].iloc[-1]
        assert row["kfac/restored_fingerprint"] == pytest.approx(expected, rel=1e-12)
        # its hyperparameters were mutated from the donor's, and the model uses them
        assert row["config/learning_rate"] != pytest.approx(saved["config/learning_rate"].iloc[-1])
        assert row["train/learning_rate"] == pytest.approx(row["config/learning_rate"])


def test_bad_sweeps_are_refused_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="not ACKTR arguments"):
        search_space({"learning_rat": [0.1]}, [0], "grid")
    with pytest.raises(ValueError, match="kfac_clip"):
        search_space({"kfac_clip": [0.001, -1.0]}, [0], "grid")
    with pytest.raises(ValueError, match="seeds"):
        search_space({"kfac_clip": [0.001]}, [], "grid")
    with pytest.raises(ValueError, match="live hyperparameters"):
        make_scheduler("pbt", {"n_steps": [5, 10]}, 1000, None)
    with pytest.raises(ValueError, match="scheduler"):
        make_scheduler("hyperband!", {}, 1000, None)


def test_pbt_perturbs_on_report_boundaries() -> None:
    """Synchronous PBT waits for every trial at a perturbation point; between two reports it
    waited for ever (measured), so the interval is rounded up to whole reports."""
    from acktr_lab.sweep.runner import _report_steps

    steps = _report_steps("CartPole-v1", {"n_envs": 8}, report_every=2)  # 2 updates × 8 envs × 20 steps
    assert steps == 320
    assert make_scheduler("pbt", {"kfac_clip": [0.001, 0.01]}, 1_600, 400, steps)._perturbation_interval == 640
    assert make_scheduler("pbt", {"kfac_clip": [0.001, 0.01]}, 1_600, 640, steps)._perturbation_interval == 640
