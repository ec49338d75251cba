"""What to run for an instance and with which environment (SPEC INST-1, INST-2). Pure.

The supervisor carries these out; keeping them here lets the command and environment rules be
tested as tables without starting a process.
"""

from __future__ import annotations

import functools
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gfe_proxy.config import AppConfig

# Characters that only a shell understands. An entrypoint with none of them runs as an argv
# list (no shell between us and the server, so SIGTERM reaches it directly, STYLE 12).
_SHELL_SYNTAX = re.compile(r"[|&;<>`]|\$\(")
_PORT_VAR = re.compile(r"\$\{PORT\}|\$PORT\b")

SHIM_APP = "gfe_proxy.wsgi_shim:application"
SERVER_SOFTWARE = "Development/2.0 (gfe_proxy)"  # gen1 apps test it for "Development/"
SCRIPT_HEADER = "X-Google-Gfe-Script"  # internal: which WSGI app the shim runs (stripped by HDR-1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Launch:
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: Path
    uses_shim: bool  # gen1 script handlers: the proxy tells the shim which app to run


def uses_shim(config: AppConfig) -> bool:
    """Gen1-style ``script: pkg.module.app`` / ``*.py`` handlers run through our WSGI shim."""
    if config.entrypoint:
        return False
    return config.generation == 1 or any(h.script not in (None, "auto") for h in config.handlers)


@functools.cache
def _gunicorn_extra_flags() -> tuple[str, ...]:
    # gunicorn >= 25 opens a control socket at one fixed path in $HOME, shared by every
    # instance; our instances need none.
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:  # pragma: no cover - gunicorn is a dependency
        return ()
    for setting in KNOWN_SETTINGS:
        if "--no-control-socket" in (getattr(setting, "cli", None) or ()):
            return ("--no-control-socket",)
    return ()


def _gunicorn(port: int, threads: int, app: str, grace: float) -> tuple[str, ...]:
    # gthread: the only gunicorn worker that keeps connections alive, which the proxy's
    # keep-alive upstream client relies on. --timeout 0: the proxy owns deadlines (SCALE-4).
    return (
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        "gthread",
        "--workers",
        "1",
        "--threads",
        str(threads),
        "--timeout",
        "0",
        "--graceful-timeout",
        str(max(1, int(grace))),
        "--keep-alive",
        "75",
        "--log-level",
        "warning",
        *_gunicorn_extra_flags(),
        app,
    )


def command(
    config: AppConfig, *, port: int, stop_grace: float = 5.0
) -> tuple[tuple[str, ...], bool]:
    """The argv for one instance and whether it is the WSGI shim (SPEC INST-1).

    >>> # entrypoint "uvicorn main:app --port $PORT" -> ("uvicorn", "main:app", "--port", "8081")
    """
    if config.entrypoint:
        entry = config.entrypoint.strip()
        if _SHELL_SYNTAX.search(entry):
            return ("/bin/sh", "-c", entry), False
        argv = tuple(_PORT_VAR.sub(str(port), a) for a in shlex.split(entry))
        return argv, False
    threads = config.max_concurrent_requests
    if uses_shim(config):
        return _gunicorn(port, threads, SHIM_APP, stop_grace), True
    # gen2 without entrypoint: production runs `gunicorn -b :$PORT main:app`.
    return _gunicorn(port, threads, "main:app", stop_grace), False


def environment(
    config: AppConfig,
    *,
    port: int,
    instance_id: str,
    gae_instance: str,
    deployment_id: str,
    project: str,
    base: Mapping[str, str],
) -> dict[str, str]:
    """The instance's environment (SPEC INST-2): ours over the app's over the host's."""
    env = dict(base)
    # The venv's bin first, so `gunicorn` / `uvicorn` in an entrypoint are the ones we installed.
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + (":" + env["PATH"] if env.get("PATH") else "")
    env["PYTHONUNBUFFERED"] = "1"  # instance logs reach ours line by line
    env.update(config.env_variables)
    app_id = config.application or project
    version = config.version or "local"
    env.update(
        {
            "GAE_APPLICATION": f"s~{app_id}",
            "GAE_DEPLOYMENT_ID": deployment_id,
            "GAE_ENV": "standard",
            "GAE_INSTANCE": gae_instance,
            "GAE_MEMORY_MB": str(config.memory_mb),
            "GAE_RUNTIME": config.runtime,
            "GAE_SERVICE": config.service,
            "GAE_VERSION": version,
            "GOOGLE_CLOUD_PROJECT": app_id,
            "PORT": str(port),
        }
    )
    if config.generation == 1:
        env.update(
            {
                "CURRENT_VERSION_ID": f"{version}.{deployment_id}",
                "INSTANCE_ID": gae_instance,
                "SERVER_SOFTWARE": SERVER_SOFTWARE,
                "GFE_SERVER_SOFTWARE": SERVER_SOFTWARE,  # the shim restores it (gunicorn resets it)
                "AUTH_DOMAIN": "gmail.com",
                "APPLICATION_ID": f"s~{app_id}",
            }
        )
    return env
