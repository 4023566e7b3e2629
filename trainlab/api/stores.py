"""A store opened for reading: the studies in it, with their trials' statuses and plans, and
each study's results."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.api.result import Result, opened
from trainlab.api.run import default_store
from trainlab.errors import TrainlabError

if TYPE_CHECKING:
    import pandas as pd

    from trainlab.store import Store


def open_store(path: str | Path | None = None) -> StoreView:
    """The store at ``path`` (default: ``$TRAINLAB_STORE``, else ``trainlab.db``), checked as every
    opening checks it; a missing file or one that is not a sound trainlab store is refused."""
    target = Path(default_store() if path is None else path)
    with opened(target):
        pass
    return StoreView(target)


class StoreView:
    """What a store holds, read on each call: use :func:`open_store` to get one."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"StoreView({str(self.path)!r})"

    def studies(self) -> pd.DataFrame:
        """One row per study, oldest first, as ``trainlab status`` lists them: ``study``, ``trials``,
        a count per status (``pending``, ``running``, ``done``, ``failed``, ``diverged``,
        ``pruned``) and ``plan`` (how its trials train, most common first)."""
        import pandas as pd

        from trainlab.store import STATUSES

        with opened(self.path, check=False) as store:
            return pd.DataFrame(status_rows(store), columns=["study", "trials", *STATUSES, "plan"])

    def result(self, study: str) -> Result:
        """The results of ``study``: its name, or the study file that names it."""
        name = study_name(study)
        with opened(self.path, check=False) as store:
            if store.study(name) is None:
                known = ", ".join(s.name for s in store.studies()) or "none yet"
                raise TrainlabError(f"no study named {name!r} in {self.path} (studies: {known})")
        return Result(self.path, name)


def status_rows(store: Store) -> list[dict[str, Any]]:
    """Each study's trial counts by status and its plans text, oldest study first."""
    from trainlab.store import STATUSES

    rows = []
    for study in store.studies():
        counts = store.status_counts(study.id)
        rows.append(
            {
                "study": study.name,
                "trials": sum(counts.values()),
                **{s: counts.get(s, 0) for s in STATUSES},
                "plan": plans_text(store.trials(study.id)),
            }
        )
    return rows


def plans_text(trials: Sequence[Any]) -> str:
    """The recorded plans of a study's trials, most common first: ``4 x population of 3, eager, 2 threads``."""
    from trainlab.planner import Plan

    counts: dict[str, int] = {}
    for trial in trials:
        text = Plan.from_json(trial.plan).describe() if trial.plan else "not planned"
        counts[text] = counts.get(text, 0) + 1
    return "; ".join(f"{n} x {text}" for text, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def study_name(arg: str) -> str:
    """A study name, or the name of the study in the file ``arg``."""
    if arg.endswith(".toml") or Path(arg).is_file():
        from trainlab import spec

        return spec.load(arg).name
    return arg
