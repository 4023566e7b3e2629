"""Suite files: the studies they name read and checked, the labels they rank, and every mistake
refused with the file, the key path and the allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import STAGED_STUDY, npz_study, variant, with_tiny_npz, write_study

from trainlab import suite as suites
from trainlab.errors import SpecError

VARIANTS = [variant("sgd", optimizer="sgd"), variant("adam", optimizer="adam"), variant("rmsprop", optimizer="rmsprop")]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three studies of the tiny data set: ``one`` and ``two`` with sgd, adam and rmsprop; ``three``
    (classification monitored by val_loss) with adam, sgd and nadam."""
    with_tiny_npz(tmp_path)
    (tmp_path / "studies").mkdir()
    write_study(tmp_path / "studies" / "one.toml", npz_study(name="one", data="../tiny.npz", compare=VARIANTS))
    write_study(tmp_path / "studies" / "two.toml", npz_study(name="two", data="../tiny.npz", compare=VARIANTS))
    three = [variant("adam", optimizer="adam"), variant("sgd", optimizer="sgd"), variant("nadam", optimizer="nadam")]
    write_study(
        tmp_path / "studies" / "three.toml",
        npz_study(name="three", data="../tiny.npz", compare=three, train={"monitor": "val_loss"}),
    )
    return tmp_path


def write_suite(folder: Path, text: str, name: str = "suite.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


SUITE = """
[suite]
name = "opt"
studies = ["studies/one.toml", "studies/two.toml", "studies/three.toml"]
cutoff = 3
[suite.targets]
one = 0.9
"""


def test_a_suite_ranks_the_labels_every_study_has_in_the_first_studys_order(folder: Path) -> None:
    suite = suites.load(write_suite(folder, SUITE))
    assert suite.name == "opt" and suite.cutoff == 3.0 and suite.time == "epochs"
    assert suite.labels == ("sgd", "adam")
    assert suite.left_out == {"one": ("rmsprop",), "two": ("rmsprop",), "three": ("nadam",)}
    assert [w.name for w in suite.workloads] == ["one", "two", "three"]
    assert [w.target for w in suite.workloads] == [0.9, None, None]
    assert [w.reference for w in suite.workloads] == ["sgd", "sgd", "adam"]  # default: each study's first variant
    assert suite.workloads[0].file == str(folder / "studies" / "one.toml")


def test_check_lists_the_studies_targets_and_left_out_labels(folder: Path) -> None:
    lines = suites.describe(suites.load(write_suite(folder, SUITE)))
    assert lines[0] == "suite opt: 3 studies, ranked by time to target in epochs"
    assert "  one (" in lines[1] and "target 0.9" in lines[1] and "6 trials" in lines[1]
    assert "target: median best of 'adam'" in lines[3]
    assert "ranked: sgd, adam" in lines
    assert "left out of the ranking (not in every study): three: nadam" in lines


def test_a_reference_names_the_variant_whose_median_best_is_the_target(folder: Path) -> None:
    suite = suites.load(write_suite(folder, SUITE.replace("cutoff = 3", 'reference = "adam"\ntime = "seconds"')))
    assert [w.reference for w in suite.workloads] == ["adam", "adam", "adam"]
    assert suite.time == "seconds" and suite.cutoff == 4.0


def test_a_smoke_run_of_a_suite_is_every_studys_smoke_run(folder: Path) -> None:
    suite = suites.load(write_suite(folder, SUITE), smoke=True)
    assert suite.name == "opt-smoke"
    assert [w.study.name for w in suite.workloads] == ["one-smoke", "two-smoke", "three-smoke"]
    assert [w.name for w in suite.workloads] == ["one", "two", "three"]  # the targets' keys
    assert suite.workloads[0].target == 0.9


def test_only_a_file_with_a_suite_table_is_a_suite(folder: Path) -> None:
    assert suites.is_suite_file(write_suite(folder, SUITE))
    assert not suites.is_suite_file(folder / "studies" / "one.toml")
    assert not suites.is_suite_file(folder / "missing.toml")
    assert not suites.is_suite_file(write_suite(folder, "[suite\n", "broken.toml"))
    assert not suites.is_suite_file(write_suite(folder, "suite = 3\n", "scalar.toml"))


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (("cutoff = 3", "cutof = 3"), "suite.cutof", "did you mean 'cutoff'?"),
        (("cutoff = 3", "cutoff = 1"), "suite.cutoff", "must be > 1"),
        (("cutoff = 3", 'cutoff = "4"'), "suite.cutoff", "expected a number, got '4'"),
        (("cutoff = 3", 'time = "steps"'), "suite.time", "must be one of 'epochs', 'seconds'"),
        (("one = 0.9", "onw = 0.9"), "suite.targets.onw", "did you mean 'one'?"),
        (("one = 0.9", 'one = "high"'), "suite.targets.one", "a finite number"),
        (("one = 0.9", "one = nan"), "suite.targets.one", "a finite number"),
        (("one = 0.9", "one = true"), "suite.targets.one", "a finite number"),
        (("cutoff = 3", 'reference = "rmsprop"'), "suite.reference", "not in study three"),
        (("cutoff = 3", 'reference = "adm"'), "suite.reference", "did you mean 'adam'?"),
        (('name = "opt"', 'name = "no spaces"'), "suite.name", "letters, digits"),
        (("studies = [", 'studies = [ "studies/one.toml", '), "suite.studies[1]", "listed twice"),
        (("studies/two.toml", "studies/none.toml"), "suite.studies[1]", "no such study file"),
        (
            ('studies = ["studies/one.toml", "studies/two.toml", "studies/three.toml"]', "studies = []"),
            "suite.studies",
            "one or more study files",
        ),
        (
            ('studies = ["studies/one.toml", "studies/two.toml", "studies/three.toml"]', ""),
            "suite.studies",
            "is required",
        ),
        (("[suite.targets]", "[study]\nname = 'x'\n[suite.targets]"), "study", "unknown section"),
    ],
)
def test_a_bad_suite_names_the_file_and_the_key_path(
    folder: Path, change: tuple[str, str], path: str, words: str
) -> None:
    file = write_suite(folder, SUITE.replace(*change))
    with pytest.raises(SpecError) as caught:
        suites.load(file)
    assert caught.value.path == path
    assert str(caught.value).startswith(f"{file}: {path}: "), str(caught.value)
    assert words in str(caught.value)


