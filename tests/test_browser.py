"""The dashboard in a real browser: JupyterLab 4 and Notebook 7 served locally, Debian's Chromium
driven by Playwright.

Notebook 01 (with ``ACKTR_LAB_QUICK=1`` and one extra cell that prints what the last
update used) is run with all its cells the way a user would, then the test checks that
the dashboard's plots arrive as a PNG ``<img>``, types a new ``kfac_clip`` into the
slider's readout, clicks **Step**, and re-runs the extra cell to see that the update the
click made used the new value. A screenshot is saved to ``test-artifacts/``. The same
scenario runs in both front ends (both expose the app as ``window.jupyterapp``), and on
notebook 05 (hyperparameters live) in JupyterLab.

Recipe from the design notes ("Notebooks: what works on this stack"); never run
``playwright install`` (it downloads a browser): the test skips when Chromium or the
``playwright`` package is missing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from png_checks import PNG_SIGNATURE

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "test-artifacts"
SCREENSHOT = ARTIFACTS / "browser_dashboard.png"
SCREENSHOT_NOTEBOOK7 = ARTIFACTS / "browser_dashboard_notebook7.png"
NOTEBOOK = "dashboard.ipynb"
NEW_KFAC_CLIP = 0.0123

#: Appended to notebook 01: what the dashboard's last update used. Run again after the click.
CHECK_CELL = (
    "_r = dashboard.last_report\n"
    "print(f\"CHECK update={_r.update} kfac_clip={_r.hyperparameters['kfac_clip']!r} state={dashboard.state}\")"
)
CHECK_PATTERN = re.compile(r"CHECK update=(\d+) kfac_clip=([0-9.e+-]+) state=(\w+)")

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

MINUTE = 60_000  # Playwright timeouts are in milliseconds


@dataclass
class Lab:
    url: str
    token: str
    process: subprocess.Popen[bytes]
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Tutorial:
    """A tutorial notebook with a dashboard, and what its last update used after running all cells."""

    name: str
    kfac_clip: float  # the value its cells leave in place
    image_size: tuple[int, int]  # the dashboard's figure in pixels


#: Notebook 01 sets kfac_clip 0.002 from code; notebook 05 sets 0.003 from a slider (its branch's
#: 0.0003 is undone by the restore), and its dashboard has four panels in one row.
TRAIN_AND_WATCH = Tutorial("01_train_and_watch", 0.002, (1120, 720))
HYPERPARAMETERS_LIVE = Tutorial("05_hyperparameters_live", 0.003, (1120, 240))


def write_notebook(root: Path, tutorial: Tutorial) -> None:
    """The tutorial notebook plus the check cell."""
    notebook = nbformat.read(REPO / "notebooks" / f"{tutorial.name}.ipynb", as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(CHECK_CELL, id="browser-check"))
    nbformat.write(notebook, root / NOTEBOOK)


def write_settings(config_dir: Path) -> None:
    """No news prompt: it would float over the screenshot."""
    settings = config_dir / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))


def server_log_tail(lab: Lab, n: int = 60) -> str:
    with suppress(OSError):
        return "\n".join(lab.log.read_text(errors="replace").splitlines()[-n:])
    return "(no server log)"


#: How each front end is started: ``python -m jupyter <app>`` plus this flag for ``window.jupyterapp``.
EXPOSE_APP = {
    "lab": "--LabApp.expose_app_in_browser=True",
    "notebook": "--JupyterNotebookApp.expose_app_in_browser=True",
}


@contextmanager
def jupyter_lab(root: Path, home: Path, app: str = "lab") -> Iterator[Lab]:
    """JupyterLab (or Notebook 7, ``app="notebook"``) on 127.0.0.1 serving ``root``;
    config, runtime and settings in ``home``."""
    port, token = free_port(), os.urandom(16).hex()
    config_dir, runtime_dir = home / "config", home / "runtime"
    write_settings(config_dir)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config_dir),
        "JUPYTER_RUNTIME_DIR": str(runtime_dir),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "ACKTR_LAB_QUICK": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    command = [
        sys.executable, "-m", "jupyter", app, "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        EXPOSE_APP[app], "--ServerApp.allow_root=True",
    ]  # fmt: skip
    log = home / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    lab = Lab(f"http://127.0.0.1:{port}", token, process, log)
    try:
        wait_until_serving(lab, timeout=120)
        yield lab
    finally:
        stop(lab)


def wait_until_serving(lab: Lab, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            raise RuntimeError(f"the jupyter server exited with {lab.process.returncode}:\n{server_log_tail(lab)}")
        with (
            suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(f"{lab.url}/api/status?token={lab.token}", timeout=5) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"the jupyter server did not answer in {timeout:.0f} s:\n{server_log_tail(lab)}")


def stop(lab: Lab) -> None:
    """Shut the server down (it shuts its kernels down), then make sure of it, by process id."""
    children: list[Any] = []
    with suppress(Exception):
        import psutil

        children = psutil.Process(lab.process.pid).children(recursive=True)
    with suppress(OSError, urllib.error.URLError):
        request = urllib.request.Request(f"{lab.url}/api/shutdown?token={lab.token}", method="POST")
        urllib.request.urlopen(request, timeout=10).close()
    try:
        lab.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(lab.process.pid, signal.SIGTERM)
        try:
            lab.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(lab.process.pid, signal.SIGKILL)
            lab.process.wait(timeout=10)
    for child in children:  # kernels run in sessions of their own
        with suppress(Exception):
            child.wait(timeout=5)
        with suppress(Exception):
            child.kill()


def check_line(page: Any, update: int | None = None) -> tuple[int, float, str]:
    """Wait for the check cell's output (for ``update``, when given) and parse it."""
    wanted = f"CHECK update={update} " if update is not None else "CHECK update="
    output = page.locator(".jp-OutputArea-output", has_text=wanted).last
    output.wait_for(timeout=4 * MINUTE)
    match = CHECK_PATTERN.search(output.inner_text())
    assert match, output.inner_text()
    return int(match[1]), float(match[2]), match[3]


