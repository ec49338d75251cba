"""``gfe-proxy serve|check|routes``: argparse -> Settings -> Proxy (SPEC §1 CLI, CLI-3).

Exit status: 0 on a clean stop, 2 on bad config or arguments, 1 on any other failure, always
with a one-line reason on stderr and never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gfe_proxy import __version__
from gfe_proxy.config import (
    DEFAULT_STATIC_EXPIRATION,
    AppConfig,
    AutomaticScaling,
    BasicScaling,
    DispatchRule,
)
from gfe_proxy.errors import ConfigError, Problem, StartupError
from gfe_proxy.settings import Settings, parse_size

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
DEMO_APP = Path(__file__).resolve().parent.parent / "conf" / "demo"


class UsageError(Exception):
    pass


def _env(name: str, default: Any) -> Any:
    """SPEC §1: every option is also readable from ``GFE_<NAME>``; flags win."""
    return os.environ.get("GFE_" + name.upper().replace("-", "_"), default)


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get("GFE_" + name.upper().replace("-", "_"))
    if raw is None:
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gfe-proxy",
        description="A local Google Front End: serves an App Engine app the way production does.",
    )
    p.add_argument("--version", action="version", version=f"gfe-proxy {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve one or more app directories (default: the demo)")
    serve.add_argument("apps", nargs="*", metavar="APP", help="app dir, app.yaml or dispatch.yaml")
    serve.add_argument("--host", default=_env("host", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(_env("port", 8080)))
    serve.add_argument("--https-port", type=int, default=int(_env("https_port", 8443)))
    serve.add_argument("--admin-port", type=int, default=int(_env("admin_port", 8000)))
    serve.add_argument("--cert", type=Path, default=_env("cert", None))
    serve.add_argument("--key", type=Path, default=_env("key", None))
    serve.add_argument("--cache-size", default=_env("cache_size", "256MB"))
    serve.add_argument("--compression", default=_env("compression", "gzip"))
    serve.add_argument(
        "--cache-header",
        action=argparse.BooleanOptionalAction,
        default=_env_bool("cache_header", True),
        help="send the emulator-only X-GFE-Cache header (SPEC CACHE-6)",
    )
    serve.add_argument("--log-format", choices=("text", "json"), default=_env("log_format", "text"))
    serve.add_argument(
        "--reload", action=argparse.BooleanOptionalAction, default=_env_bool("reload", False)
    )
    serve.add_argument(
        "--trust-forwarded-proto",
        action="store_true",
        default=_env_bool("trust_forwarded_proto", False),
    )
    serve.add_argument("--request-timeout", type=float, default=_env("request_timeout", None))
    serve.add_argument(
        "--scale-down-delay", type=float, default=float(_env("scale_down_delay", 900.0))
    )
    # Test-oriented: SPEC SCALE-3's 10 s pending timeout, shortened so a test need not wait.
    serve.add_argument(
        "--pending-timeout",
        type=float,
        default=float(_env("pending_timeout", 10.0)),
        help=argparse.SUPPRESS,
    )
    serve.add_argument("-q", "--quiet", action="store_true", help="no access log")

    for name, help_ in (("check", "validate app.yaml"), ("routes", "print the handler table")):
        c = sub.add_parser(name, help=help_)
        c.add_argument("apps", nargs="*", metavar="APP")
    return p


def _split_apps(apps: Sequence[str]) -> tuple[list[Path], Path | None]:
    paths, dispatch = [], None
    if not apps and not DEMO_APP.is_dir():
        raise UsageError("no APP given, and the bundled demo is not installed (give an app dir)")
    for a in apps or [str(DEMO_APP)]:
        path = Path(a)
        if path.name in ("dispatch.yaml", "dispatch.yml"):
            dispatch = path
        else:
            paths.append(path)
    if not paths:
        raise UsageError("no app given (only a dispatch.yaml)")
    return paths, dispatch


def load(apps: Sequence[str]) -> tuple[list[AppConfig], tuple[DispatchRule, ...]]:
    """Every app's config; ConfigError with the problems of all of them."""
    from gfe_proxy.appyaml import load_app, load_dispatch

    paths, dispatch_path = _split_apps(apps)
    configs: list[AppConfig] = []
    problems: list[Problem] = []
    for path in paths:
        try:
            configs.append(load_app(path))
        except ConfigError as e:
            problems.extend(e.problems)
    rules: tuple[DispatchRule, ...] = ()
    if dispatch_path is not None:
        try:
            rules = load_dispatch(dispatch_path)
        except ConfigError as e:
            problems.extend(e.problems)
    if problems:
        raise ConfigError(problems)
    seen: dict[str, Path] = {}
    for c in configs:
        if c.service in seen:
            raise UsageError(f"service {c.service!r} given twice: {seen[c.service]} and {c.path}")
        seen[c.service] = c.path
    return configs, rules


