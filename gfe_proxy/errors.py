"""One error family; each error carries the answer the proxy gives for it.

``GfeError.status`` is the HTTP status the front end answers with when the error reaches the
request pipeline (h11's ``error_status_hint`` idea). Foreign exceptions (OSError, ruamel's
YAMLError, httptools' HttpParserError) are translated into these once, at the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass


class GfeError(Exception):
    """Base of every error gfe_proxy raises on purpose."""

    status: int = 500


@dataclass(frozen=True, slots=True)
class Problem:
    """One config problem at a position; ``str()`` is ``file:line:col: message``."""

    file: str
    line: int  # 1-based
    column: int  # 1-based
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class ConfigError(GfeError, ValueError):
    """app.yaml (or dispatch.yaml) is invalid. Carries every problem found, in file order."""

    status = 500

    def __init__(self, problems: list[Problem] | Problem) -> None:
        self.problems: tuple[Problem, ...] = (
            (problems,) if isinstance(problems, Problem) else tuple(problems)
        )
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def line(self) -> int:
        return self.problems[0].line if self.problems else 0

    @property
    def column(self) -> int:
        return self.problems[0].column if self.problems else 0


class RequestRejected(GfeError):
    """A client request the front end refuses before routing (HDR-3)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        super().__init__(reason)


class NotFound(GfeError):
    status = 404


class Forbidden(GfeError):
    status = 403


class UpstreamError(GfeError):
    """The instance misbehaved: connection reset, unparsable response (502)."""

    status = 502

    def __init__(self, message: str, *, sent_nothing: bool = False) -> None:
        # sent_nothing: the instance failed before any response byte arrived, so an
        # idempotent request may be retried elsewhere (INST-3).
        self.sent_nothing = sent_nothing
        super().__init__(message)


class ResponseTooLarge(GfeError):
    """RESP-5: an instance response body over 32 MB becomes an empty 500."""

    status = 500


class ResponseHeadersTooLarge(GfeError):
    """RESP-5: instance response headers over 8 KB in total become a 502."""

    status = 502


class InstanceUnavailable(GfeError):
    """No instance could take the request (503)."""

    status = 503


class DeadlineExceeded(GfeError):
    """SCALE-4: the request deadline passed while the instance was working (500)."""

    status = 500


class PendingTimeout(GfeError):
    """SCALE-3: the request waited too long in the pending queue (500)."""

    status = 500
    log_message = "Request was aborted after waiting too long to attempt to service your request."


class StartupError(GfeError):
    """gfe-proxy could not start: a port is taken, an entrypoint command is missing (exit 1)."""

    status = 500
