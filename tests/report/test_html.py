"""The HTML report: one self-contained file (tables, notes, inline figures, model summaries,
trials) that references nothing outside itself, and that a real browser renders: headless
Chromium (Debian's ``chromium``) takes a screenshot, and the test finds in it the colours that
only the drawn figures and the styled table can produce."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from trained_study import trained_store

from trainlab.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WINDOW = (1400, 2600)


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = trained_store(tmp_path_factory.getbasetemp())
    out = tmp_path_factory.mktemp("html")
    assert (
        main(
            [
                "report",
                "small",
                "--store",
                str(store),
                "--format",
                "html",
                "--out",
                str(out),
                "--target",
                "0.7",
                "--tsne-samples",
                "80",
            ]
        )
        == 0
    )
    return out / "small.html"


def _images(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def test_one_self_contained_file(report_file: Path) -> None:
    assert [p.name for p in report_file.parent.iterdir()] == ["small.html"]
    text = report_file.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "Content-Security-Policy" in text and "default-src 'none'; img-src data:" in text
    assert not re.search(r'(src|href)\s*=\s*"(?!data:)', text), "nothing may be loaded from outside the file"
    assert "url(" not in text and "@import" not in text and "<script" not in text
    images = _images(text)
    assert len(images) == 7, "curves, final metrics, time, learning rate, confusion matrix, test images, t-SNE"
    for data in images:
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == "PNG" and min(img.size) > 200


def test_report_content(report_file: Path) -> None:
    text = report_file.read_text(encoding="utf-8")
    assert "<h1>Study small</h1>" in text and "MLP with SGD and Adam, and a CNN" in text
    for heading in (
        "Results",
        "Learning curves and time",
        "Chosen trial on the test set",
        "Features: t-SNE of the last hidden layer",
        "Models",
        "Trials",
    ):
        assert f"<h2>{heading}</h2>" in text
    assert "<th>95% CI</th>" in text and "<th>vs best</th>" in text and "<th>reached 0.7</th>" in text
    assert text.count("<tr class=chosen>") == 2, "the chosen variant in the results, its trial in the trials table"
    assert "Welch&#x27;s t-test" in text and "corrected by Holm over all 3 pairs of variants" in text
    assert "only for the variant chosen on validation" in text and "<td class=withheld>·</td>" in text
    assert "Total params: <b>1,660</b>" in text and "Total params: <b>448</b>" in text
    assert "<td>conv2d_1 (Conv2D)</td><td>(None, 6, 8, 8)</td><td>60</td>" in text
    assert len(re.findall(r"<td>[0-9a-f]{10}</td>", text)) == 6, "every trial, by hash"


def test_no_data_leaves_out_the_test_set_figures(tmp_path: Path) -> None:
    store = trained_store(tmp_path)
    assert (
        main(
            [
                "report",
                "small",
                "--store",
                str(store),
                "--format",
                "html",
                "--out",
                str(tmp_path / "r.html"),
                "--no-data",
            ]
        )
        == 0
    )
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert len(_images(text)) == 4 and "--no-data" in text


def _screenshot(page: Path, shot: Path, profile: Path) -> np.ndarray:
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--screenshot={shot}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        page.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert shot.exists(), f"chromium wrote no screenshot (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
    with Image.open(shot) as img:
        assert img.size == WINDOW
        return np.asarray(img.convert("RGB"), dtype=np.int16)


def _near(pixels: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 12) -> int:
    return int((np.abs(pixels - np.array(rgb)).max(axis=2) <= tolerance).sum())


TAB_BLUE, TAB_ORANGE, CHOSEN_ROW = (31, 119, 180), (255, 127, 14), (255, 246, 214)


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed; `make setup` installs it where apt-get runs as root"
)
def test_report_renders_in_headless_chromium(report_file: Path, tmp_path: Path) -> None:
    pixels = _screenshot(report_file, tmp_path / "shot.png", tmp_path / "profile")
    assert _near(pixels, CHOSEN_ROW) > 2000, "the results table with its highlighted chosen row"
    assert _near(pixels, TAB_BLUE) > 500 and _near(pixels, TAB_ORANGE) > 500, "the inline figures, decoded and drawn"
    assert (pixels.sum(axis=2) < 100).sum() > 5000, "text"

    # The same page without its images must fail the figure check: the check sees the figures.
    bare = tmp_path / "bare.html"
    bare.write_text(
        re.sub(r'src="data:image/png;base64,[^"]+"', 'src=""', report_file.read_text(encoding="utf-8")),
        encoding="utf-8",
    )
    pixels = _screenshot(bare, tmp_path / "bare.png", tmp_path / "profile2")
    assert _near(pixels, CHOSEN_ROW) > 2000
    assert _near(pixels, TAB_ORANGE) < 50
