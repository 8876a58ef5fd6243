"""What a validation found: one outcome per rule, and the report that gathers them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mlplatform.lib.quality.builders import Rule


@dataclass(frozen=True)
class Outcome:
    rule: Rule
    success: bool
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    sample: tuple = ()
    observed: object = None
    error: str | None = None
    rows: int = 0  # the rows the rule was evaluated on
    superseded: bool = False  # failed, but its column's failed type check is the reason worth reading

    def describe(self) -> str:
        where = f"column {self.rule.column!r}" if self.rule.column else "table"
        if self.rule.expectation == "expect_column_to_exist":
            found = "the column is missing"
        elif self.error:
            found = f"could not be evaluated: {self.error}"
        elif self.unexpected_count is not None:
            percent = f"{self.unexpected_percent:.2f}%" if self.unexpected_percent is not None else "?"
            found = f"{self.unexpected_count} of {self.rows} rows unexpected ({percent})"
            mostly = self.rule.mostly
            if mostly is not None:
                found += f", more than the {(1 - mostly) * 100:.4g}% tolerated (mostly={mostly:g})"
            if self.sample and self.rule.expectation != "expect_column_values_to_not_be_null":  # samples of nothing
                found += f", e.g. {list(self.sample)}"
        else:
            found = f"observed {self.observed!r}"
        if self.rule.note:
            found += f"; {self.rule.note}"
        return f"{where}: {self.rule.describe()} failed: {found} [{self.rule.severity}, from {self.rule.origin}]"


@dataclass
class QualityReport:
    suite: str
    rows: int
    outcomes: list[Outcome]
    seconds: float
    docs_index: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and not o.superseded and o.rule.severity == "error"]

    @property
    def warnings(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and not o.superseded and o.rule.severity == "warn"]

    @property
    def passed(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        return [o.describe() for o in self.errors + self.warnings]

    def table(self) -> pd.DataFrame:
        failed = self.errors + self.warnings
        return pd.DataFrame(
            {
                "severity": [o.rule.severity for o in failed],
                "column": [o.rule.column or "(table)" for o in failed],
                "rule": [o.rule.describe() for o in failed],
                "unexpected": [o.unexpected_count for o in failed],
                "percent": [
                    round(o.unexpected_percent, 3) if o.unexpected_percent is not None else None for o in failed
                ],
                "mostly": [o.rule.mostly for o in failed],
                "sample": [", ".join(map(str, o.sample)) or (o.error or "") for o in failed],
                "origin": [o.rule.origin for o in failed],
            }
        )

    def as_dict(self) -> dict:
        return {
            "suite": self.suite,
            "rows": self.rows,
            "passed": self.passed,
            "expectations": len(self.outcomes),
            "failures": [
                {
                    "column": o.rule.column,
                    "rule": o.rule.describe(),
                    "severity": o.rule.severity,
                    "origin": o.rule.origin,
                    "unexpected_count": o.unexpected_count,
                    "unexpected_percent": o.unexpected_percent,
                    "mostly": o.rule.mostly,
                    "sample": [str(v) for v in o.sample],
                    "error": o.error,
                    "message": o.describe(),
                }
                for o in self.errors + self.warnings
            ],
            "data_docs": str(self.docs_index) if self.docs_index else None,
        }
