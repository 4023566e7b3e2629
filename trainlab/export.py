"""Models people can reuse: a finished trial's chosen weights and spec, written to a folder,
rebuilt from the spec alone, and run on test images or on image files.

An exported model is a folder with two files:

* ``model.json``: ``"format": "trainlab-model/1"``, the resolved model spec (every layer's every
  parameter), the input shape, the task, class names, the data spec it was trained on, how
  inputs were scaled, and the metrics recorded for the trial (validation at its chosen epoch,
  test of its chosen weights);
* ``model.safetensors``: the weights (the model's ``state_dict``). Safetensors holds tensors
  and text only: loading it runs no code.

``--torch`` adds ``model.pt``, the same ``state_dict`` written by ``torch.save``; it is read
back with ``torch.load(weights_only=True)``, which refuses anything but tensors and plain
containers. No file is ever unpickled as arbitrary objects.

A factory model's ``model.json`` holds the factory's reference, params, source SHA-256 and the
folder it is imported from, and :func:`load_model` imports it (refusing a factory whose source
has changed): importing a module runs it, so such an export is only as safe as its factory.

:func:`load_model` rebuilds the network with :func:`trainlab.models.build` from ``model.json``
and loads the weights, so an exported model predicts exactly what the trial's weights did:
evaluated on the same test split it scores the test metrics recorded for the trial, bit for bit.

The trial exported is the one :func:`trainlab.report.trials.find_trial` names, and its weights
are read through :mod:`trainlab.trained`, which the report uses too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainlab import models
from trainlab.data.cache import DataCache
from trainlab.errors import TrainlabError
from trainlab.jsonio import finite
from trainlab.report.trials import find_trial
from trainlab.store import Store, TrialRecord
from trainlab.trained import data_input_shape, rebuild, stored_spec, trial_state
from trainlab.trial import TrialSpec

MODEL_FORMAT = "trainlab-model/1"
SPEC_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"
TORCH_FILE = "model.pt"


# --- the data set of a stored trial ----------------------------------------------------------


def _class_names(spec: TrialSpec) -> list[str]:
    """The data set's class names; numbers when the data set cannot be asked (an npz file moved)."""
    if spec.task != "classification":
        return []
    from trainlab.spec import dataset_info

    try:
        return list(dataset_info(spec.data.to_json()).class_names)
    except TrainlabError:
        factory = spec.model.factory
        return [str(k) for k in range(factory.outputs if factory is not None else spec.model.layers[-1]["units"])]


# --- export ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exported:
    """What :func:`export_trial` wrote."""

    folder: Path
    files: list[Path]
    meta: dict[str, Any]


def export_trial(
    store: Store, study: str, selector: str | None, out: str | Path, *, torch_file: bool = False
) -> Exported:
    """Write the chosen weights and the spec of a finished trial to folder ``out``."""
    return export_record(store, study, find_trial(store, study, selector), out, torch_file=torch_file)