def _settings(ns: argparse.Namespace) -> Settings:
    codings = tuple(c.strip() for c in str(ns.compression).split(",") if c.strip())
    for c in codings:
        if c not in ("gzip", "br"):
            raise UsageError(f"--compression: unknown coding {c!r} (use gzip or br,gzip)")
    try:
        cache_size = parse_size(str(ns.cache_size))
    except ValueError as e:
        raise UsageError(f"--cache-size: {e}") from None
    if bool(ns.cert) != bool(ns.key):
        raise UsageError("--cert and --key must be given together")
    paths, dispatch = _split_apps(ns.apps)
    return Settings(
        apps=tuple(paths),
        dispatch=dispatch,
        host=ns.host,
        port=ns.port,
        https_port=ns.https_port,
        admin_port=ns.admin_port,
        cert=Path(ns.cert) if ns.cert else None,
        key=Path(ns.key) if ns.key else None,
        cache_size=cache_size,
        compression=codings,  # type: ignore[arg-type]
        log_format=ns.log_format,
        reload=ns.reload,
        trust_forwarded_proto=ns.trust_forwarded_proto,
        request_timeout=float(ns.request_timeout) if ns.request_timeout is not None else None,
        scale_down_delay=ns.scale_down_delay,
        pending_timeout=ns.pending_timeout,
        cache_header=ns.cache_header,
    )


def _scaling_name(c: AppConfig) -> str:
    if isinstance(c.scaling, AutomaticScaling):
        return "automatic"
    return "basic" if isinstance(c.scaling, BasicScaling) else "manual"


def route_table(config: AppConfig) -> list[str]:
    """The compiled handler table in match order (``gfe-proxy routes``)."""
    rows = [("#", "url", "serves", "secure", "login", "expiration")]
    for i, h in enumerate(config.handlers):
        if h.kind == "script":
            target = f"script {h.script}"
        elif h.kind == "static_dir":
            target = f"static_dir {h.static_dir}/"
        else:
            target = f"static_files {h.static_files} (upload {h.upload})"
        # Expiration only applies to static handlers (STATIC-3); 600 s when nothing is set.
        exp = h.expiration if h.expiration is not None else config.default_expiration
        if h.kind != "script" and exp is None:
            exp = DEFAULT_STATIC_EXPIRATION
        shown = "-" if h.kind == "script" or exp is None else f"{exp:g}s"
        rows.append((str(i), h.url, target, h.secure, h.login, shown))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]


def _check(ns: argparse.Namespace) -> int:
    configs, rules = load(ns.apps)
    for c in configs:
        print(
            f"{c.path}: OK — service {c.service}, runtime {c.runtime}, "
            f"{len(c.handlers)} handler(s), {_scaling_name(c)} scaling, "
            f"instance class {c.effective_instance_class}"
        )
        for name, pos in c.ignored:
            print(f"{pos}: note: {name!r} only matters in production; ignored locally")
    if rules:
        print(f"dispatch.yaml: OK — {len(rules)} rule(s)")
    return EXIT_OK


def _routes(ns: argparse.Namespace) -> int:
    configs, _ = load(ns.apps)
    for c in configs:
        print(f"# service {c.service} ({c.path})")
        for line in route_table(c):
            print(line)
    return EXIT_OK


def _setup_logging(settings: Settings, quiet: bool) -> None:
    root = logging.getLogger("gfe_proxy")
    root.setLevel(logging.INFO)
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers[:] = [err]
    root.propagate = False
    access = logging.getLogger("gfe_proxy.access")
    out = logging.StreamHandler(sys.stdout)
    out.setFormatter(logging.Formatter("%(message)s"))
    access.handlers[:] = [out]
    access.propagate = False
    access.setLevel(logging.WARNING if quiet else logging.INFO)


async def _serve_async(
    configs: list[AppConfig], rules: tuple[DispatchRule, ...], settings: Settings
) -> int:
    from gfe_proxy.server import Proxy

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    proxy = Proxy(configs, settings, dispatch=rules)
    starting = asyncio.ensure_future(proxy.start())
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if starting not in done:  # a signal while instances were starting
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, StartupError):
            await starting
        await proxy.stop()
        return EXIT_OK
    starting.result()  # raises StartupError
    for scheme, host, port in proxy.listeners:
        label = "admin" if scheme == "admin" else scheme
        shown = "admin http" if scheme == "admin" else scheme
        print(f"gfe-proxy: {label} listening on {shown.split()[-1]}://{host}:{port}/", flush=True)
    cert = proxy.certificate
    if cert is not None and cert.self_signed:
        made = "generated" if cert.created else "reused"
        print(
            f"gfe-proxy: https certificate {cert.cert} ({made}; self-signed for localhost, "
            "127.0.0.1 and ::1: trust it once to avoid browser warnings)",
            flush=True,
        )
    elif cert is not None:
        print(f"gfe-proxy: https certificate {cert.cert}", flush=True)
    for c in configs:
        print(f"gfe-proxy: service {c.service} from {c.path}", flush=True)
        for line in route_table(c):
            print("  " + line, flush=True)
    print("gfe-proxy: ready", flush=True)
    await stopping
    print("gfe-proxy: stopping", flush=True)
    await proxy.stop()
    return EXIT_OK


def _serve(ns: argparse.Namespace) -> int:
    settings = _settings(ns)
    configs, rules = load(ns.apps)
    _setup_logging(settings, ns.quiet)
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_serve_async(configs, rules, settings))


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    try:
        if ns.command == "check":
            return _check(ns)
        if ns.command == "routes":
            return _routes(ns)
        return _serve(ns)
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    except UsageError as e:
        print(f"gfe-proxy: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except StartupError as e:
        print(f"gfe-proxy: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK
    except OSError as e:
        print(f"gfe-proxy: {e}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
