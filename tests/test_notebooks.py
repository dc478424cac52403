"""The tutorial notebooks: committed without outputs, exactly what ``notebooks/make_notebooks.py``
writes, and each runs top to bottom with no clicks.

Every ``notebooks/*.ipynb`` is executed with nbclient on the ``python3`` kernel (which
jupyter_client resolves to this interpreter: checked below) with ``ACKTR_LAB_QUICK=1``, in a
temporary working directory so that the notebooks' ``runs/`` outputs never land in the repo.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat import NotebookNode
from png_checks import PNG_SIGNATURE

from acktr_lab import TENSORFLOW_ENV_DEFAULTS

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

#: Notebooks whose executed version must show a static PNG (kept where widgets do not render).
SHOWS_PNG = {
    "01_train_and_watch",
    "02_save_load_compare",
    "03_pretraining",
    "04_inside_kfac",
    "05_hyperparameters_live",
    "06_continuous_control",
    "07_atari_cnn",
    "08_recurrent_policies",
    "09_coming_from_stable_baselines2",
    "10_sweeps",
}

#: With ACKTR_LAB_QUICK=1 a notebook takes 20–90 s here, on a core shared with another test
#: process; far more means the switch stopped shrinking the run (a full run takes many minutes).
QUICK_LIMIT_S = 300.0


#: TensorFlow's C++ start-up lines, and its warning at the first update's dry run, which
#: users must never see above a dashboard.
TENSORFLOW_NOISE = ("absl::InitializeLog", "cpu_feature_guard", "oneDNN custom operations", "Local rendezvous")


def kernel_env() -> dict[str, str]:
    """The kernel's environment: ours, plus the switch that shrinks every run, and no
    ``TF_CPP_MIN_LOG_LEVEL`` or ``TF_ENABLE_ONEDNN_OPTS`` (a user's kernel has neither:
    acktr_lab must quiet TensorFlow)."""
    env = {k: v for k, v in os.environ.items() if k not in TENSORFLOW_ENV_DEFAULTS}
    return {**env, "ACKTR_LAB_QUICK": "1"}


def execute(notebook: NotebookNode, workdir: Path) -> NotebookNode:
    """Run every cell in ``workdir`` on the ``python3`` kernel; fail with the cell's error."""
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    try:
        client.execute(env=kernel_env())
    except CellExecutionError as error:
        pytest.fail(f"a cell failed:\n{error}", pytrace=False)
    return notebook


def outputs(notebook: NotebookNode) -> list[NotebookNode]:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def widget_models(notebook: NotebookNode) -> dict[str, Any]:
    return notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOKS_DIR}: run python notebooks/make_notebooks.py"


def test_kernel_is_this_environment(tmp_path: Path) -> None:
    """``python3`` must start this interpreter's environment (ipykernel's spec: ``sys.executable``),
    or the notebooks would be tested against some other installation."""
    code = "import os, sys\nprint(sys.prefix)\nprint(os.environ.get('ACKTR_LAB_QUICK'))"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    execute(notebook, tmp_path)
    prefix, quick = "".join(o.get("text", "") for o in outputs(notebook)).split()
    assert Path(prefix).resolve() == Path(sys.prefix).resolve()
    assert quick == "1"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_has_no_outputs(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert '"output_type"' not in text, f"{path.name} was committed with outputs: regenerate it"
    notebook = nbformat.reads(text, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: {cell.source[:60]!r}"
    assert "widgets" not in notebook.metadata, f"{path.name} carries saved widget state"


def test_make_notebooks_regenerates_the_committed_files(tmp_path: Path) -> None:
    """The generator is the source: the committed notebooks must be exactly what it writes."""
    script = tmp_path / "make_notebooks.py"
    shutil.copy(NOTEBOOKS_DIR / "make_notebooks.py", script)
    subprocess.run([sys.executable, str(script)], cwd=tmp_path, check=True, timeout=120)
    generated = {p.name: p.read_bytes() for p in tmp_path.glob("*.ipynb")}
    committed = {p.name: p.read_bytes() for p in NOTEBOOKS}
    hint = "run: python notebooks/make_notebooks.py"
    assert sorted(generated) == sorted(committed), hint
    drifted = [name for name in generated if generated[name] != committed[name]]
    assert not drifted, f"{drifted} differ from what make_notebooks.py writes; {hint}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path) -> None:
    shutil.copy(path, tmp_path / path.name)
    notebook = nbformat.read(tmp_path / path.name, as_version=4)
    started = time.perf_counter()
    execute(notebook, tmp_path)
    elapsed = time.perf_counter() - started
    print(f"{path.name}: {elapsed:.1f} s")

    produced = outputs(notebook)
    errors = [o for o in produced if o.output_type == "error"]
    assert not errors, "\n".join(f"{o.ename}: {o.evalue}" for o in errors)
    tracebacks = [o.text for o in produced if o.output_type == "stream" and "Traceback" in o.text]
    assert not tracebacks, "".join(tracebacks)  # e.g. an exception in a widget callback
    stderr = "".join(o.get("text", "") for o in produced if o.output_type == "stream" and o.name == "stderr")
    assert not [noise for noise in TENSORFLOW_NOISE if noise in stderr], stderr  # named, for a clear message
    assert not stderr, f"{path.name} shows a stderr block: {stderr[:500]}"
    assert elapsed < QUICK_LIMIT_S, f"{path.name} took {elapsed:.0f} s with ACKTR_LAB_QUICK=1"

    if path.stem in SHOWS_PNG:
        pngs = [base64.b64decode(o.data["image/png"]) for o in produced if "image/png" in o.get("data", {})]
        assert pngs, f"{path.name} shows no static image/png output"
        assert all(png.startswith(PNG_SIGNATURE) for png in pngs)

    # A dashboard's last plots stay in the saved widget state (what JupyterLab shows on reopening).
    for model in widget_models(notebook).values():
        if model["model_name"] == "ImageModel" and "acktr-image" in model["state"].get("_dom_classes", ()):
            buffers = {tuple(b["path"]): b for b in model.get("buffers", [])}
            assert ("value",) in buffers, "the dashboard's image was saved empty"
            assert base64.b64decode(buffers[("value",)]["data"]).startswith(PNG_SIGNATURE)
    if path.stem == "01_train_and_watch":
        printed = "".join(o.get("text", "") for o in produced if o.output_type == "stream" and o.name == "stdout")
        assert "paused · update 60 · timesteps" in printed  # dashboard.status_text after run_blocking
        assert any(m["model_name"] == "ImageModel" for m in widget_models(notebook).values()), (
            "the executed notebook kept no dashboard widget state"
        )
