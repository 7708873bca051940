"""Spec errors that name file, line, behaviour id and field."""

from __future__ import annotations


class SpecError(Exception):
    def __init__(self, message: str, *, file: str = "?", line: int = 0,
                 behaviour: str | None = None, field: str | None = None):
        self.message, self.file, self.line = message, file, line
        self.behaviour, self.field = behaviour, field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        who = f" behaviour {self.behaviour}" if self.behaviour else ""
        what = f" field {self.field}" if self.field else ""
        return f"{where}:{who}{what}: {self.message}" if who or what else \
            f"{where}: {self.message}"