def dashboard_image(page: Any) -> dict[str, Any]:
    """The dashboard ``<img>``: its source, decoded size and the first bytes of what it shows."""
    return page.evaluate(
        """async () => {
            const img = document.querySelector('img.acktr-image');
            const blob = await (await fetch(img.src)).blob();
            const head = Array.from(new Uint8Array(await blob.slice(0, 8).arrayBuffer()));
            return {src: img.src, type: blob.type, head, width: img.naturalWidth, height: img.naturalHeight};
        }"""
    )


def run_dashboard_scenario(
    tmp_path: Path, app: str, path: str, screenshot: Path, prefix: str, tutorial: Tutorial = TRAIN_AND_WATCH
) -> None:
    """Open ``path`` (``{notebook}`` filled in) in ``jupyter <app>``, run all cells, drive the
    dashboard and save ``screenshot``; on failure leave ``<prefix>_failure.png`` and logs behind."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

    root, home = tmp_path / "root", tmp_path / "home"
    root.mkdir()
    home.mkdir()
    write_notebook(root, tutorial)
    ARTIFACTS.mkdir(exist_ok=True)
    console: list[str] = []
    started = time.monotonic()

    with jupyter_lab(root, home, app) as lab, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 1250})
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        try:
            page.goto(f"{lab.url}/{path.format(notebook=NOTEBOOK)}?token={lab.token}", timeout=2 * MINUTE)
            page.wait_for_function(
                "() => window.jupyterapp?.shell?.currentWidget?.sessionContext?.session?.kernel",
                timeout=2 * MINUTE,
            )
            kernel = page.evaluate(
                """async () => {
                    const panel = window.jupyterapp.shell.currentWidget;
                    await panel.revealed;
                    await panel.sessionContext.ready;
                    return panel.sessionContext.session.kernel.name;
                }"""
            )
            assert kernel == "python3"
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

            # 1. The plots arrive as a PNG image in the widget.
            page.wait_for_function(
                "() => { const i = document.querySelector('img.acktr-image');"
                " return i && i.complete && i.naturalWidth > 0; }",
                timeout=3 * MINUTE,
            )
            update, kfac_clip, state = check_line(page)  # every cell has run
            assert kfac_clip == pytest.approx(tutorial.kfac_clip) and state == "paused"
            before = dashboard_image(page)
            assert before["type"] == "image/png" and bytes(before["head"]) == PNG_SIGNATURE
            assert (before["width"], before["height"]) == tutorial.image_size
            sideways = page.evaluate(
                "() => { const grid = document.querySelector('.acktr-controls');"
                " return grid.scrollWidth - grid.clientWidth; }"
            )
            assert sideways <= 1, f"the controls are {sideways}px wider than the notebook: they scroll sideways"

            # 2. A new kfac_clip typed into the slider's readout reaches the kernel ...
            dashboard = page.locator(".acktr-dashboard")
            status = page.locator(".acktr-status")
            readout = page.locator(".acktr-control-kfac_clip .widget-readout")
            readout.scroll_into_view_if_needed()
            readout.click()
            page.keyboard.press("Control+A")
            page.keyboard.type(str(NEW_KFAC_CLIP))
            page.keyboard.press("Enter")
            sync_api.expect(status).to_contain_text(re.compile(r"kfac_clip = 0\.0123"), timeout=MINUTE)

            # 3. ... and the update that Step makes uses it; the plots are redrawn.
            page.locator(".acktr-step").click()
            sync_api.expect(status).to_contain_text(f"update {update + 1}", timeout=MINUTE)
            page.wait_for_function(
                "(old) => { const i = document.querySelector('img.acktr-image');"
                " return i.src !== old && i.complete && i.naturalWidth > 0; }",
                arg=before["src"],
                timeout=MINUTE,
            )
            page.evaluate(
                """() => {
                    const notebook = window.jupyterapp.shell.currentWidget.content;
                    notebook.activeCellIndex = notebook.widgets.length - 1;
                    window.jupyterapp.commands.execute('notebook:run-cell');
                }"""
            )
            _, after_clip, after_state = check_line(page, update + 1)
            assert after_clip == pytest.approx(NEW_KFAC_CLIP, rel=1e-6)
            assert after_state == "paused"
            assert page.locator(".acktr-control-kfac_clip .widget-readout").inner_text().startswith("0.0123")

            dashboard.scroll_into_view_if_needed()
            page.screenshot(path=str(screenshot))
            assert not [line for line in console if "Error" in line and "widget" in line.lower()], console
        except BaseException:
            with suppress(Exception):
                page.screenshot(path=str(ARTIFACTS / f"{prefix}_failure.png"))
            (ARTIFACTS / f"{prefix}_server.log").write_text(server_log_tail(lab, 400))
            (ARTIFACTS / f"{prefix}_console.log").write_text("\n".join(console))
            print(f"--- server log (tail) ---\n{server_log_tail(lab)}\n--- browser console ---")
            print("\n".join(console[-60:]))
            raise
        finally:
            browser.close()
    print(f"browser test ({app}): {time.monotonic() - started:.0f} s; screenshot {screenshot}")


def test_dashboard_in_jupyterlab(tmp_path: Path) -> None:
    run_dashboard_scenario(tmp_path, "lab", "lab/tree/{notebook}", SCREENSHOT, "browser")


def test_dashboard_in_notebook7(tmp_path: Path) -> None:
    run_dashboard_scenario(tmp_path, "notebook", "notebooks/{notebook}", SCREENSHOT_NOTEBOOK7, "browser_notebook7")


def test_hyperparameters_live_notebook_sliders_change_the_run(tmp_path: Path) -> None:
    """Notebook 05's dashboard: a slider typed in the page reaches the next update (JupyterLab)."""
    screenshot = ARTIFACTS / "browser_hyperparameters_live.png"
    run_dashboard_scenario(tmp_path, "lab", "lab/tree/{notebook}", screenshot, "browser_05", HYPERPARAMETERS_LIVE)
