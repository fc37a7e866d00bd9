"""Benchmark ``safety``: bad input to every command ends in one clear line, never a traceback, a payload or a lost run.

Protocol. Each case of :data:`CASES` prepares files in a fresh temporary
folder (a run folder, a corrupt data file, a file crafted to run code when
unpickled) and returns the arguments of one ``metamap`` command that must be
refused. The command runs as ``python -m metamap ...`` in a subprocess (the
folder as working directory, a timeout) and is scored:

- ``tracebacks``: stderr holds ``Traceback (most recent call last)``;
- ``silent_wrong``: no traceback, but the exit code is not 2, stderr is not
  exactly one line, the line lacks what the case expects it to name, or the
  command ran past the timeout;
- ``payloads_run``: the marker file that a crafted file's ``__reduce__``
  writes exists afterwards (the file was unpickled);
- ``runs_lost``: a file the case prepared changed or vanished.

Kill-point trials (:func:`metamap.bench.faults.kill_point_trials`: a
training process killed at each checkpoint write, then resumed) are counted
as ``kill_points_exact`` of ``kill_points_total``; null where that module is
absent. ``--quick`` runs the cases marked quick and skips the kill points.
The goal is zero of every count, and every kill point exact.
"""

from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metamap.errors import DataError
from metamap.paths import shared_data_dir
from metamap.report import format_table, machine, write_json

TRACEBACK = "Traceback (most recent call last)"
MARKER = "PAYLOAD_RAN"


def _shared_data() -> Path:
    try:
        return shared_data_dir()
    except DataError:  # cases that need the real data are skipped
        return Path("/nonexistent/shared/data")


DATA = _shared_data()
TIMEOUT_S = 180
OMNIGLOT = DATA / "omniglot"
ASTRO = DATA / "astro" / "sdss_dr14_10k.csv"
STEPS_PER_DAY = 288  # 5-minute readings


@dataclass(frozen=True)
class Case:
    """One bad input: ``prepare(folder)`` writes its files and returns the ``metamap`` arguments.

    ``expect``: text the one error line must contain (a flag the user can act on).
    ``payload``: the case holds a crafted pickle (tests run it in a subprocess).
    ``needs``: a data file outside the package the case reads (skipped where absent).
    """

    name: str
    prepare: Callable[[Path], list[str]]
    expect: str = ""
    quick: bool = False
    payload: bool = False
    needs: Path | None = None


