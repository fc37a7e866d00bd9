"""The flags shared by every command: one definition, one help text, --device wherever a model runs."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest

from metamap.arguments import DEVICE_HELP, JSON_HELP, NO_PROGRESS_HELP, OUT_KINDS, SEED_HELP
from metamap.cli import _parser

# Every command that trains, adapts or applies a network.
RUNS_A_MODEL = {
    "train",
    "evaluate",
    "demo",
    "traffic train",
    "traffic adapt",
    "traffic predict",
    "traffic evaluate",
    "traffic patterns",
    "geo train",
    "geo fill",
    "geo forecast",
    "geo sample",
    "geo evaluate",
    "energy solve",
    "energy train",
    "energy adapt",
    "astro photoz",
    "astro classify",
    "physics run",
}
SAME_HELP = {"--seed": SEED_HELP, "--device": DEVICE_HELP, "--no-progress": NO_PROGRESS_HELP, "--json": JSON_HELP}


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every leaf command under ``parser`` by its full name (``"traffic adapt"``)."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_commands(sub, f"{prefix}{name} "))
            return found
    return {prefix.strip(): parser}


def _flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {option: action for action in parser._actions for option in action.option_strings}


COMMANDS = _commands(_parser())


def test_the_model_commands_are_all_commands_that_exist():
    assert RUNS_A_MODEL <= set(COMMANDS)
    assert {"bench", "physics fit"} <= set(COMMANDS) - RUNS_A_MODEL


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_device_is_offered_exactly_where_a_model_runs(name):
    offered = "--device" in COMMANDS[name].format_help()
    assert offered == (name in RUNS_A_MODEL), name
    if offered:
        assert _flags(COMMANDS[name])["--device"].default == "auto"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_shared_flags_read_the_same_in_every_command(name):
    flags = _flags(COMMANDS[name])
    for flag, text in SAME_HELP.items():
        if flag in flags:
            assert flags[flag].help == text, (name, flag)
    if "--out" in flags:
        kind, _, holds = flags["--out"].help.partition(": ")
        assert kind in OUT_KINDS.values() and holds, (name, flags["--out"].help)
    if "--steps" in flags:
        assert " steps" in flags["--steps"].help, (name, flags["--steps"].help)


def test_defaults_stay_per_command():
    assert _flags(COMMANDS["evaluate"])["--seed"].default == 1234
    assert _flags(COMMANDS["train"])["--seed"].default == 0
    assert _flags(COMMANDS["train"])["--steps"].default == 1000
    assert _flags(COMMANDS["geo fill"])["--steps"].default is None  # 20 or 25: chosen by the run's task
    assert _flags(COMMANDS["geo evaluate"])["--steps"].default == 20
    assert _flags(COMMANDS["traffic adapt"])["--steps"].default is None
    assert _flags(COMMANDS["bench"])["--json"].required
    assert not _flags(COMMANDS["evaluate"])["--json"].required
    assert str(_flags(COMMANDS["demo"])["--out"].default) == "runs/demo"
    # 0 meta-training steps is allowed where it was (train, then only evaluate), refused for sampler steps
    parse = _parser().parse_args
    assert parse(["train", "--out", "x", "--steps", "0"]).steps == 0
    with pytest.raises(SystemExit):
        parse(["geo", "sample", "--data", "d", "--var", "v", "--run", "r", "--out", "o", "--steps", "0"])


class _Reached(Exception):
    """Raised by a stand-in for the work of a command, holding the device it was handed."""


def _argv(tmp_path) -> dict[str, list[str]]:
    """Model-running domain commands with their required flags (the files need not exist)."""
    data, out = str(tmp_path / "data.h5"), str(tmp_path / "out")
    field, run = str(tmp_path / "field.nc"), str(tmp_path / "run")
    return {
        "traffic evaluate": ["traffic", "evaluate", "--data", data, "--out", out],
        "geo train": ["geo", "train", "--data", field, "--var", "t2m", "--out", out],
        "geo sample": ["geo", "sample", "--data", field, "--var", "t2m", "--run", run, "--out", out + ".nc"],
        "physics run": ["physics", "run", "--system", "oscillator", "--out", out],
        "astro classify": ["astro", "classify", "--data", data, "--out", out],
    }


@pytest.mark.parametrize("name", ["traffic evaluate", "geo train", "geo sample", "physics run", "astro classify"])
def test_device_cuda_without_a_gpu_is_one_line(name, tmp_path, monkeypatch, capsys):
    import torch

    from metamap.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = _argv(tmp_path)[name]
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "device 'cuda' was asked for, but torch sees no GPU" in err


@pytest.mark.parametrize(
    "name,target",
    [
        ("geo train", "metamap.geo.train.train_task"),
        ("physics run", "metamap.physics.experiment.run_system"),
        ("traffic evaluate", "metamap.traffic.commands._load_source"),
    ],
)
@pytest.mark.parametrize("gpu", [False, True])
def test_auto_resolves_to_the_gpu_when_there_is_one(name, target, gpu, tmp_path, monkeypatch):
    """``auto`` reaches the work as cuda:0 where torch sees a GPU (pretended here), else as the CPU."""
    import torch

    from metamap.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    seen = []
    if name == "traffic evaluate":  # the device is resolved first; the data are read after it
        import metamap.training.distributed as distributed

        real = distributed.pick_device
        monkeypatch.setattr(distributed, "pick_device", lambda text: seen.append(real(text)) or torch.device("cpu"))

        def stop(*args, **kwargs):
            raise _Reached

    else:

        def stop(*args, **kwargs):
            seen.append(torch.device(kwargs["device"]))
            raise _Reached

    monkeypatch.setattr(target, stop)
    argv = _argv(tmp_path)[name]
    if name == "geo train":
        monkeypatch.setattr("metamap.geo.io.open_field", lambda *a, **k: SimpleNamespace(shape=(2, 8, 8)))
        monkeypatch.setattr("metamap.training.run_folder.claim_run_folder", _no_claim)
    with pytest.raises(_Reached):
        main([*argv, "--device", "auto"])
    assert seen == [torch.device("cuda", 0) if gpu else torch.device("cpu")]


def _no_claim(*args, **kwargs):
    from contextlib import nullcontext

    return nullcontext()