def export_record(
    store: Store, study: str, trial: TrialRecord, out: str | Path, *, torch_file: bool = False
) -> Exported:
    """Write the chosen weights and the spec of ``trial`` (a done trial of ``study``) to folder ``out``."""
    from safetensors.torch import save_file

    state, meta = trial_state(store, trial)
    spec = stored_spec(meta, trial)
    result = trial.result or {}
    split = result.get("split", {})
    shape = list(meta.get("input_shape") or data_input_shape(spec))
    image = len(shape) == 3
    info = {
        "format": MODEL_FORMAT,
        "study": study,
        "trial": trial.hash,
        "label": trial.label,
        "seed": trial.seed,
        "task": spec.task,
        "input_shape": shape,
        "class_names": _class_names(spec),
        "model": spec.model.to_json(),
        "loss": spec.train.loss,
        "data": spec.data.to_json(),
        "preprocessing": (
            {"kind": "pixels", "scale": 1 / 255, "layout": "NCHW"}
            if image
            else {"kind": "standardize", **split["standardize"]}
            if "standardize" in split
            else {"kind": "none"}
        ),
        "recorded": {
            "best_epoch": result["best_epoch"] + 1 if "best_epoch" in result else None,
            "validation": {k: v for k, v in result.get("best", {}).items() if k.startswith("val_")},
            "test": result.get("test", {}),
        },
        "weights": WEIGHTS_FILE,
    }
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / SPEC_FILE, folder / WEIGHTS_FILE]
    rebuild(spec.model.to_json(), shape, state)  # refuse to write a model that would not load back
    save_file(
        {k: v.contiguous() for k, v in state.items()},
        str(folder / WEIGHTS_FILE),
        metadata={"format": MODEL_FORMAT, "trial": trial.hash},
    )
    if torch_file:
        torch.save({k: v.contiguous() for k, v in state.items()}, folder / TORCH_FILE)
        files.append(folder / TORCH_FILE)
    (folder / SPEC_FILE).write_text(json.dumps(finite(info), indent=2) + "\n", encoding="utf-8")
    return Exported(folder, files, info)


# --- loading and predicting -----------------------------------------------------------------


@dataclass(frozen=True)
class LoadedModel:
    """An exported model rebuilt from its spec: the network (eval mode) and ``model.json``."""

    net: models.Net
    meta: dict[str, Any]
    source: str = SPEC_FILE
    """The ``model.json`` it was loaded from (named in errors)."""

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["input_shape"])

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.get("class_names") or [])


