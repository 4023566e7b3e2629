"""The screenshots of docs/TRACKING.md: a small MNIST study tracked to MLflow and TensorBoard, each
UI started on a localhost port and photographed by headless Chromium.

    .venv/bin/python scripts/screenshots.py            # writes docs/images/tracking-*.png

It trains ``studies/quickstart.toml`` on 4000 training images for 6 epochs,
writes it with ``trainlab run --track mlflow:sqlite:///... --track tensorboard:DIR``, starts
``mlflow ui`` and ``tensorboard --logdir``, waits until each answers, and saves one PNG per page
(MLflow's experiment page; TensorBoard's scalars and HParams).
Everything else lives in a temporary folder. Needs the extras mlflow and tensorboard, Debian's
``chromium`` and the MNIST data (``trainlab data list``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
BIN = Path(sys.executable).parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
WINDOW = (1500, 900)
RENDER_MS = 60000
"""How long Chromium lets a page's scripts fetch and draw before the screenshot (both UIs are
single-page applications that load their data after the page)."""


def study_file(folder: Path) -> Path:
    """The quickstart study, smaller: 4000 training images, 6 epochs, two seeds."""
    text = (ROOT / "studies" / "quickstart.toml").read_text(encoding="utf-8")
    tomllib.loads(text)  # the file as shipped must parse
    text = text.replace(
        'split = { kind = "first", validation = 5000 }',
        'split = { kind = "first", validation = 1000 }\ntrain_limit = 4000',
    )
    text = text.replace("epochs = 3", "epochs = 6")
    path = folder / "quickstart.toml"
    path.write_text(text, encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(command: Sequence[str], url: str, log: Path) -> Iterator[None]:
    """Run a UI server until the block ends, once ``url`` answers."""
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    urllib.request.urlopen(url, timeout=5).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"{command[0]} did not start; see {log}") from None
                    time.sleep(1)
            yield
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def screenshot(url: str, shot: Path, profile: Path) -> None:
    assert CHROMIUM is not None, "needs chromium (apt-get install chromium)"
    command = [
        CHROMIUM,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={RENDER_MS}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--screenshot={shot}",
        url,
    ]
    subprocess.run(command, capture_output=True, timeout=300, check=False)
    if not shot.exists():
        raise RuntimeError(f"chromium wrote no screenshot of {url}")
    print(f"wrote {shot}", file=sys.stderr)


def main() -> int:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        mlflow_db = f"sqlite:///{folder / 'mlflow.db'}"
        logdir = folder / "tb"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run(
            [str(BIN / "trainlab"), "run", str(study_file(folder)), "--store", str(folder / "s.db"), "--quiet"]
            + ["--track", f"mlflow:{mlflow_db}", "--track", f"tensorboard:{logdir}"],
            cwd=folder,
            env=env,
            check=True,
        )
        port = free_port()
        ui = [str(BIN / "mlflow"), "ui", "--backend-store-uri", mlflow_db, "--host", "127.0.0.1", "--port", str(port)]
        with serving(ui, f"http://127.0.0.1:{port}/health", folder / "mlflow.log"):
            from mlflow import MlflowClient

            client = MlflowClient(mlflow_db)
            experiment = client.get_experiment_by_name("quickstart")
            base = f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}"
            screenshot(f"{base}/runs?compareRunsMode=CHART", IMAGES / "tracking-mlflow-runs.png", folder / "p1")
        port = free_port()
        board = [str(BIN / "tensorboard"), "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)]
        with serving(board, f"http://127.0.0.1:{port}/", folder / "tensorboard.log"):
            screenshot(
                f"http://127.0.0.1:{port}/#timeseries", IMAGES / "tracking-tensorboard-scalars.png", folder / "p3"
            )
            screenshot(f"http://127.0.0.1:{port}/#hparams", IMAGES / "tracking-tensorboard-hparams.png", folder / "p4")
    return 0


if __name__ == "__main__":
    sys.exit(main())
