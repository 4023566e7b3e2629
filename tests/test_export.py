"""Export and predict: a finished trial's model, rebuilt from its exported spec alone, predicts
exactly what the trial's stored weights predict, scores exactly the test metrics recorded for
the trial, and reads image files into the same inputs training used. Nothing is unpickled."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from trained_study import trained_store

from trainlab import export
from trainlab.cli import main
from trainlab.errors import TrainlabError
from trainlab.report import study_report
from trainlab.report.trials import find_trial
from trainlab.store import Store
from trainlab.trained import trial_model


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_store(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def exported(small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model")
    assert main(["export", "small", "--store", str(small), "--out", str(out), "--torch"]) == 0
    return out


def test_export_writes_spec_and_weights(small: Path, exported: Path) -> None:
    assert sorted(p.name for p in exported.iterdir()) == ["model.json", "model.pt", "model.safetensors"]
    meta = json.loads((exported / "model.json").read_text())
    with Store.open(small) as store:
        chosen = find_trial(store, "small")
    assert meta["format"] == "trainlab-model/1"
    assert (meta["trial"], meta["label"], meta["seed"]) == (chosen.hash, chosen.label, chosen.seed)
    assert meta["input_shape"] == [1, 8, 8] and meta["task"] == "classification"
    assert meta["class_names"] == ["top", "upper", "lower", "bottom"]
    assert meta["model"] == json.loads(chosen.spec_json)["model"], "the resolved spec: every layer parameter explicit"
    assert meta["recorded"]["test"] == chosen.result["test"]
    assert meta["preprocessing"] == {"kind": "pixels", "scale": 1 / 255, "layout": "NCHW"}


def test_exported_model_scores_exactly_the_recorded_test_metrics(small: Path, exported: Path) -> None:
    model = export.load_model(exported)
    scores = export.evaluate_test(model)
    assert scores == model.meta["recorded"]["test"], "bit for bit, not approximately"
    with Store.open(small) as store:
        trial = find_trial(store, "small")
        net, _ = trial_model(store, trial)
    x, _ = export.test_split(model.meta)
    assert torch.equal(export.predict(model, x), net.predict(x))
    assert torch.equal(export.predict(export.load_model(exported, prefer="torch"), x), net.predict(x))


def test_predict_command_evaluates_and_lists_test_predictions(
    exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(exported), "--test", "4", "--evaluate"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["test", "#", "true", "predicted", "probability"]
    assert len(out) == 1 + 4 + 2
    assert out[-1].endswith(": identical") and out[-2].startswith("test set (120 examples): accuracy ")


def test_predict_detects_weights_that_do_not_reproduce_the_trial(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "model"
    copy.mkdir()
    (copy / "model.json").write_text((exported / "model.json").read_text())
    state = load_file(str(exported / "model.safetensors"))
    state["body.1.bias"] = state["body.1.bias"] + 0.5
    save_file(state, str(copy / "model.safetensors"))
    assert main(["predict", str(copy), "--evaluate"]) == 1
    assert "DIFFERENT" in capsys.readouterr().out


def _write_png(path: Path, pixels: np.ndarray, mode: str = "L") -> Path:
    Image.fromarray(pixels, mode=mode).save(path)
    return path


def test_image_files_give_the_predictions_of_the_test_images(
    small: Path, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = np.load(small.parent / "small.npz")
    files = [_write_png(tmp_path / f"test{i}.png", raw["x_test"][i]) for i in range(5)]
    rgb = _write_png(tmp_path / "rgb.png", np.repeat(raw["x_test"][0][:, :, None], 3, axis=2), mode="RGB")
    model = export.load_model(exported)
    inputs = export.load_images([*files, rgb], model.input_shape)
    x, _ = export.test_split(model.meta)
    assert torch.equal(inputs[:5], x[:5]), "a PNG of a test image is the same input as the test image"
    assert torch.equal(inputs[5], x[0]), "an RGB file of a gray image reads as that gray image"
    from_tensors = export.predict(model, x[:5])
    assert torch.equal(export.predict(model, inputs[:5]), from_tensors)

    assert main(["predict", str(exported), *map(str, files[:2]), "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = model.class_names
    best = from_tensors[0].topk(2)
    expected = f"{names[int(best.indices[0])]} ({float(best.values[0]):.4f}), {names[int(best.indices[1])]} ({float(best.values[1]):.4f})"
    assert lines[1].split(None, 1) == [str(files[0]), expected]


def test_image_of_the_wrong_size_is_refused_unless_resized(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = _write_png(tmp_path / "big.png", np.zeros((28, 28), np.uint8))
    assert main(["predict", str(exported), str(big)]) == 2
    err = capsys.readouterr().err
    assert "big.png: image is 28x28, the model takes 8x8 grayscale images; resize it, or pass --resize" in err
    assert main(["predict", str(exported), str(big), "--resize"]) == 0
    (tmp_path / "notes.png").write_text("not an image")
    assert main(["predict", str(exported), str(tmp_path / "notes.png")]) == 2
    assert "not an image file" in capsys.readouterr().err
    assert main(["predict", str(exported)]) == 2
    assert "nothing to predict" in capsys.readouterr().err


class Payload:
    """An object whose unpickling would run code: must never be loaded."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("unpickled!",))


