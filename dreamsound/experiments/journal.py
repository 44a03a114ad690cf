"""An experiment's journal: its results file and the record of the run that wrote it.

``results.jsonl`` holds one JSON line per finished job, written only by the driver (never by a
worker, wherever the workers run) and flushed and fsynced before the job counts as done, so an
interrupted run loses at most the jobs that were running. ``run.json`` holds the settings of the
run (and a digest of the model's weights); a folder holding the results of a run with other
settings is refused rather than mixed in.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dreamsound.errors import DataError, OutputError
from dreamsound.io_utils import PathLike, atomic_write

log = logging.getLogger(__name__)

__all__ = ["RESULTS_FILE", "RUN_FILE", "ResultsWriter", "check_run_file", "read_results"]

#: One JSON line per finished job, in the output folder.
RESULTS_FILE = "results.jsonl"
#: The settings of the run whose results are in the output folder.
RUN_FILE = "run.json"


def read_results(path: PathLike) -> list[dict[str, Any]]:
    """The records of a results file, in file order.

    A last line cut short by a crash is ignored (its job simply runs again); a damaged line
    elsewhere raises :class:`DataError`. Later records of the same job replace earlier ones.
    """
    file = Path(path)
    if not file.exists():
        return []
    lines = file.read_text(encoding="utf-8").split("\n")
    records: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # the unterminated tail of an interrupted write
                log.info("%s: ignoring an incomplete last line", file)
                continue
            raise DataError(f"{file} line {number} is not valid JSON; the results file is "
                            "damaged (delete it to start the run again)") from None
        if not isinstance(record, dict) or "job" not in record:
            raise DataError(f"{file} line {number} is not a dreamsound result")
        records[record["job"]] = record
    return list(records.values())


class ResultsWriter:
    """Appends one JSON line per record; each line is flushed and fsynced before it counts.

    Opening it cuts an unterminated last line (a crash mid-write), so new lines start clean.
    Usable as a context manager (closes the file).
    """

    def __init__(self, path: Path):
        self.path = path
        self._repair()
        self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def _repair(self) -> None:
        """Cut an unterminated last line (a crash mid-write) so new lines start clean."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as handle:
                handle.truncate(keep)

    def append(self, record: Mapping[str, Any]) -> None:
        """Write ``record`` as one line and make it durable (flush + fsync)."""
        self._handle.write(json.dumps(record, allow_nan=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Close the file."""
        self._handle.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_run_file(folder: Path, settings: dict[str, Any]) -> None:
    """Refuse to mix results of a run with other settings into this one; record this run's.

    Raises
    ------
    OutputError
        ``folder`` holds results and a ``run.json`` whose settings differ from ``settings``
        (the message names the first key that differs).
    """
    path = folder / RUN_FILE
    results = folder / RESULTS_FILE
    if path.exists() and results.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            previous = None
        if isinstance(previous, dict):
            for key, value in settings.items():
                if previous.get(key) != value:
                    raise OutputError(
                        f"{folder} holds results of another run ({key}: {previous.get(key)!r} "
                        f"there, {value!r} now); use another --out, or delete {results} to "
                        "start again")
    with atomic_write(path) as temp:
        temp.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
