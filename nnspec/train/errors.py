"""Errors a user can act on: what went wrong and how to fix it, raised before training starts."""
from __future__ import annotations


class TrainError(Exception):
    """A training setting that cannot work (unknown optimizer, bad argument, impossible batch).

    Attributes:
        message: what is wrong, in one sentence.
        hint: how to fix it, or None.
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        """`error: ...` and `help: ...` lines, as the CLI prints them."""
        kind = "data error" if isinstance(self, DataError) else "error"
        text = f"{kind}: {self.message}"
        return text + (f"\nhelp: {self.hint}" if self.hint else "")

    def __str__(self) -> str:
        return self.message


class DataError(TrainError):
    """Data that is missing, malformed or does not fit the model's inputs and outputs."""