def test_torch_file_with_arbitrary_objects_is_refused(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "model.json").write_text((exported / "model.json").read_text())
    with open(folder / "model.pt", "wb") as f:
        pickle.dump({"body.1.weight": Payload()}, f, protocol=2)
    with pytest.raises(TrainlabError, match="not a plain state dict of tensors"):
        export.load_model(folder, prefer="torch")
    assert "unpickled!" not in capsys.readouterr().out


def test_trial_selectors(small: Path, tmp_path: Path) -> None:
    with Store.open(small) as store:
        chosen = find_trial(store, "small")
        trials = {(t.label, t.seed): t for t in store.trials(store.study("small").id)}
        selection = study_report(store, "small")["selection"]
        assert (chosen.label, chosen.hash) == (selection["chosen"], selection["chosen_trial"])
        cnn_best = find_trial(store, "small", "cnn")
        assert cnn_best.label == "cnn"
        assert find_trial(store, "small", "cnn:1").hash == trials[("cnn", 1)].hash
        assert find_trial(store, "small", trials[("mlp sgd", 0)].hash[:6]).hash == trials[("mlp sgd", 0)].hash
        with pytest.raises(TrainlabError, match="variant 'cnn' has no seed '7'; its seeds: 0, 1"):
            find_trial(store, "small", "cnn:7")
        with pytest.raises(TrainlabError, match="no trial 'rnn' in study 'small'.*'mlp sgd', 'mlp adam', 'cnn'"):
            find_trial(store, "small", "rnn")
        with pytest.raises(TrainlabError, match="no study named 'big'"):
            find_trial(store, "big")
    assert main(["export", "small", "--store", str(small), "--trial", "mlp sgd:1", "--out", str(tmp_path / "m")]) == 0
    assert json.loads((tmp_path / "m" / "model.json").read_text())["seed"] == 1


def test_model_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(TrainlabError, match="no model.json here"):
        export.load_model(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"format": "other/9"}))
    with pytest.raises(TrainlabError, match="is not 'trainlab-model/1'"):
        export.load_model(tmp_path)


# --- hostile model folders: refused with a message naming the file, nothing executed or allocated


