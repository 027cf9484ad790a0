"""The error vocabulary the CLI's one error boundary understands (bottom layer: no imports, no torch).

Any layer may raise these. The CLI prints a :class:`UserError` as one ``error: ...`` line without a
traceback and exits with its ``exit_code`` (2: bad input, nothing was created or changed; 3: the run
itself failed in a way the user must act on, e.g. a diverged loss). A :class:`JobError` is one that
every rank of the job raised together (after a collective), so the job ends cleanly on every rank
with the message printed once, and no rank needs MPI_Abort to wake the others.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user asked for or gave (input, file, setting): one line, no traceback."""

    exit_code = 2


class JobError(UserError):
    """A :class:`UserError` that every rank of the job raised together; ``rank`` is where it happened first."""

    def __init__(self, message: str, rank: int = 0) -> None:
        super().__init__(message)
        self.rank = rank