class Payload:
    """Unpickling this creates ``path`` (the evidence that untrusted bytes ran code)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


# --------------------------------------------------------------------------- file makers


def _file(folder: Path, name: str = "afile.txt", content: bytes = b"keep me\n") -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


def _sinusoid_run(folder: Path, learner: str = "maml") -> Path:
    """A run folder as ``metamap train`` leaves it (step 0 of a tiny sinusoid MLP)."""
    return _saved_run(
        folder / "run",
        {
            "family": {"name": "sinusoid", "k_shot": 5, "n_query": 10},
            "model": {"hidden": [8]},
            "learner": {"name": learner, "inner_steps": 1, "inner_lr": 0.01},
            "seed": 0,
        },
    )


def _omniglot_run(folder: Path) -> Path:
    return _saved_run(
        folder / "run",
        {
            "family": {"name": "omniglot", "n_way": 5, "k_shot": 1, "n_query": 15, "data": str(OMNIGLOT)},
            "model": {},
            "learner": {"name": "protonet"},
            "seed": 0,
        },
    )


def _saved_run(run_dir: Path, run: dict[str, Any]) -> Path:
    from metamap.recipes import build_learner
    from metamap.training.checkpoint import save_checkpoint

    save_checkpoint(run_dir, 0, {"run": run}, build_learner(run))
    return run_dir


def _readings(folder: Path, days: float, silent_sensor: bool = False, name: str = "readings.npz") -> Path:
    """A PeMS-layout ``.npz`` (``data [T, N, 3]``: flow, occupancy, speed) of 4 sensors, 5-minute steps."""
    import numpy as np

    steps = int(days * STEPS_PER_DAY)
    rng = np.random.default_rng(0)
    data = rng.uniform(20, 70, size=(steps, 4, 3)).astype(np.float32)
    if silent_sensor:
        data[:, 2] = 0.0
    path = folder / name
    np.savez(path, data=data, step_minutes=np.int64(24 * 60 // STEPS_PER_DAY))
    return path


def _loads(folder: Path, n_loads: int, name: str = "loads.csv") -> Path:
    path = folder / name
    header = ",".join(f"load_{i}" for i in range(n_loads))
    path.write_text(header + "\n" + "\n".join(",".join(["1.5"] * n_loads) for _ in range(3)) + "\n")
    return path


def _observations(folder: Path) -> Path:
    path = folder / "obs.csv"
    path.write_text("t,y\n" + "".join(f"{t * 0.5},{(-1) ** t * 0.3}\n" for t in range(20)))
    return path


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _omniglot_folder(folder: Path, make: Callable[[Path], None]) -> Path:
    data = folder / "omniglot"
    data.mkdir()
    for name in ("images_background.npz", "images_evaluation.npz"):
        make(data / name)
    return data


def _object_npz(folder: Path) -> Callable[[Path], None]:
    """An ``.npz`` whose ``images`` is an object array holding a :class:`Payload`."""
    import numpy as np

    def make(path: Path) -> None:
        images = np.empty(1, dtype=object)
        images[0] = Payload(folder / MARKER)
        np.savez(path, images=images, labels=np.zeros((1, 20), dtype=np.int64))

    return make


def _pickled_hdf(folder: Path) -> Path:
    """A pandas HDF readings file whose column index holds a :class:`Payload` (stored pickled)."""
    import warnings

    import numpy as np
    import pandas as pd

    times = pd.date_range("2024-01-01", periods=3 * STEPS_PER_DAY, freq="5min")
    columns = pd.Index(["s1", Payload(folder / MARKER)], dtype=object)
    frame = pd.DataFrame(np.full((len(times), 2), 50.0), index=times, columns=columns)
    path = folder / "readings.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PerformanceWarning: object columns are pickled (the point of the case)
        frame.to_hdf(path, key="df")
    return path


def _pickled_adjacency(folder: Path) -> Path:
    path = folder / "adj.pkl"
    path.write_bytes(pickle.dumps([["a", "b"], {"a": 0, "b": 1}, Payload(folder / MARKER)]))
    return path


# --------------------------------------------------------------------------- the corpus


def _train(folder: Path, *flags: str) -> list[str]:
    return ["train", "--steps", "2", "--episodes", "2", "--no-progress", "--out", str(folder / "run"), *flags]


def _omniglot(folder: Path, data: str, *flags: str, learner: str = "protonet") -> list[str]:
    return _train(folder, "--family", "omniglot", "--learner", learner, "--data", data, *flags)


def _traffic(folder: Path, command: str, *flags: str, days: float = 3) -> list[str]:
    return ["traffic", command, "--data", str(_readings(folder, days)), "--steps", "2", *flags]


def _astro(folder: Path, command: str, *flags: str) -> list[str]:
    return [
        "astro",
        command,
        "--data",
        str(ASTRO),
        "--steps",
        "2",
        "--episodes",
        "2",
        "--out",
        str(folder / "out"),
        *flags,
    ]


def _fit(folder: Path, *flags: str) -> list[str]:
    return ["physics", "fit", "--system", "oscillator", "--data", str(_observations(folder)), *flags]


CASES: tuple[Case, ...] = (
    # -- metamap train / evaluate / demo / bench: flag values
    Case("train --hidden 0", lambda f: _train(f, "--hidden", "0"), "--hidden", quick=True),
    Case("train --hidden -5", lambda f: _train(f, "--hidden", "-5"), "--hidden"),
    Case("train --inner-lr -1", lambda f: _train(f, "--inner-lr", "-1"), "--inner-lr", quick=True),
    Case("train --lr nan", lambda f: _train(f, "--lr", "nan"), "--lr", quick=True),
    Case("train --lr inf", lambda f: _train(f, "--lr", "inf"), "--lr"),
    Case("train --steps ten", lambda f: _train(f, "--steps", "ten"), "--steps"),
    Case("train --meta-batch 0", lambda f: _train(f, "--meta-batch", "0"), "--meta-batch"),
    Case("train --k-shot 0", lambda f: _train(f, "--k-shot", "0"), "--k-shot"),
    Case("train --max-minutes -1", lambda f: _train(f, "--max-minutes", "-1"), "--max-minutes"),
    Case("train --chunk-size 0", lambda f: _train(f, "--chunk-size", "0"), "--chunk-size"),
    Case("train --seed -1", lambda f: _train(f, "--seed", "-1"), "--seed"),
    Case("train --optimizer lbfgs", lambda f: _train(f, "--optimizer", "lbfgs"), "lbfgs"),
    Case("train --device tpu", lambda f: _train(f, "--device", "tpu"), "tpu"),
    Case("train huge sinusoid batch", lambda f: _train(f, "--k-shot", "2000000000", "--meta-batch", "1000"), "memory"),
    # -- metamap train: output folders
    Case("train --out is a file", lambda f: _train(f)[:-1] + [str(_file(f))], "--out", quick=True),
    Case("train --out under a file", lambda f: _train(f)[:-1] + [str(_file(f) / "run")], "--out"),
    Case("train --out /dev/null", lambda f: _train(f)[:-1] + ["/dev/null"], "--out", quick=True),
    Case("train --out unwritable", lambda f: _train(f)[:-1] + ["/proc/metamap-run"], "--out"),
    # -- Omniglot data
    Case(
        "omniglot garbage .npz (bad zip)",
        lambda f: _omniglot(
            f,
            str(_omniglot_folder(f, lambda p: p.write_bytes(b"PK\x03\x04" + b"garbage" * 20))),
        ),
        "npz",
        quick=True,
    ),
    Case(
        "omniglot text file as .npz",
        lambda f: _omniglot(
            f,
            str(_omniglot_folder(f, lambda p: p.write_text("not an archive\n"))),
        ),
        "npz",
    ),
    Case(
        "omniglot .npz with a corrupt member",
        lambda f: _omniglot(
            f,
            str(_omniglot_folder(f, lambda p: _zip(p, {"images.npy": b"\x93NUMPY\x09garbage", "labels.npy": b"x"}))),
        ),
        "images",
    ),
    Case(
        "omniglot .npz with images of the wrong size",
        lambda f: _omniglot(f, str(_omniglot_folder(f, _small_images))),
        "105",
    ),
    Case(
        "omniglot .npz whose header claims 2 TB",
        lambda f: _omniglot(f, str(_omniglot_folder(f, _lying_header))),
        "claims",
    ),
    Case(
        "omniglot .npz with a pickled object array",
        lambda f: _omniglot(f, str(_omniglot_folder(f, _object_npz(f)))),
        "npz",
        quick=True,
        payload=True,
    ),
    Case(
        "omniglot --n-way 5000 (more than the classes)",
        lambda f: _omniglot(f, str(OMNIGLOT), "--n-way", "5000"),
        "--n-way",
        needs=OMNIGLOT,
    ),
    Case(
        "omniglot --k-shot 10 --n-query 15 (more than the drawings)",
        lambda f: _omniglot(
            f,
            str(OMNIGLOT),
            "--k-shot",
            "10",
            "--n-query",
            "15",
        ),
        "--k-shot",
        needs=OMNIGLOT,
    ),
    Case(
        "omniglot train batch beyond memory",
        lambda f: _omniglot(
            f, str(OMNIGLOT), "--n-way", "1000", "--meta-batch", "200", "--inner-steps", "5", learner="maml"
        ),
        "memory",
        needs=OMNIGLOT,
    ),
    Case(
        "evaluate --n-way 1000 on Omniglot (beyond memory)",
        lambda f: ["evaluate", str(_omniglot_run(f)), "--n-way", "1000"],
        "memory",
        quick=True,
        needs=OMNIGLOT,
    ),
    # -- metamap evaluate / demo / bench
    Case(
        "evaluate --inner-steps -1",
        lambda f: ["evaluate", str(_sinusoid_run(f)), "--inner-steps", "-1"],
        "--inner-steps",
        quick=True,
    ),
    Case("evaluate --episodes 0", lambda f: ["evaluate", str(_sinusoid_run(f)), "--episodes", "0"], "--episodes"),
    Case(
        "evaluate --json is a folder",
        lambda f: ["evaluate", str(_sinusoid_run(f)), "--json", str(f)],
        "--json",
        quick=True,
    ),
    Case(
        "evaluate --json under a file",
        lambda f: ["evaluate", str(_sinusoid_run(f)), "--json", str(_file(f) / "e.json")],
        "--json",
    ),
    Case(
        "evaluate --json onto the run's checkpoint pointer",
        lambda f: ["evaluate", str(_sinusoid_run(f)), "--json", str(f / "run" / "checkpoints" / "latest")],
        "--json",
    ),
    Case(
        "evaluate a checkpoint whose state.json is not JSON",
        lambda f: ["evaluate", str(_broken_state(_sinusoid_run(f)))],
        "state.json",
    ),
    Case("evaluate a folder that is no run", lambda f: ["evaluate", str(f)], "checkpoint"),
    Case("evaluate a corrupt checkpoint", lambda f: ["evaluate", str(_corrupt(_sinusoid_run(f)))], "run"),
    Case("demo --out is a file", lambda f: ["demo", "--quick", "--out", str(_file(f))], "--out"),
    Case("bench --json is a folder", lambda f: ["bench", "sinusoid", "--quick", "--json", str(f)], "--json"),
    Case("bench unknown name", lambda f: ["bench", "nothing", "--json", str(f / "b.json")], "nothing"),
    # -- metamap traffic
    Case(
        "traffic train on too short a file",
        lambda f: _traffic(f, "train", "--out", str(f / "run"), days=1.5),
        "2 whole days",
        quick=True,
    ),
    Case(
        "traffic train with a silent sensor",
        lambda f: ["traffic", "train", "--data", str(_readings(f, 3, silent_sensor=True)), "--out", str(f / "run")],
        "--drop-silent",
        quick=True,
    ),
    Case(
        "traffic train --hidden 0", lambda f: _traffic(f, "train", "--out", str(f / "run"), "--hidden", "0"), "--hidden"
    ),
    Case("traffic train --lr nan", lambda f: _traffic(f, "train", "--out", str(f / "run"), "--lr", "nan"), "--lr"),
    Case("traffic train --out is a file", lambda f: _traffic(f, "train", "--out", str(_file(f))), "--out"),
    Case("traffic evaluate --out /dev/null", lambda f: _traffic(f, "evaluate", "--out", "/dev/null"), "--out"),
    Case(
        "traffic evaluate --support 0min",
        lambda f: _traffic(f, "evaluate", "--out", str(f / "o"), "--support", "0min"),
        "--support",
    ),
    Case(
        "traffic adapt with a sinusoid run",
        lambda f: [
            "traffic",
            "adapt",
            "--run",
            str(_sinusoid_run(f)),
            "--data",
            str(_readings(f, 3)),
            "--out",
            str(f / "o"),
        ],
        "traffic",
    ),
    Case(
        "traffic train --channel 7 (of 3)",
        lambda f: _traffic(f, "train", "--out", str(f / "run"), "--channel", "7"),
        "channel",
    ),
    Case(
        "traffic patterns --shots 1000",
        lambda f: [
            "traffic",
            "patterns",
            "--data",
            str(_readings(f, 3)),
            "--target-data",
            str(_readings(f, 3, name="target.npz")),
            "--steps",
            "2",
            "--shots",
            "1000",
            "--out",
            str(f / "o"),
        ],
        "1000",
    ),
    Case(
        "traffic evaluate writing predictions.npz over its --data",
        lambda f: ["traffic", "evaluate", "--data", str(_readings(f, 3, name="predictions.npz")), "--out", str(f)],
        "predictions.npz",
        quick=True,
    ),
    Case(
        "traffic HDF readings with a pickled column name",
        lambda f: ["traffic", "train", "--data", str(_pickled_hdf(f)), "--out", str(f / "run")],
        "",
        quick=True,
        payload=True,
    ),
    Case(
        "traffic adjacency pickle with a payload",
        lambda f: _traffic(f, "train", "--out", str(f / "run"), "--adj", str(_pickled_adjacency(f))),
        "",
        payload=True,
    ),
    # -- metamap astro
    Case("astro photoz --shots 0", lambda f: _astro(f, "photoz", "--shots", "0"), "--shots", quick=True, needs=ASTRO),
    Case("astro photoz --shots 100000", lambda f: _astro(f, "photoz", "--shots", "100000"), "--shots", needs=ASTRO),
    Case("astro classify --shots 100000", lambda f: _astro(f, "classify", "--shots", "100000"), "k_shot", needs=ASTRO),
    Case(
        "astro photoz --learners maml,bogus",
        lambda f: _astro(f, "photoz", "--learners", "maml,bogus"),
        "--learners",
        needs=ASTRO,
    ),
    Case(
        "astro photoz --min-cell 100000 (no task that large)",
        lambda f: _astro(f, "photoz", "--min-cell", "100000", "--shots", "5"),
        "100000",
        needs=ASTRO,
    ),
    Case(
        "astro --out under a file", lambda f: _astro(f, "classify")[:-1] + [str(_file(f) / "out")], "--out", needs=ASTRO
    ),
    Case(
        "astro corrupt parquet catalogue",
        lambda f: [
            "astro",
            "classify",
            "--data",
            str(_file(f, "cat.parquet", b"PAR1 garbage")),
            "--out",
            str(f / "out"),
        ],
        "cat.parquet",
        quick=True,
    ),
    # -- metamap physics
    Case(
        "physics run --test-tasks 0",
        lambda f: ["physics", "run", "--system", "oscillator", "--out", str(f / "o"), "--test-tasks", "0"],
        "--test-tasks",
        quick=True,
    ),
    Case(
        "physics run --train-systems 0",
        lambda f: ["physics", "run", "--system", "oscillator", "--out", str(f / "o"), "--train-systems", "0"],
        "--train-systems",
    ),
    Case(
        "physics run --k-shot 100000",
        lambda f: ["physics", "run", "--system", "oscillator", "--out", str(f / "o"), "--k-shot", "100000"],
        "k_shot",
    ),
    Case(
        "physics run unknown system",
        lambda f: ["physics", "run", "--system", "rocket", "--out", str(f / "o")],
        "rocket",
    ),
    Case("physics fit --starts 0", lambda f: _fit(f, "--out", str(f / "o"), "--starts", "0"), "--starts", quick=True),
    Case("physics fit --starts -3", lambda f: _fit(f, "--out", str(f / "o"), "--starts", "-3"), "--starts"),
    Case("physics fit --out /dev/null", lambda f: _fit(f, "--out", "/dev/null"), "--out"),
    Case("physics fit --out is a file", lambda f: _fit(f, "--out", str(_file(f))), "--out"),
    Case(
        "physics fit writing fit.json over its --data",
        lambda f: [
            "physics",
            "fit",
            "--system",
            "oscillator",
            "--data",
            str(_observations(f).rename(f / "fit.json")),
            "--out",
            str(f),
        ],
        "fit.json",
    ),
    Case(
        "physics fit with a NaN observation",
        lambda f: [
            "physics",
            "fit",
            "--system",
            "oscillator",
            "--data",
            str(_file(f, "obs.csv", b"t,y\n0,1\n1,nan\n2,3\n3,4\n4,5\n")),
            "--out",
            str(f / "o"),
        ],
        "finite",
    ),
    Case(
        "physics fit binary observations",
        lambda f: [
            "physics",
            "fit",
            "--system",
            "oscillator",
            "--data",
            str(_file(f, "obs.csv", bytes(range(256)) * 4)),
            "--out",
            str(f / "o"),
        ],
        "obs.csv",
    ),
    # -- metamap energy
    Case(
        "energy loads of case118 given to case30",
        lambda f: ["energy", "solve", "--case", "case30", "--loads", str(_loads(f, 99)), "--out", str(f / "o")],
        "case30",
        quick=True,
    ),
    Case(
        "energy solve writing scenarios.csv over its --loads",
        lambda f: [
            "energy",
            "solve",
            "--case",
            "case30",
            "--loads",
            str(_loads(f, 20, "scenarios.csv")),
            "--out",
            str(f),
        ],
        "scenarios.csv",
        quick=True,
    ),
    Case(
        "energy loads with NaN and negative values",
        lambda f: [
            "energy",
            "solve",
            "--case",
            "case30",
            "--loads",
            str(_file(f, "loads.csv", b"multiplier\n1.0\nnan\n-3\n")),
            "--out",
            str(f / "o"),
        ],
        "finite",
    ),
    Case(
        "energy undecodable loads file",
        lambda f: [
            "energy",
            "solve",
            "--case",
            "case30",
            "--loads",
            str(_file(f, "loads.csv", b"\xff\xfe\x00" * 50)),
            "--out",
            str(f / "o"),
        ],
        "loads.csv",
    ),
    Case(
        "energy train --scenarios 0",
        lambda f: ["energy", "train", "--case", "case30", "--scenarios", "0", "--out", str(f / "o")],
        "--scenarios",
    ),
    Case(
        "energy solve --out is a file",
        lambda f: ["energy", "solve", "--case", "case30", "--loads", str(_loads(f, 20)), "--out", str(_file(f))],
        "--out",
    ),
    Case(
        "energy unknown case",
        lambda f: ["energy", "solve", "--case", "case9999", "--loads", str(_loads(f, 3)), "--out", str(f / "o")],
        "case9999",
    ),
)


def _broken_state(run_dir: Path) -> Path:
    """Cut the run's checkpoint ``state.json`` short (as a crash mid-write would, without atomic writes)."""
    from metamap.training.checkpoint import STATE, latest_checkpoint

    (latest_checkpoint(run_dir) / STATE).write_text('{"format_version": 1, "step"')
    return run_dir


