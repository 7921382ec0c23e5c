"""The one error type users see: every failure hcc can explain is raised as HccError and printed without a traceback."""
from __future__ import annotations


class HccError(Exception):
    """A failure with a message a user can act on (names the file, node or tensor involved)."""

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"
