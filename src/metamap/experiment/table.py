"""One result table for every domain: rows of method x setting, metric columns, optional 95% intervals."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from metamap.errors import ConfigError
from metamap.report import format_table


@dataclass(frozen=True)
class Row:
    """One method at one ``setting`` (shots, horizon, target, ...): metric ``values`` and their ``ci95`` half-widths."""

    method: str
    values: dict[str, float]
    setting: str = ""
    ci95: dict[str, float] = field(default_factory=dict)


@dataclass
class ResultTable:
    """Rows of methods, columns ``metrics`` (lower or higher is better as each metric says).

    ``setting_name`` heads the setting column ("K", "target", ...); the column
    is left out of text and markdown when no row has a setting.
    """

    metrics: tuple[str, ...]
    rows: list[Row] = field(default_factory=list)
    setting_name: str = "setting"

    def add(
        self,
        method: str,
        values: Mapping[str, float],
        *,
        setting: str = "",
        ci95: Mapping[str, float] | None = None,
    ) -> None:
        """Append a row; ``values`` (and ``ci95``) must name metrics of the table."""
        unknown = sorted((set(values) | set(ci95 or {})) - set(self.metrics))
        if unknown:
            raise ConfigError(f"result table row {method!r}: unknown metric(s) {unknown}; columns are {self.metrics}")
        self.rows.append(Row(method, {k: float(v) for k, v in values.items()}, setting, dict(ci95 or {})))

    def sorted_by(self, metric: str) -> ResultTable:
        """The same rows, lowest ``metric`` first (rows without it last; stable otherwise)."""
        if metric not in self.metrics:
            raise ConfigError(f"cannot sort by {metric!r}; columns are {self.metrics}")
        rows = sorted(self.rows, key=lambda row: row.values.get(metric, math.inf))
        return ResultTable(self.metrics, rows, self.setting_name)

    def to_json(self) -> dict[str, Any]:
        """JSON-able: ``{"metrics", "setting_name", "rows": [{"method", "setting", "values", "ci95"}]}``.

        Non-finite numbers become null (and come back as NaN in :meth:`from_json`).
        """
        return {
            "metrics": list(self.metrics),
            "setting_name": self.setting_name,
            "rows": [
                {
                    "method": row.method,
                    "setting": row.setting,
                    "values": {k: json_number(v) for k, v in row.values.items()},
                    "ci95": {k: json_number(v) for k, v in row.ci95.items()},
                }
                for row in self.rows
            ],
        }

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> ResultTable:
        """Inverse of :meth:`to_json`."""
        try:
            table = cls(tuple(payload["metrics"]), setting_name=str(payload["setting_name"]))
            for row in payload["rows"]:
                table.add(
                    row["method"],
                    {k: _from_json(v) for k, v in row["values"].items()},
                    setting=row["setting"],
                    ci95={k: _from_json(v) for k, v in row["ci95"].items()},
                )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"not a result table: missing or malformed {exc}") from None
        return table

    def to_text(self) -> str:
        """A fixed-width plain-text table (floats to 4 significant digits, intervals as ``± ci``)."""
        return format_table(self._header(), [self._cells(row) for row in self.rows])

    def to_markdown(self) -> str:
        """A GitHub-flavoured markdown table of the same cells as :meth:`to_text`."""
        lines = [self._header(), ["---"] * len(self._header()), *(self._cells(row) for row in self.rows)]
        return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)

    def _with_setting(self) -> bool:
        return any(row.setting for row in self.rows)

    def _header(self) -> list[str]:
        return ["method", *([self.setting_name] if self._with_setting() else []), *self.metrics]

    def _cells(self, row: Row) -> list[str]:
        cells = [row.method, *([row.setting] if self._with_setting() else [])]
        for metric in self.metrics:
            value = row.values.get(metric)
            ci = row.ci95.get(metric)
            cell = "" if value is None else f"{value:.4g}"
            if value is not None and ci is not None and math.isfinite(ci):
                cell += f" ± {ci:.2g}"
            cells.append(cell)
        return cells


def json_number(value: float) -> float | None:
    """``value``, or None (JSON null) where it is NaN or infinite."""
    return value if math.isfinite(value) else None


def _from_json(value: float | None) -> float:
    return math.nan if value is None else float(value)
