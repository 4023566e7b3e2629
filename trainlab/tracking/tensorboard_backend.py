"""TensorBoard: one event-file folder per trial, its scalars per epoch and the HParams table.

``DIR/LABEL-seedSEED-HASH/`` holds a trial's events, written with torch's
:class:`~torch.utils.tensorboard.SummaryWriter`: each recorded epoch's metrics as scalars with
``step`` = the epoch (from 0); the trial's settings, variant, seed and stage as the HParams
dashboard's session start (``torch.utils.tensorboard.summary.hparams``); and once it finished, the
outcome (``best/NAME``, ``test/NAME``, ``best_epoch``) as scalars and the session's end with its
status, so that the dashboard's table lists every trial's hyper-parameters and final metrics.
No experiment summary is written: TensorBoard then builds the table's columns from every
trial's session, which a search or a later stage keeps adding to.

Event files are only ever appended to. Before adding to a trial's folder the backend reads what
it holds with TensorBoard's own reader (``EventAccumulator``) and writes only the missing
steps, so a resumed trial or a second ``trainlab tensorboard`` never doubles an epoch. The
folder's ``trainlab-trial.json`` records which attempt of the trial it holds: a trial reset by
``--retry-failed`` and run again gets its folder written afresh.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainlab.errors import TrainlabError
from trainlab.tracking.base import Backend, TrackingUnavailable, TrialView

MANIFEST = "trainlab-trial.json"
"""The file in a trial's folder naming the trial and the attempt its events hold."""
SESSION_START = "_hparams_/session_start_info"
SESSION_END = "_hparams_/session_end_info"
STATUS = {
    "done": "STATUS_SUCCESS",
    "failed": "STATUS_FAILURE",
    "diverged": "STATUS_FAILURE",
    "pruned": "STATUS_ABORTED",
}
"""The HParams session status of each finished trial status."""


@dataclass
class _Folder:
    """A trial's folder as this backend knows it: its writer, the (tag, step) scalars it holds,
    and whether its session's start and end are written."""

    writer: Any
    held: set[tuple[str, int]] = field(default_factory=set)
    started: bool = False
    ended: bool = False


class TensorBoardBackend(Backend):
    """Trials as event-file folders under the folder ``location``."""

    scheme = "tensorboard"

    def __init__(self, location: str, study: str) -> None:
        super().__init__(location, study)
        self.root = Path(location)
        self.folders: dict[str, _Folder] = {}
        """Open trial folders by trial hash."""

    @classmethod
    def create(cls, location: str, study: str, *, option: str) -> Backend:
        if not location:
            raise TrainlabError(f"{option}: tensorboard needs the folder to write to: tensorboard:DIR")
        return cls(location, study)

    def open(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401 - needs the tensorboard package
        except ImportError:
            raise TrackingUnavailable(
                "tracking to TensorBoard needs the tensorboard package: pip install 'trainlab[tensorboard]'"
            ) from None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingUnavailable(f"cannot write TensorBoard logs to {self.root}: {exc.strerror}") from None

    def folder(self, view: TrialView) -> Path:
        """Where the trial's events go: ``DIR/LABEL-seedSEED-HASH`` (10 characters of the hash)."""
        label = re.sub(r"[^A-Za-z0-9._=+-]+", "_", view.label).strip("_") or "trial"
        return self.root / f"{label}-seed{view.seed}-{view.hash[:10]}"

    def sync(self, view: TrialView) -> None:
        known = self.folders.get(view.hash) or self._open_folder(view)
        self.folders[view.hash] = known
        writer = known.writer
        if not known.started:
            from torch.utils.tensorboard.summary import hparams

            _, start, _ = hparams(self.hparams(view), {})
            writer.file_writer.add_summary(start, walltime=view.started)
            known.started = True
        for epoch, recorded, metrics in view.epochs:
            for tag, value in metrics.items():
                if (tag, epoch) not in known.held:
                    writer.add_scalar(tag, value, global_step=epoch, walltime=recorded)
                    known.held.add((tag, epoch))
        if view.ended and not known.ended:
            for tag, value in view.final.items():
                writer.add_scalar(tag, value, global_step=0, walltime=view.finished)
            writer.file_writer.add_summary(_session_end(view.status), walltime=view.finished)
            known.ended = True
        writer.flush()
        if view.ended:
            writer.close()
            del self.folders[view.hash]

    def hparams(self, view: TrialView) -> dict[str, Any]:
        """The trial's row of the HParams table: variant, seed, stage, then its settings."""
        out: dict[str, Any] = {"variant": view.label, "seed": view.seed, "stage": view.stage}
        out.update({key: _hparam(value) for key, value in view.params.items()})
        return out

    def _open_folder(self, view: TrialView) -> _Folder:
        """The trial's folder with what it holds; written afresh if it holds another attempt."""
        from torch.utils.tensorboard import SummaryWriter

        path = self.folder(view)
        attempt = {"trial": view.hash, "started": view.started}
        manifest = path / MANIFEST
        if path.exists() and _read_json(manifest) != attempt:
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        known = _Folder(writer=None)
        if manifest.exists():
            known.held, known.started, known.ended = _held(path)
        else:
            manifest.write_text(json.dumps(attempt) + "\n", encoding="utf-8")
        known.writer = SummaryWriter(log_dir=str(path))
        return known

    def close(self) -> None:
        for known in self.folders.values():
            known.writer.close()
        self.folders.clear()


def _held(path: Path) -> tuple[set[tuple[str, int]], bool, bool]:
    """What a trial folder's event files hold, read by TensorBoard's reader: the (tag, step) scalars,
    and whether the session's start and end are there."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    held = {(tag, s.step) for tag in events.Tags()["scalars"] for s in events.Scalars(tag)}
    try:
        hparams = events.PluginTagToContent("hparams")
    except KeyError:
        hparams = {}
    return held, SESSION_START in hparams, SESSION_END in hparams


def _session_end(status: str) -> Any:
    """The HParams session-end summary with the trial's status, built from TensorBoard's protos as
    ``torch.utils.tensorboard.summary.hparams`` builds it (which always says success)."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams.api_pb2 import Status
    from tensorboard.plugins.hparams.metadata import PLUGIN_DATA_VERSION, PLUGIN_NAME
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo

    end = SessionEndInfo(status=Status.Value(STATUS[status]))
    content = HParamsPluginData(session_end_info=end, version=PLUGIN_DATA_VERSION)
    metadata = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(plugin_name=PLUGIN_NAME, content=content.SerializeToString())
    )
    return Summary(value=[Summary.Value(tag=SESSION_END, metadata=metadata)])


def _hparam(value: Any) -> Any:
    """A setting as the HParams table takes it: numbers and text as they are, anything else as JSON."""
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return value
    return json.dumps(value)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
