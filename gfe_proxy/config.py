"""The app.yaml model: frozen values, no I/O.

Field names follow app.yaml's spelling so the reference and the code read the same.
``appyaml.py`` (and ``dispatchyaml.py`` for dispatch rules) build these from text; everything
else reads them.
Durations are already converted to seconds (floats) by the loader (SPEC CFG-3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias

Secure: TypeAlias = Literal["optional", "always", "never"]
Login: TypeAlias = Literal["optional", "required", "admin"]
AuthFailAction: TypeAlias = Literal["redirect", "unauthorized"]
HandlerKind: TypeAlias = Literal["script", "static_dir", "static_files"]
ErrorCode: TypeAlias = Literal["default", "over_quota", "dos_api_denial", "timeout"]

# SPEC CFG-5: the documented default skip_files list (app.yaml reference).
DEFAULT_SKIP_FILES: tuple[str, ...] = (
    r"^(.*/)?#.*#$",
    r"^(.*/)?.*~$",
    r"^(.*/)?.*\.py[co]$",
    r"^(.*/)?.*/RCS/.*$",
    r"^(.*/)?\..*$",
)

# SPEC INST-2: GAE_MEMORY_MB by instance class; gen2 figures, then gen1 (python27) ones.
MEMORY_MB_GEN2: dict[str, int] = {
    "F1": 384,
    "F2": 768,
    "F4": 1536,
    "F4_1G": 3072,
    "B1": 384,
    "B2": 768,
    "B4": 1536,
    "B4_1G": 3072,
    "B8": 3072,
}
MEMORY_MB_GEN1: dict[str, int] = {
    "F1": 128,
    "F2": 256,
    "F4": 512,
    "F4_1G": 1024,
    "B1": 128,
    "B2": 256,
    "B4": 512,
    "B4_1G": 1024,
    "B8": 1024,
}

DEFAULT_STATIC_EXPIRATION = 600.0  # seconds; SPEC STATIC-3: 10 minutes when nothing is set


@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    """Where an element was written: 1-based line and column in ``file``."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Handler:
    """One entry of ``handlers:``; exactly one of script/static_dir/static_files is set."""

    url: str
    script: str | None = None
    static_dir: str | None = None
    static_files: str | None = None
    upload: str | None = None  # regex; required with static_files (CFG-2)
    mime_type: str | None = None
    expiration: float | None = None  # seconds; None = default_expiration
    http_headers: tuple[tuple[str, str], ...] = ()  # in file order, original case
    secure: Secure = "optional"
    login: Login = "optional"
    auth_fail_action: AuthFailAction = "redirect"
    redirect_http_response_code: int = 302  # SPEC SEC-1 default
    require_matching_file: bool = False
    application_readable: bool = False
    position: Position | None = field(default=None, compare=False)

    @property
    def kind(self) -> HandlerKind:
        if self.script is not None:
            return "script"
        if self.static_dir is not None:
            return "static_dir"
        return "static_files"


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorHandler:
    """One entry of ``error_handlers:``; ``file`` is relative to the app directory."""

    file: str
    error_code: ErrorCode = "default"
    mime_type: str = "text/html"  # SPEC ERR-2


@dataclass(frozen=True, slots=True, kw_only=True)
class AutomaticScaling:
    """``automatic_scaling:``; latencies in seconds, None where app.yaml says ``automatic``."""

    target_cpu_utilization: float | None = None  # fraction; accepted, not used locally
    target_throughput_utilization: float = 0.6  # fraction; app.yaml reference default
    max_concurrent_requests: int = 10  # app.yaml reference default
    min_instances: int = 0
    max_instances: int | None = None  # None = unbounded in production; capped by settings
    min_idle_instances: int = 0
    max_idle_instances: int | None = None  # None = automatic
    min_pending_latency: float | None = None  # seconds; None = automatic
    max_pending_latency: float | None = None  # seconds; None = automatic


@dataclass(frozen=True, slots=True, kw_only=True)
class BasicScaling:
    """``basic_scaling:``."""

    max_instances: int = 1
    idle_timeout: float = 300.0  # seconds; SPEC SCALE-2 default 5 min


@dataclass(frozen=True, slots=True, kw_only=True)
class ManualScaling:
    """``manual_scaling:``."""

    instances: int = 1


Scaling: TypeAlias = AutomaticScaling | BasicScaling | ManualScaling


@dataclass(frozen=True, slots=True, kw_only=True)
class AppConfig:
    """One service's app.yaml, with includes merged and defaults applied."""

    path: Path  # the app.yaml file itself (absolute)
    root: Path  # the app directory: static files and code resolve under it (absolute)
    runtime: str
    api_version: str | None = None
    threadsafe: bool | None = None
    service: str = "default"  # `module:` is an accepted older spelling
    version: str | None = None
    application: str | None = None
    entrypoint: str | None = None
    instance_class: str | None = None  # None = F1 (automatic) or B2 (basic/manual)
    env_variables: tuple[tuple[str, str], ...] = ()
    handlers: tuple[Handler, ...] = ()
    error_handlers: tuple[ErrorHandler, ...] = ()
    default_expiration: float | None = None  # seconds
    inbound_services: tuple[str, ...] = ()
    skip_files: tuple[str, ...] = DEFAULT_SKIP_FILES  # regexes over paths relative to root
    scaling: Scaling = field(default_factory=AutomaticScaling)
    # Elements accepted but meaningless locally (libraries, vpc_access_connector, ...),
    # with where they were written, so `check` can report them as ignored (CFG-1).
    ignored: tuple[tuple[str, Position], ...] = ()

    @property
    def generation(self) -> int:
        """1 for ``python27`` (and other gen1 runtimes), 2 for ``python3*``."""
        return 1 if self.runtime in ("python27", "python25", "go111") else 2

    @property
    def effective_instance_class(self) -> str:
        if self.instance_class:
            return self.instance_class
        return "F1" if isinstance(self.scaling, AutomaticScaling) else "B2"

    @property
    def memory_mb(self) -> int:
        table = MEMORY_MB_GEN1 if self.generation == 1 else MEMORY_MB_GEN2
        return table.get(self.effective_instance_class, 384)

    @property
    def max_concurrent_requests(self) -> int:
        """SPEC INST-4: per-instance slots; gen1 ``threadsafe: false`` means one."""
        if self.generation == 1 and self.threadsafe is False:
            return 1
        if isinstance(self.scaling, AutomaticScaling):
            return self.scaling.max_concurrent_requests
        return 10

    def error_handler(self, code: ErrorCode) -> ErrorHandler | None:
        for eh in self.error_handlers:
            if eh.error_code == code:
                return eh
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchRule:
    """One ``dispatch:`` entry of dispatch.yaml (ROUTE-5)."""

    url: str  # host-and-path pattern, `*` only as host prefix or path suffix
    service: str
    position: Position | None = field(default=None, compare=False)
