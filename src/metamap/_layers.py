"""The package's import layers, checked from the source alone: ``python -m metamap._layers``.

Data and control flow one way (see the design notes): a module imports only
from its own layer or the layers below it. Every module under ``src/metamap``
is parsed with :mod:`ast` (nothing is imported or run) and three rules are
checked:

- **layers**: an import of a module of a higher layer is a violation;
- **domains**: a domain (``traffic``, ``geo``, ...) never imports another
  domain, so each one can be read, tested and removed on its own;
- **private names**: ``from x import _y`` or ``x._y`` across modules reaches
  into another module's internals; a name another module needs is public.

Prints one line per violation and exits 1 when there is any.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "metamap"
SOURCE = Path(__file__).resolve().parent

DOMAINS = ("traffic", "geo", "astro", "physics", "energy")

# Bottom up: the first part of a module's name below ``metamap`` -> its layer. ``augment`` is generic (a
# generator fitted on any family's tasks) and serves the domains, so it sits below them. A domain's
# ``commands`` module is part of the command line, the top layer, whatever package holds it.
LAYERS: tuple[tuple[str, ...], ...] = (
    # general utilities, importable from anywhere
    ("", "errors", "arguments", "progress", "report", "paths", "plotting", "extras", "safe_hdf", "seeding", "testing"),
    ("tasks", "nn"),
    ("learners", "diffusion"),
    ("training",),
    ("preprocessing", "experiment", "augment"),
    DOMAINS,
    ("cli", "bench", "recipes", "demo", "__main__", "_layers", "commands"),
)
TOP = len(LAYERS) - 1


@dataclass(frozen=True)
class Import:
    """One import in module ``source`` (line ``line``) of ``target`` (a module, or ``module.name``)."""

    source: str
    target: str
    line: int
    private: bool  # the imported name (or attribute used) starts with "_"


def module_name(path: Path, root: Path = SOURCE) -> str:
    """``metamap.traffic.io`` for ``<root>/traffic/io.py``; ``metamap.tasks`` for ``<root>/tasks/__init__.py``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def layer_of(module: str) -> int:
    """The layer index of a ``metamap`` module; ValueError for a package part missing from :data:`LAYERS`."""
    parts = module.split(".")[1:]
    if parts and parts[-1] == "commands":
        return TOP
    head = parts[0] if parts else ""
    for index, names in enumerate(LAYERS):
        if head in names:
            return index
    raise ValueError(f"{module}: {head!r} is in no layer of metamap._layers.LAYERS")


def domain_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in DOMAINS else None


def imports(path: Path, root: Path = SOURCE) -> Iterator[Import]:
    """Every import of a ``metamap`` module in the file at ``path``, and each ``alias._name`` use of one."""
    source = module_name(path, root)
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    aliases: dict[str, str] = {}  # local name -> metamap module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = _resolve(node, package)
            if not base.startswith(PACKAGE):
                continue
            for alias in node.names:
                yield Import(source, f"{base}.{alias.name}", node.lineno, _private(alias.name))
                aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield Import(source, alias.name, node.lineno, False)
                    if alias.asname:
                        aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = _dotted(node.value)
            if owner is not None and owner.split(".")[0] in aliases:
                head, _, rest = owner.partition(".")
                target = ".".join(filter(None, [aliases[head], rest, node.attr]))
                yield Import(source, target, node.lineno, True)


def _private(name: str) -> bool:
    """``_name`` is private; ``__name__``-style names (``__version__``) are not."""
    return name.startswith("_") and not name.startswith("__")


def _resolve(node: ast.ImportFrom, package: str) -> str:
    """The absolute module of ``from [.]module import ...`` written in ``package``."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = parts[: len(parts) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of names and attributes, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def _owner(target: str, modules: set[str]) -> str:
    """The longest known module that ``target`` (a module or ``module.name``) names or lies in."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return PACKAGE


def violations(root: Path = SOURCE) -> list[str]:
    """One line per broken rule in the package at ``root``: ``module:line: what``."""
    paths = sorted(root.rglob("*.py"))
    modules = {module_name(path, root) for path in paths}
    found = []
    for path in paths:
        for imp in imports(path, root):
            owner = _owner(imp.target, modules)
            where = f"{imp.source}:{imp.line}"
            if owner == imp.source:
                continue
            if layer_of(owner) > layer_of(imp.source):
                found.append(f"{where}: imports {imp.target} from a higher layer")
            mine, theirs = domain_of(imp.source), domain_of(owner)
            if mine and theirs and mine != theirs:
                found.append(f"{where}: domain {mine} imports domain {theirs} ({imp.target})")
            if imp.private and imp.target.rpartition(".")[0] == owner:
                found.append(f"{where}: uses private {imp.target} of another module")
    return found


def main() -> int:
    found = violations()
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
