"""The error vocabulary the CLI's one error boundary understands (bottom layer: no imports, no torch).

Any layer may raise these. The CLI prints a :class:`UserError` as one ``error: ...`` line without a
traceback and exits with its ``exit_code`` (2: bad input, nothing was created or changed; 3: the run
itself failed in a way the user must act on, e.g. a diverged loss). A :class:`JobError` is one that
every rank of the job raised together (after a collective), so the job ends cleanly on every rank
with the message printed once, and no rank needs MPI_Abort to wake the others.

:func:`describe` is the one place that decides which exceptions are the user's to fix (bad input,
missing or foreign files, I/O) and which are bugs that keep their traceback.
"""

from __future__ import annotations

import errno
from typing import Optional, Sequence

# None: this rank's step went fine; otherwise (exit code, message). An empty message was printed already.
Status = Optional[tuple[int, str]]


class UserError(Exception):
    """A problem with what the user asked for or gave (input, file, setting): one line, no traceback."""

    exit_code = 2


class JobError(UserError):
    """A :class:`UserError` that every rank of the job raised together; ``rank`` is where it happened first.

    ``exit_code`` is the failing rank's; ``print_here`` is True on the one rank that reports it, so the
    message appears once per job.
    """

    def __init__(self, message: str, rank: int = 0, *, exit_code: int = 2, print_here: bool = True) -> None:
        super().__init__(message)
        self.rank = rank
        self.exit_code = exit_code
        self.print_here = print_here


# What the user can fix: bad values and names, files missing, foreign, unreadable or unwritable, full disks.
USER_FAILURES: tuple[type[BaseException], ...] = (UserError, ValueError, KeyError, OSError)

_OS_ADVICE = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def _os_message(exc: OSError) -> str:
    what = _OS_ADVICE.get(exc.errno or -1)
    name = exc.filename
    if what is None:
        return str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {name}" if name else ""
        return f"{what}{where}: free some space (or point the output elsewhere) and run the command again"
    where = f": {name}" if name else ""
    return f"{what}{where}: check the permissions, or point the output to a directory you can write to"


def describe(exc: BaseException, also: Sequence[type[BaseException]] = ()) -> Status:
    """(exit code, message) when ``exc`` is a failure the user can fix (see USER_FAILURES, plus ``also``); None for a bug."""
    if not isinstance(exc, (*USER_FAILURES, *also)):
        return None
    code = getattr(exc, "exit_code", 2)
    if isinstance(exc, KeyError) and exc.args:
        return code, str(exc.args[0])
    if isinstance(exc, OSError) and not isinstance(exc, UserError):
        return code, _os_message(exc)
    return code, str(exc) or type(exc).__name__


def status_of(exc: BaseException, also: Sequence[type[BaseException]] = ()) -> tuple[int, str]:
    """What a rank contributes to a handshake for ``exc``: :func:`describe`'s answer, or exit 1 for a bug."""
    if isinstance(exc, SystemExit):  # argparse printed its usage error (or --help) already
        return (exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1), ""
    return describe(exc, also) or (1, f"{type(exc).__name__}: {exc}")


def settle(statuses: Sequence[Status], rank: int, cause: Optional[BaseException] = None, *, name_rank: bool = True) -> None:
    """Raise the same :class:`JobError` on every rank if any rank's status is a failure; ``rank``: this one.

    ``statuses`` is every rank's status in rank order (one allgather); the lowest failing rank's exit
    code and message win, and only that rank prints. ``cause`` is this rank's own exception, if any; a
    process alone (one status) gets it back unchanged. ``name_rank``: say which ranks failed when not all did.
    """
    failed = [(r, s) for r, s in enumerate(statuses) if s is not None]
    if not failed:
        return
    if len(statuses) == 1 and cause is not None:
        raise cause  # alone: the original exception, type and all
    first, (code, message) = failed[0]
    if message and name_rank and len(failed) < len(statuses):
        ranks = ", ".join(str(r) for r, _ in failed)
        message += f" (on rank{'s' if len(failed) > 1 else ''} {ranks} of {len(statuses)})"
    raise JobError(message, first, exit_code=code, print_here=first == rank) from cause