def _copy_model(exported: Path, folder: Path, *, meta: dict | None = None, state: dict | None = None) -> Path:
    from safetensors.torch import load_file, save_file

    folder.mkdir()
    info = json.loads((exported / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps(info if meta is None else meta(info) if callable(meta) else meta))
    weights = load_file(str(exported / "model.safetensors"))
    save_file(weights if state is None else state(weights), str(folder / "model.safetensors"))
    return folder


def _with(d: dict, **changes: object) -> dict:
    return {**d, **changes}


@pytest.mark.parametrize(
    ("state", "words"),
    [
        (
            lambda w: _with(w, **{"body.1.weight": torch.zeros(3, 3)}),
            "body.1.weight has shape (3, 3), the model needs (24, 64)",
        ),
        (lambda w: {k: v for k, v in w.items() if k != "body.1.bias"}, "missing body.1.bias"),
        (lambda w: _with(w, extra=torch.zeros(2)), "unexpected extra"),
        (lambda w: {k: v.double() for k, v in w.items()}, "is torch.float64, the model's weights are torch.float32"),
        (lambda w: {k: v.to(torch.int8) for k, v in w.items()}, "is torch.int8"),
    ],
    ids=["wrong-shape", "missing", "extra", "float64", "int8"],
)
def test_weights_that_do_not_fit_the_spec_are_refused_naming_the_file(
    exported: Path, tmp_path: Path, state: object, words: str
) -> None:
    folder = _copy_model(exported, tmp_path / "m", state=state)
    with pytest.raises(TrainlabError) as info:
        export.load_model(folder)
    message = str(info.value)
    assert message.startswith(f"{folder / 'model.safetensors'}: ") and words in message, message


@pytest.mark.parametrize(
    ("meta", "words"),
    [
        (
            lambda m: _with(
                m,
                model={
                    **m["model"],
                    "layers": [
                        m["model"]["layers"][0],
                        {**m["model"]["layers"][1], "units": 32},
                        *m["model"]["layers"][2:],
                    ],
                },
            ),
            "model.safetensors: the weights do not fit",
        ),
        (
            lambda m: _with(m, model={"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10**9}]}),
            "model.json: model.layers[1]: Dense brings the model to 65,000,000,000 parameters",
        ),
        (
            lambda m: _with(m, model={"layers": [{"type": "Lambda", "function": "os.system('touch pwned')"}]}),
            "model.json: model.layers[0].type: unknown layer type 'Lambda'",
        ),
        (lambda m: _with(m, input_shape="1,8,8"), "model.json: input_shape: expected a list"),
        (lambda m: _with(m, input_shape=[1, 10**6, 10**6]), "model.json: input_shape: expected a list"),
        (lambda m: _with(m, task="clustering"), "model.json: task:"),
        (lambda m: _with(m, loss="os.system"), "model.json: loss:"),
        (lambda m: _with(m, weights="../model.safetensors"), "model.json: weights: expected the name of a file beside"),
        (lambda m: _with(m, weights="/etc/passwd"), "model.json: weights: expected the name of a file beside"),
        (lambda m: {k: v for k, v in m.items() if k != "model"}, "model.json: model: expected the model spec"),
        (lambda m: [m], "model.json: format None is not"),
    ],
    ids=[
        "spec-mismatch",
        "billion-units",
        "unknown-layer",
        "shape-type",
        "shape-huge",
        "task",
        "loss",
        "weights-up",
        "weights-absolute",
        "no-model",
        "not-an-object",
    ],
)
def test_model_json_is_checked_before_anything_is_built(
    exported: Path, tmp_path: Path, meta: object, words: str
) -> None:
    folder = _copy_model(exported, tmp_path / "m", meta=meta)
    with pytest.raises(TrainlabError) as info:
        export.load_model(folder)
    assert words in str(info.value), str(info.value)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "content",
    [[torch.zeros(2)], {"body.1.weight": 3}, {"body.1.weight": [1.0, 2.0]}],
    ids=["list", "number", "plain-list"],
)
def test_torch_file_that_is_not_named_tensors_is_refused(exported: Path, tmp_path: Path, content: object) -> None:
    folder = _copy_model(exported, tmp_path / "m")
    torch.save(content, folder / "model.pt")
    with pytest.raises(TrainlabError) as info:
        export.load_model(folder, prefer="torch")
    assert str(info.value).startswith(f"{folder / 'model.pt'}: ") and "expected named tensors" in str(info.value)


def test_predict_refuses_hostile_folders_in_one_line_with_exit_2(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_shape = _copy_model(
        exported, tmp_path / "shape", state=lambda w: _with(w, **{"body.1.weight": torch.zeros(3, 3)})
    )
    huge = _copy_model(
        exported,
        tmp_path / "huge",
        meta=lambda m: _with(m, model={"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10**9}]}),
    )
    no_data = _copy_model(exported, tmp_path / "nodata", meta=lambda m: {k: v for k, v in m.items() if k != "data"})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.json").write_text("{not json")
    for folder, extra in ((bad_shape, []), (huge, []), (no_data, ["--test", "2"]), (tmp_path / "broken", [])):
        assert main(["predict", str(folder), *extra, "--evaluate"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("trainlab: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert str(folder.name) in err
