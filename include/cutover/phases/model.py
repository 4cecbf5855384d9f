"""The five migration phases of DESIGN.md and the flags applications read for each."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import IntEnum

from cutover.errors import TerminalError


class Phase(IntEnum):
    MYSQL_ONLY = 1
    DUAL_WRITE = 2
    DUAL_READ_MYSQL_PRIMARY = 3
    DUAL_READ_DYNAMODB_PRIMARY = 4
    DYNAMODB_ONLY = 5

    @property
    def slug(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | int) -> Phase:
        if isinstance(value, int) or str(value).isdigit():
            try:
                return cls(int(value))
            except ValueError:
                pass
        else:
            for phase in cls:
                if phase.slug == str(value).lower():
                    return phase
        names = ", ".join(f"{p.value} ({p.slug})" for p in cls)
        raise TerminalError(f"unknown phase {value!r}; phases are {names}")


@dataclass(frozen=True)
class Flags:
    databaseMode: str
    enableDualWrites: bool
    primaryReadSource: str
    fallbackEnabled: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


FLAGS: dict[Phase, Flags] = {
    Phase.MYSQL_ONLY: Flags("mysql-only", False, "mysql", True),
    Phase.DUAL_WRITE: Flags("dual-write", True, "mysql", True),
    Phase.DUAL_READ_MYSQL_PRIMARY: Flags("dual", True, "mysql", True),
    Phase.DUAL_READ_DYNAMODB_PRIMARY: Flags("dual", True, "dynamodb", True),
    Phase.DYNAMODB_ONLY: Flags("dynamodb-only", False, "dynamodb", False),
}


def source_of_truth(phase: Phase) -> str:
    """Where reconciliation repairs from: MySQL until DynamoDB answers reads."""
    return "dynamodb" if phase >= Phase.DUAL_READ_DYNAMODB_PRIMARY else "mysql"