def _small_images(path: Path) -> None:
    import numpy as np

    np.savez(path, images=np.ones((3, 20, 50, 50), dtype=bool), labels=np.zeros((3, 20), dtype=np.int64))


def _lying_header(path: Path) -> None:
    """An ``.npz`` whose ``.npy`` headers claim 10 million characters (2 TiB) over a few bytes of data."""
    import io

    import numpy as np

    def member(shape: tuple[int, ...], dtype: type) -> bytes:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
        )
        return header.getvalue() + bytes(64)

    _zip(path, {"images.npy": member((10**7, 20, 105, 105), bool), "labels.npy": member((10**7, 20), np.int64)})


def _corrupt(run_dir: Path) -> Path:
    """Overwrite the tensors of the run's checkpoint with garbage."""
    from metamap.training.checkpoint import TENSORS, latest_checkpoint

    (latest_checkpoint(run_dir) / TENSORS).write_bytes(b"\x00" * 64)
    return run_dir


# --------------------------------------------------------------------------- scoring


def snapshot(folder: Path) -> dict[str, bytes]:
    """Contents of every file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def judge(case: Case, folder: Path, before: dict[str, bytes], code: int | None, stderr: str) -> dict[str, Any]:
    """Score one finished command (``code`` None: it ran past the timeout)."""
    after = snapshot(folder)
    changed = sorted(name for name, data in before.items() if after.get(name) != data)
    lines = stderr.strip().splitlines()
    traceback = TRACEBACK in stderr
    problems = []
    if code is None:
        problems.append("still running at the timeout")
    elif code != 2:
        problems.append(f"exit code {code}, expected 2")
    if len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines, expected 1")
    elif case.expect and case.expect not in lines[0]:
        problems.append(f"the error does not name {case.expect!r}")
    return {
        "case": case.name,
        "exit_code": code,
        "stderr_lines": len(lines),
        "error": lines[-1] if lines else "",
        "traceback": traceback,
        "silent_wrong": bool(problems) and not traceback,
        "problems": problems,
        "payload_ran": (folder / MARKER).exists(),
        "files_changed": changed,
    }


def run_case(case: Case, timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """Prepare ``case`` in a temporary folder, run ``python -m metamap`` on it, and score it."""
    with tempfile.TemporaryDirectory(prefix="metamap-safety-") as tmp:
        folder = Path(tmp)
        argv = case.prepare(folder)
        before = snapshot(folder)
        started = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "metamap", *argv],
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
            code, stderr = done.returncode, done.stderr
        except subprocess.TimeoutExpired as exc:  # its output comes as bytes, even with text=True
            code, stderr = None, (exc.stderr or b"").decode(errors="replace")
        result = judge(case, folder, before, code, stderr)
        result["seconds"] = time.perf_counter() - started
        return result


def available_cases(quick: bool) -> list[Case]:
    """The cases to run: all (or the quick ones) whose data files exist here."""
    return [c for c in CASES if (c.quick or not quick) and (c.needs is None or c.needs.exists())]


def kill_points(workdir: Path) -> dict[str, Any] | None:
    """The kill-point trials of :mod:`metamap.bench.faults`, or None where that module is absent."""
    try:
        faults = importlib.import_module("metamap.bench.faults")
    except ImportError:
        return None
    return faults.kill_point_trials(workdir)


def run(quick: bool, json_path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    cases = available_cases(quick)
    rows = []
    for case in cases:
        rows.append(run_case(case))
        row = rows[-1]
        verdict = (
            "ok"
            if not (row["traceback"] or row["silent_wrong"] or row["payload_ran"] or row["files_changed"])
            else "FAIL"
        )
        print(f"{verdict:4s} {row['seconds']:5.1f} s  {case.name}: {row['error'][:100]}", flush=True)
    trials = None
    if not quick:
        with tempfile.TemporaryDirectory(prefix="metamap-kill-") as tmp:
            trials = kill_points(Path(tmp))
    headline = {
        "payloads_run": sum(r["payload_ran"] for r in rows),
        "tracebacks": sum(r["traceback"] for r in rows),
        "silent_wrong": sum(r["silent_wrong"] for r in rows),
        "runs_lost": sum(bool(r["files_changed"]) for r in rows),
        "kill_points_exact": trials["kill_points_exact"] if trials else None,
        "kill_points_total": trials["kill_points_total"] if trials else None,
        "cases": len(rows),
    }
    skipped = [c.name for c in CASES if c.needs is not None and not c.needs.exists()]
    result = {
        "benchmark": "safety",
        "quick": quick,
        "headline": headline,
        "goals": {
            "payloads_run": 0,
            "tracebacks": 0,
            "silent_wrong": 0,
            "runs_lost": 0,
            "kill_points": "all exact",
            "met": all(headline[k] == 0 for k in ("payloads_run", "tracebacks", "silent_wrong", "runs_lost"))
            and (trials is None or headline["kill_points_exact"] == headline["kill_points_total"]),
        },
        "settings": {"timeout_s": TIMEOUT_S, "python": sys.executable, "skipped_without_data": skipped},
        "cases": rows,
        "kill_point_trials": trials,
        "wall_seconds": time.perf_counter() - started,
        "machine": machine(),
        "notes": __doc__,
    }
    write_json(json_path, result)
    failed = [
        [
            r["case"],
            "traceback"
            if r["traceback"]
            else "; ".join(r["problems"]) or ("payload ran" if r["payload_ran"] else "files changed"),
        ]
        for r in rows
        if r["traceback"] or r["silent_wrong"] or r["payload_ran"] or r["files_changed"]
    ]
    if failed:
        print(format_table(["case", "failure"], failed))
    print(format_table(["key", "value"], [[k, v] for k, v in headline.items()]))
    print(f"wrote {json_path}")
    return result
