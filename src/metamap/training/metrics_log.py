"""Training metrics to JSON Lines and CSV, and to TensorBoard when it is installed."""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path
from typing import Any

from metamap.errors import DataError
from metamap.report import atomic_write_bytes
from metamap.training.checkpoint import fault_point


def read_records(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/metrics.jsonl`` in order (``[]`` when there is none yet); reads only.

    A last line cut short (the writer was killed mid-line) is dropped with a
    RuntimeWarning; any other line that is not a JSON object with an integer
    ``step`` is a DataError naming the file and line.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not text.endswith("\n"):
                warnings.warn(
                    f"{path}: dropped its last line, cut short by an interrupted write", RuntimeWarning, stacklevel=2
                )
                break
            raise DataError(f"{path} line {number}: expected a JSON record, got {line[:60]!r}") from None
        if not isinstance(record, dict) or type(record.get("step")) is not int:
            raise DataError(f"{path} line {number}: expected an object with an integer 'step', got {line[:60]!r}")
        records.append(record)
    return records


class MetricsLog:
    """Appends one record per logged step to ``metrics.jsonl`` and ``metrics.csv`` in ``run_dir``.

    On resume from step S, records after S (written by the interrupted run
    after its last checkpoint) and a last line cut short by a kill are
    dropped first, so the log of a resumed run equals the log of an
    uninterrupted one.
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.run_dir / "metrics.jsonl"
        self.csv = self.run_dir / "metrics.csv"
        if resume_step is None:
            self.jsonl.unlink(missing_ok=True)
            self.csv.unlink(missing_ok=True)
        else:
            self._truncate(resume_step)
        self.writer = _tensorboard_writer(self.run_dir) if tensorboard else None

    def log(self, step: int, values: dict[str, Any]) -> None:
        record = {"step": step, **values}
        with self.jsonl.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        fault_point("metrics-written")
        self._rewrite_csv()
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, step)

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.run_dir)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def _truncate(self, step: int) -> None:
        kept = [r for r in self.records() if r["step"] <= step]
        atomic_write_bytes(self.jsonl, "".join(json.dumps(r) + "\n" for r in kept).encode())
        self._rewrite_csv()

    def _rewrite_csv(self) -> None:
        """CSV columns are the union of keys seen so far, so the file is rewritten whole (it is small)."""
        records = self.records()
        columns = list(dict.fromkeys(k for r in records for k in r))
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)
        atomic_write_bytes(self.csv, text.getvalue().encode())


def _tensorboard_writer(run_dir: Path) -> Any:
    """A tensorboard ``SummaryWriter`` into ``run_dir/tensorboard``, or None without tensorboard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))
