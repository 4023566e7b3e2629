"""Errors meant for the user: the CLI prints their message without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TrainlabError(Exception):
    """A problem the user can fix; its message says what is wrong and how to fix it."""


class SpecError(TrainlabError):
    """A study file that cannot be used: names the file, the key path and what is allowed."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        file: str | None = None,
        allowed: Iterable[str] | None = None,
        got: object = None,
    ) -> None:
        self.path = path
        self.file = file
        self.allowed = sorted(allowed) if allowed is not None else None
        self.got = got
        self.reason = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.file or "study"
        if self.path:
            where += f": {self.path}"
        text = f"{where}: {self.reason}"
        if self.allowed is not None:
            text += f"\n  allowed: {', '.join(map(str, self.allowed))}"
            if isinstance(self.got, str):
                near = nearest(self.got, self.allowed)
                if near:
                    text += f"\n  did you mean {near!r}?"
        return text

    def in_file(self, file: str) -> SpecError:
        """The same error, attributed to ``file``."""
        return SpecError(self.reason, path=self.path, file=file, allowed=self.allowed, got=self.got)


class DataError(TrainlabError):
    """A data set that is missing, corrupt or truncated; says how to provide or repair it."""


class DataUnavailable(DataError):
    """A named data set that no source could provide.

    Its message lists every source tried and why each failed, then how to provide the data;
    ``summary`` says the same in one line, for commands that stop on it (``trainlab run``).
    """

    def __init__(self, message: str, summary: str) -> None:
        super().__init__(message)
        self.summary = summary


class StoreError(TrainlabError):
    """A store file that cannot be opened or is not a trainlab store."""


def nearest(word: str, choices: Iterable[str]) -> str | None:
    """The closest of ``choices`` to ``word``, if any is reasonably close."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return found[0] if found else None
