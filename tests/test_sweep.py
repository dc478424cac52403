"""Sweeps on Ray Tune (small budgets): grid, failures, ASHA, PBT and PB2.

One Ray cluster serves the module (starting Ray costs tens of seconds here): two nodes on
this machine, one CPU each (``ray.cluster_utils.Cluster``: a head and a worker node, each
with its own raylet and object store), so that every test also runs the code a real cluster
runs, and PBT's restores cross nodes. ``sweep.run`` leaves a Ray it did not start running.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the sweep extra (ray[tune]) is not installed")
from ray import tune  # noqa: E402

from acktr_lab.sweep import run  # noqa: E402
from acktr_lab.sweep.runner import SweepResult, make_scheduler, search_space  # noqa: E402

pytestmark = pytest.mark.slow
FIXED = {"n_envs": 4, "lr_schedule": "constant"}


@pytest.fixture(scope="module", autouse=True)
def two_node_cluster() -> Iterator[None]:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, configure_logging=False, log_to_driver=False)
    yield
    ray.shutdown()
    cluster.shutdown()


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
        storage_path=tmp_path.as_uri(),  # a URI goes to Tune as it is (file:// here, s3:// on a cluster)
        name="failing",
    )
    assert result.experiment_path == tmp_path / "failing"
    table = result.table.set_index(result.table["policy_kwargs"].isna())
    assert table.loc[True, "status"] == "finished" and table.loc[True, "timesteps"] == 800
    assert table.loc[False, "status"] == "error"
    assert "ValueError" in table.loc[False, "error"] and "-3" in table.loc[False, "error"]
    assert result.best_model_path is not None


def test_asha_stops_the_worst_trials_early(tmp_path: Path) -> None:
    """ASHA compares trials by the reported ``train/learning_rate`` here: a metric that orders
    them the same way whatever the timing (early CartPole returns are noise, and which trials
    reach a rung first depends on the nodes). Trials start in the list's order, best first, so
    every later trial meets a better one at its first rung and stops there."""
    result = run(
        "CartPole-v1",
        {"learning_rate": [0.5, 0.25, 1e-3, 1e-4]},
        seeds=[0],
        timesteps=3_200,
        fixed=FIXED,
        scheduler="asha",
        metric="train/learning_rate",
        report_every=5,
        eval_episodes=1,
        max_concurrent_trials=2,
        storage_path=tmp_path,
        name="asha",
    )
    finished = result.table["timesteps"] == 3_200
    assert 1 <= finished.sum() < 4  # some trials were stopped before their budget
    assert not finished[result.table["learning_rate"] <= 1e-3].any()  # the worst two among them
    assert result.table.loc[~finished, "eval/mean_return"].isna().all()  # no final evaluation for them


def _population_run(tmp_path: Path, scheduler: str, space: dict) -> SweepResult:
    return run(
        "CartPole-v1",
        space,
        seeds=[0],
        timesteps=2_400,
        fixed=FIXED,
        search="random",
        num_samples=2,
        scheduler=scheduler,
        perturbation_interval=1_200,  # one exploit, at 1,200 steps (synchronous: both have a score)
        report_every=5,
        eval_episodes=1,
        storage_path=tmp_path,
        name=scheduler,
    )


def _restores(histories: dict) -> list[tuple[str, dict, dict]]:
    """Every report that followed a restore from a checkpoint, with the checkpoint's own
    report: (trial, the restoring report, the report that wrote the checkpoint)."""
    out = []
    for trial, history in histories.items():
        for _, row in history.iterrows():
            if row["pbt/parent"] and not np.isnan(row.get("kfac/restored_fingerprint", np.nan)):
                donor = histories[row["pbt/parent"]]
                saved = donor[donor["timesteps"] == row["pbt/parent_timesteps"]].iloc[-1]
                out.append((trial, row, saved))
    return out


def _assert_exploits_continue_the_donor(histories: dict, name: str, *, mutated: bool) -> list[tuple[str, dict, dict]]:
    restores = _restores(histories)
    for _trial, row, saved in restores:
        # the statistics a trial continued from are those of the checkpoint it loaded, by value
        assert row["kfac/restored_fingerprint"] == pytest.approx(saved["kfac/statistics_fingerprint"], rel=1e-12)
    exploits = [(trial, row, saved) for trial, row, saved in restores if row["pbt/parent"] != trial]
    assert exploits, "no exploit happened"
    for _trial, row, saved in exploits:
        # the model uses the hyperparameters chosen for it: PBT's are mutated from the donor's
        assert row[f"train/{name}"] == pytest.approx(row[f"config/{name}"])
        if mutated:
            assert row[f"config/{name}"] != pytest.approx(saved[f"config/{name}"])
    return restores


def test_pbt_exploits_a_checkpoint_with_its_kfac_statistics_across_nodes(tmp_path: Path) -> None:
    result = _population_run(tmp_path, "pbt", {"learning_rate": tune.uniform(0.01, 0.5)})
    restores = _assert_exploits_continue_the_donor(result.histories, "learning_rate", mutated=True)
    nodes = {node for history in result.histories.values() for node in history["node"]}
    assert len(nodes) == 2, "the two trials ran on the two nodes"
    # each node runs one trial at a time, so after the exploit one of the two trials restored a
    # checkpoint that the other node wrote (through the storage path, as on a real cluster)
    assert any(row["node"] != saved["node"] for _trial, row, saved in restores)


def test_pb2_exploits_with_values_within_the_bounds(tmp_path: Path) -> None:
    pytest.importorskip("GPy", reason="PB2 needs GPy (the sweep extra)")
    result = _population_run(tmp_path, "pb2", {"learning_rate": tune.uniform(0.01, 0.5)})
    # PB2's bandit may also keep the donor's value (measured: it did in one run of two here)
    _assert_exploits_continue_the_donor(result.histories, "learning_rate", mutated=False)
    values = np.concatenate([history["config/learning_rate"].to_numpy() for history in result.histories.values()])
    assert ((values >= 0.01) & (values <= 0.5)).all()


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
    with pytest.raises(ValueError, match="PB2 searches lr_schedule between bounds"):
        make_scheduler("pb2", {"lr_schedule": ["linear", "constant"]}, 1000, None)
    with pytest.raises(ValueError, match="gamma"):
        make_scheduler("pb2", {"gamma": [0.9, 1.5]}, 1000, None)


def test_pbt_perturbs_on_report_boundaries() -> None:
    """Synchronous PBT waits for every trial at a perturbation point; between two reports it
    waited for ever (measured), so the interval is rounded up to whole reports."""
    from acktr_lab.sweep.runner import _report_steps

    steps = _report_steps("CartPole-v1", {"n_envs": 8}, report_every=2)  # 2 updates × 8 envs × 20 steps
    assert steps == 320
    assert make_scheduler("pbt", {"kfac_clip": [0.001, 0.01]}, 1_600, 400, steps)._perturbation_interval == 640
    assert make_scheduler("pbt", {"kfac_clip": [0.001, 0.01]}, 1_600, 640, steps)._perturbation_interval == 640


def test_a_storage_uri_keeps_local_results_under_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from acktr_lab.sweep.runner import _is_uri, _local_folder

    assert _is_uri("s3://bucket/sweeps") and _is_uri("gs://b/x") and _is_uri("file:///tmp/x")
    assert not _is_uri("runs/sweeps") and not _is_uri("/tmp/a://b") and not _is_uri("C:/sweeps")
    assert _local_folder(str(tmp_path / "grid")) == tmp_path / "grid"  # a local experiment: its own folder
    monkeypatch.chdir(tmp_path)
    assert _local_folder("s3://bucket/sweeps/grid/") == tmp_path / "runs" / "sweeps" / "grid"
    assert (tmp_path / "runs" / "sweeps" / "grid").is_dir()
