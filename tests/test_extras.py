"""Optional extras: parsers build without them, and a dispatched command without its extra says what to install."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from metamap.cli import _parser, main
from metamap.errors import ConfigError
from metamap.extras import COMMAND_EXTRAS, EXTRAS, missing


def _uninstall(monkeypatch: pytest.MonkeyPatch, extra: str) -> None:
    """Make every package of ``extra`` unimportable, as on an install without it."""
    for module in EXTRAS[extra]:
        monkeypatch.setitem(sys.modules, module, None)


def _leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [parser]
    return [leaf for sub in subs[0].choices.values() for leaf in _leaves(sub)]


def _command_parser(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = _parser()
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


def test_missing_names_the_unimportable_packages(monkeypatch):
    monkeypatch.setitem(EXTRAS, "example", ("json", "blocked_for_this_test", "metamap_no_such_package"))
    monkeypatch.setitem(sys.modules, "blocked_for_this_test", None)
    assert missing("example") == ["blocked_for_this_test", "metamap_no_such_package"]


def test_energy_without_its_extra_is_one_line_and_writes_nothing(monkeypatch, tmp_path, capsys):
    loads = tmp_path / "loads.csv"
    loads.write_text("multiplier\n1.0\n")
    _uninstall(monkeypatch, "energy")
    code = main(["energy", "solve", "--case", "case30", "--loads", str(loads), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "metamap: error: metamap energy needs the 'energy' extra: pip install 'metamap[energy]'\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("path", "extra"), sorted(COMMAND_EXTRAS.items()))
def test_every_guarded_command_checks_its_extra(monkeypatch, path, extra):
    leaves = _leaves(_command_parser(path))
    assert leaves
    _uninstall(monkeypatch, extra)
    for leaf in leaves:
        with pytest.raises(ConfigError) as caught:
            leaf.get_default("handler")(argparse.Namespace())
        assert (
            str(caught.value)
            == f"{' '.join(('metamap', *path))} needs the '{extra}' extra: pip install 'metamap[{extra}]'"
        )


def test_physics_fit_needs_no_extra():
    from metamap.physics import commands

    assert _command_parser(("physics", "fit")).get_default("handler") is commands._fit


def test_benchmark_of_a_domain_checks_its_extra(monkeypatch, tmp_path, capsys):
    _uninstall(monkeypatch, "physics")
    code = main(["bench", "augment", "--quick", "--json", str(tmp_path / "augment.json")])
    assert code == 2
    assert capsys.readouterr().err == (
        "metamap: error: metamap bench augment needs the 'physics' extra: pip install 'metamap[physics]'\n"
    )
    assert not (tmp_path / "augment.json").exists()


@pytest.mark.slow
def test_help_and_domain_packages_import_without_any_extra():
    """In a fresh interpreter where no extra's package can be imported: every --help and domain import works."""
    blocked = sorted({module for modules in EXTRAS.values() for module in modules})
    script = f"""
import sys
sys.modules.update(dict.fromkeys({blocked!r}))
import metamap.astro, metamap.energy, metamap.geo, metamap.physics, metamap.traffic
from metamap.cli import main
for argv in ([], ["traffic"], ["geo"], ["energy"], ["astro"], ["physics"]):
    try:
        main([*argv, "--help"])
    except SystemExit as exc:
        assert exc.code == 0, (argv, exc.code)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "usage: metamap physics" in done.stdout
