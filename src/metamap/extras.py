"""Optional dependencies ("extras"): which command needs which, and the one check made before it runs.

A core install (``pip install metamap``) runs ``metamap train | evaluate | demo``, the traffic commands and
``metamap physics fit``. The domains below need their extra; their parsers are built without it (so
``metamap --help`` and ``metamap energy --help`` always work), and when one of their commands is dispatched
without the extra the user reads ``metamap: error: metamap energy needs the 'energy' extra: pip install
'metamap[energy]'`` instead of a traceback from deep inside an import.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

from metamap.errors import ConfigError

# Import names of each extra's packages, as declared in pyproject.toml's [project.optional-dependencies].
EXTRAS: dict[str, tuple[str, ...]] = {
    "geo": ("xarray", "netCDF4", "h5netcdf", "zarr", "dask", "pykrige"),
    "energy": ("highspy", "ot", "pandapower", "simbench"),
    "astro": ("sklearn", "astropy", "pyarrow"),
    "physics": ("sklearn",),
}

# Commands (as typed after ``metamap``) that need an extra; a command needs it for all its sub-commands.
COMMAND_EXTRAS: dict[tuple[str, ...], str] = {
    ("geo",): "geo",
    ("energy",): "energy",
    ("astro",): "astro",
    ("physics", "run"): "physics",
}

# ``metamap bench NAME`` benchmarks that need a domain's extra.
BENCHMARK_EXTRAS: dict[str, str] = {
    "geo": "geo",
    "energy": "energy",
    "astro": "astro",
    "physics": "physics",
    "augment": "physics",
}


def missing(extra: str) -> list[str]:
    """The import names of ``extra``'s packages that cannot be imported (empty when the extra is installed)."""
    absent = []
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError:
            absent.append(module)
    return absent


def require(command: str, extra: str) -> None:
    """Raise :class:`~metamap.errors.ConfigError` when ``extra`` is not installed; ``command`` as the user typed it.

    The message reads ``metamap energy needs the 'energy' extra: pip install 'metamap[energy]'``.
    """
    if missing(extra):
        raise ConfigError(f"{command} needs the '{extra}' extra: pip install 'metamap[{extra}]'")


def guard_commands(commands: argparse._SubParsersAction) -> None:
    """Make every command of :data:`COMMAND_EXTRAS` (and ``bench``) check its extra before its handler runs.

    ``commands`` is the top-level sub-command action of the ``metamap`` parser, after every command has been
    registered; handlers are the ``handler`` defaults the command modules set on their parsers.
    """
    for path, extra in COMMAND_EXTRAS.items():
        parser = commands.choices[path[0]]
        for name in path[1:]:
            parser = _subcommands(parser)[name]
        _guard_tree(parser, " ".join(("metamap", *path)), extra)
    if "bench" in commands.choices:
        bench = commands.choices["bench"]
        bench.set_defaults(handler=_checked_benchmark(bench.get_default("handler")))


def _guard_tree(parser: argparse.ArgumentParser, command: str, extra: str) -> None:
    handler = parser.get_default("handler")
    if handler is not None:
        parser.set_defaults(handler=_checked(handler, command, extra))
    for sub in {id(p): p for p in _subcommands(parser).values()}.values():
        _guard_tree(sub, command, extra)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """``parser``'s sub-command parsers by name (empty when it has none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


Handler = Callable[[argparse.Namespace], Any]


def _checked(handler: Handler, command: str, extra: str) -> Handler:
    @wraps(handler)
    def run(args: argparse.Namespace) -> Any:
        require(command, extra)
        return handler(args)

    return run


def _checked_benchmark(handler: Handler) -> Handler:
    @wraps(handler)
    def run(args: argparse.Namespace) -> Any:
        extra = BENCHMARK_EXTRAS.get(args.name)
        if extra is not None:
            require(f"metamap bench {args.name}", extra)
        return handler(args)

    return run


def lazy_exports(
    package: str, exports: dict[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module ``__getattr__`` and ``__dir__`` for a package whose public names live in submodules.

    ``exports`` maps a submodule (relative to ``package``) to the names it provides; a name is imported on
    first use, so importing the package (and its ``commands`` module, when the CLI builds its parser) does not
    import an optional dependency. Use as ``__getattr__, __dir__ = lazy_exports(__name__, {...})``.
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__