def test_a_suite_whose_studies_share_no_label_is_refused_listing_each_studys_labels(folder: Path) -> None:
    write_study(
        folder / "studies" / "other.toml",
        npz_study(name="other", data="../tiny.npz", compare=[variant("nadam", optimizer="nadam")]),
    )
    file = write_suite(folder, '[suite]\nstudies = ["studies/one.toml", "studies/other.toml"]\n')
    with pytest.raises(SpecError) as caught:
        suites.load(file)
    message = str(caught.value)
    assert caught.value.path == "suite.studies" and message.startswith(f"{file}: suite.studies: ")
    assert "share no variant label" in message
    assert "one.toml: sgd, adam, rmsprop" in message and "other.toml: nadam" in message


def test_a_staged_study_is_refused(folder: Path) -> None:
    (folder / "studies" / "staged.toml").write_text(STAGED_STUDY.replace('path = "tiny.npz"', 'path = "../tiny.npz"'))
    file = write_suite(folder, '[suite]\nstudies = ["studies/one.toml", "studies/staged.toml"]\n')
    with pytest.raises(SpecError, match="staged study or a search") as caught:
        suites.load(file)
    assert caught.value.path == "suite.studies[1]"


def test_two_files_of_one_study_name_are_refused(folder: Path) -> None:
    write_study(folder / "studies" / "copy.toml", npz_study(name="one", data="../tiny.npz", compare=VARIANTS))
    with pytest.raises(SpecError, match="both study 'one'") as caught:
        suites.load(write_suite(folder, '[suite]\nstudies = ["studies/one.toml", "studies/copy.toml"]\n'))
    assert caught.value.path == "suite.studies[1]"


def test_a_mistake_in_a_study_names_the_study_file(folder: Path) -> None:
    bad = folder / "studies" / "bad.toml"
    bad.write_text((folder / "studies" / "one.toml").read_text().replace("epochs = 4", "epochz = 4"))
    with pytest.raises(SpecError) as caught:
        suites.load(write_suite(folder, '[suite]\nstudies = ["studies/one.toml", "studies/bad.toml"]\n'))
    assert str(caught.value).startswith(f"{bad}: train.epochz: ")