def load_model(path: str | Path, *, prefer: str = "safetensors") -> LoadedModel:
    """Rebuild an exported model from its folder (or its ``model.json``).

    ``prefer="torch"`` reads ``model.pt`` (``torch.load(weights_only=True)``) instead of the
    safetensors file; either way only tensors are read.
    """
    from safetensors.torch import load_file

    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    spec_path = folder / SPEC_FILE
    if not spec_path.is_file():
        raise TrainlabError(
            f"{folder}: no {SPEC_FILE} here; export a model first with `trainlab export STUDY --out {folder}`"
        )
    try:
        meta = json.loads(spec_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TrainlabError(f"{spec_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        shown = meta.get("format") if isinstance(meta, dict) else None
        raise TrainlabError(
            f"{spec_path}: format {shown!r} is not {MODEL_FORMAT!r}; re-export the model with this trainlab"
        )
    meta = _checked_meta(meta, spec_path)
    if prefer == "torch":
        file = folder / TORCH_FILE
        if not file.is_file():
            raise TrainlabError(f"{folder}: no {TORCH_FILE}; export with --torch to write one")
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises UnpicklingError and others for foreign content
            raise TrainlabError(f"{file}: not a plain state dict of tensors ({str(exc).splitlines()[0]})") from None
    else:
        file = folder / meta.get("weights", WEIGHTS_FILE)
        if not file.is_file():
            raise TrainlabError(f"{folder}: the weights file {file.name} is missing; export the model again")
        try:
            state = load_file(str(file))
        except Exception as exc:  # safetensors raises several kinds for a damaged file
            raise TrainlabError(f"{file}: damaged weights file ({exc}); export the model again") from None
    try:
        return LoadedModel(rebuild(meta["model"], meta["input_shape"], _checked_state(state)), meta, str(spec_path))
    except TrainlabError as exc:
        raise TrainlabError(f"{file}: {exc} (the model spec is {spec_path})") from None


def _checked_meta(meta: dict[str, Any], spec_path: Path) -> dict[str, Any]:
    """``model.json`` checked before anything is built from it: the model spec resolved again
    (which refuses unknown layers and sizes beyond trainlab's limits), the input shape, task,
    loss and class names typed, and the weights file a plain name inside the model's folder."""
    from trainlab.errors import SpecError
    from trainlab.losses import LOSSES

    def bad(key: str, what: str) -> TrainlabError:
        return TrainlabError(f"{spec_path}: {key}: {what}; export the model again")

    shape = meta.get("input_shape")
    if not (
        isinstance(shape, list)
        and 1 <= len(shape) <= 3
        and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
        and math.prod(shape) <= models.MAX_VALUES
    ):
        raise bad("input_shape", f"expected a list of one to three positive integers, got {shape!r}")
    if meta.get("task") not in ("classification", "regression"):
        raise bad("task", f"expected 'classification' or 'regression', got {meta.get('task')!r}")
    if not isinstance(meta.get("loss"), str) or meta["loss"] not in LOSSES.names():
        raise bad("loss", f"expected one of {', '.join(LOSSES.names())}, got {meta.get('loss')!r}")
    names = meta.get("class_names", [])
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise bad("class_names", f"expected a list of names, got {names!r}")
    weights = meta.get("weights", WEIGHTS_FILE)
    if not isinstance(weights, str) or weights in ("", ".", "..") or Path(weights).name != weights or "\\" in weights:
        raise bad("weights", f"expected the name of a file beside {SPEC_FILE}, got {weights!r}")
    if not isinstance(meta.get("model"), dict):
        raise bad("model", f"expected the model spec (a table with 'layers'), got {meta.get('model')!r}")
    try:
        resolved = models.resolve(meta["model"], tuple(shape))
    except SpecError as exc:
        raise TrainlabError(f"{spec_path}: {exc.path}: {exc.reason}; export the model again") from None
    return {**meta, "model": resolved}


def _checked_state(state: Any) -> dict[str, torch.Tensor]:
    """A state dict of named float32 tensors, else an error saying what the file holds instead."""
    if not isinstance(state, Mapping):
        raise TrainlabError(f"expected named tensors, the file holds a {type(state).__name__}")
    for name, tensor in state.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise TrainlabError(f"expected named tensors, {name!r} holds a {type(tensor).__name__}")
        if tensor.dtype != torch.float32:
            raise TrainlabError(f"tensor {name!r} is {tensor.dtype}, the model's weights are torch.float32")
    return dict(state)


def load_images(paths: Sequence[str | Path], input_shape: Sequence[int], *, resize: bool = False) -> torch.Tensor:
    """Image files as a model input batch (N, C, H, W), pixels scaled to [0, 1] as in training.

    One channel reads the file as grayscale, three as RGB. A file of another size is an error
    naming both sizes, unless ``resize`` lets Pillow resample it.
    """
    from PIL import Image, UnidentifiedImageError

    if len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise TrainlabError(
            f"this model takes inputs of shape {tuple(input_shape)}, not images; use --test to predict on its test set"
        )
    channels, height, width = input_shape
    batch = []
    for path in paths:
        try:
            with Image.open(path) as file:
                img = file.convert("L" if channels == 1 else "RGB")
            if img.size != (width, height):
                if not resize:
                    raise TrainlabError(
                        f"{path}: image is {img.size[0]}x{img.size[1]}, the model takes {width}x{height} "
                        f"{'grayscale' if channels == 1 else 'colour'} images; resize it, or pass --resize"
                    )
                img = img.resize((width, height), Image.Resampling.LANCZOS)
            pixels = np.asarray(img, dtype=np.float32) / 255.0
        except FileNotFoundError:
            raise TrainlabError(f"{path}: no such file") from None
        except UnidentifiedImageError:
            raise TrainlabError(f"{path}: not an image file Pillow can read (PNG, JPEG, BMP, ...)") from None
        batch.append(pixels[None] if channels == 1 else pixels.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(batch)) if batch else torch.zeros((0, *input_shape))


def predict(model: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, classes) or regression values (N, 1) of ``model`` on ``x``."""
    return model.net.predict(x)


def test_split(meta: Mapping[str, Any], source: str = SPEC_FILE) -> tuple[torch.Tensor, torch.Tensor]:
    """The test split the model was evaluated on, prepared exactly as in training."""
    from trainlab.errors import SpecError

    if not isinstance(meta.get("data"), Mapping):
        raise TrainlabError(
            f"{source} names no data set ('data'), so there is no test split; predict on image files instead"
        )
    try:
        tensors, _, _ = DataCache().get(meta["data"])
    except SpecError as exc:
        raise TrainlabError(f"{source}: {exc.path}: {exc.reason}") from None
    return tensors.x_test, tensors.y_test


def evaluate_test(model: LoadedModel) -> dict[str, float]:
    """The model's loss and metrics on its test split, computed as training computed them."""
    from trainlab.engine import evaluate

    x, y = test_split(model.meta, model.source)
    return evaluate(model.net, x, y, model.meta["task"], model.meta["loss"])


# --- what `trainlab predict` prints ---------------------------------------------------------


def _class(model: LoadedModel, k: int) -> str:
    names = model.class_names
    return names[k] if k < len(names) else str(k)


def prediction_lines(model: LoadedModel, names: Sequence[str], out: torch.Tensor, top: int = 1) -> list[str]:
    """One line per input: its name, then the ``top`` classes with their probabilities (or the value)."""
    width = max([len(n) for n in names] + [5])
    if model.meta["task"] != "classification":
        return [f"{'input'.ljust(width)}  prediction"] + [
            f"{n.ljust(width)}  {float(v):.6g}" for n, v in zip(names, out.reshape(-1))
        ]
    lines = [f"{'input'.ljust(width)}  class (probability)"]
    k = min(top, out.shape[1])
    values, index = out.topk(k, dim=1)
    for n, vs, ix in zip(names, values, index):
        lines.append(
            f"{n.ljust(width)}  " + ", ".join(f"{_class(model, int(i))} ({float(v):.4f})" for v, i in zip(vs, ix))
        )
    return lines


def test_lines(model: LoadedModel, count: int) -> list[str]:
    """The first ``count`` test examples: true class, predicted class and its probability, and
    whether it is right (or true and predicted values, for regression)."""
    x, y = test_split(model.meta, model.source)
    x, y = x[:count], y[:count]
    out = predict(model, x)
    if model.meta["task"] != "classification":
        lines = ["test #  true        predicted"]
        lines += [f"{i:<6}  {float(t):<10.6g}  {float(p):.6g}" for i, (t, p) in enumerate(zip(y, out.reshape(-1)))]
        return lines
    width = max([len(c) for c in model.class_names] + [9])
    lines = [f"test #  {'true'.ljust(width)}  {'predicted'.ljust(width)}  probability"]
    for i, (t, probs) in enumerate(zip(y, out)):
        k = int(probs.argmax())
        mark = "" if k == int(t) else "  wrong"
        lines.append(
            f"{i:<6}  {_class(model, int(t)).ljust(width)}  {_class(model, k).ljust(width)}  "
            f"{float(probs[k]):.4f}{mark}"
        )
    return lines


def evaluation_lines(model: LoadedModel) -> tuple[list[str], bool]:
    """The test metrics recomputed with the exported model next to those recorded for its trial,
    and whether they are identical (bit for bit)."""
    scores = evaluate_test(model)
    recorded = model.meta.get("recorded", {}).get("test", {})
    x, _ = test_split(model.meta, model.source)
    same = bool(recorded) and all(recorded.get(k) == v for k, v in scores.items())
    text = ", ".join(f"{k} {v:.6f}" for k, v in sorted(scores.items()))
    was = ", ".join(f"{k} {v:.6f}" for k, v in sorted(recorded.items()) if isinstance(v, (int, float)))
    verdict = "identical" if same else "DIFFERENT: the model does not reproduce its trial"
    return [
        f"test set ({len(x)} examples): {text}",
        f"recorded for trial {str(model.meta.get('trial', ''))[:10]}: {was or 'nothing'}: {verdict}",
    ], same
