"""One finished trial of a study, named the way a user names it: the trial chosen on validation,
a variant's best seed, ``LABEL:SEED``, or a trial hash (or the first characters of one).

The report's trial figures and the export both pick their trial here, by the selection that
the study's report makes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainlab.errors import TrainlabError
from trainlab.report.tables import best_trial_row, current_trials, study_report
from trainlab.store import Store, TrialRecord


def find_trial(store: Store, study: str, selector: str | None = None) -> TrialRecord:
    """The finished trial of ``study`` that ``selector`` names.

    ``None``: the trial chosen on validation (the best seed of the chosen variant). A variant
    label: that variant's best seed. ``LABEL:SEED``: that seed of that variant. Otherwise a
    trial hash or a unique prefix of one (at least 4 characters), as ``trainlab report`` lists them.
    """
    report = study_report(store, study)
    trials = current_trials(store, study)
    by_hash = {t.hash: t for t in trials}
    metric = report["selection"]["metric"]
    labels = {v["label"]: v for v in report["variants"]}

    def best_of(variant: Mapping[str, Any]) -> TrialRecord:
        if variant["n"] == 0:
            raise TrainlabError(
                f"variant {variant['label']!r} of study {study!r} has no finished trial; run the study first"
            )
        return by_hash[best_trial_row(variant, metric)["hash"]]

    if selector is None:
        chosen = report["selection"]["chosen"]
        if chosen is None:
            raise TrainlabError(f"study {study!r} has no finished trial yet; run it first with `trainlab run`")
        return best_of(labels[chosen])
    if selector in labels:
        return best_of(labels[selector])
    label, sep, seed = selector.rpartition(":")
    if sep and label in labels:
        matches = [t for t in trials if t.label == label and str(t.seed) == seed.strip()]
        if not matches:
            seeds = ", ".join(str(t.seed) for t in trials if t.label == label)
            raise TrainlabError(f"variant {label!r} has no seed {seed.strip()!r}; its seeds: {seeds}")
        return _finished(matches[0])
    if len(selector) >= 4:
        matches = [t for t in trials if t.hash.startswith(selector.lower())]
        if len(matches) == 1:
            return _finished(matches[0])
        if len(matches) > 1:
            raise TrainlabError(
                f"trial {selector!r} is ambiguous ({len(matches)} trials start so); give more characters"
            )
    known = ", ".join(repr(v) for v in labels)
    raise TrainlabError(
        f"no trial {selector!r} in study {study!r}; give a trial hash (or its first characters, "
        f"see `trainlab report {study} --format json`), a variant label ({known}), or LABEL:SEED"
    )


def _finished(trial: TrialRecord) -> TrialRecord:
    if trial.status != "done":
        raise TrainlabError(
            f"trial {trial.hash[:10]} ({trial.label}, seed {trial.seed}) is {trial.status}, not done: "
            "it has no chosen weights to use"
        )
    return trial
