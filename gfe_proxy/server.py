"""The I/O glue: listeners and the request pipeline. It moves bytes between pure parts.

Pipeline for one request (each stage is a pure module; this file only wires them):

    limits (headers.HDR-3) -> service (services.ROUTE-5) -> reserved paths (routing.ROUTE-4)
    -> handler (routing.ROUTE-1..3) -> static (static.STATIC-*) | instance (supervisor, upstream)
    -> response header rules (headers.RESP-*) -> access log (accesslog.LOG-1)

Errors the proxy makes are ``GfeError``s carrying their status; they become GFE error pages
(errorpages.ERR-1/ERR-2) in one place, ``_error_response``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from aiohttp import web
from multidict import CIMultiDict

from gfe_proxy import accesslog, frontdoor, headers, launch, login, routing, tls, wire
from gfe_proxy.cache import CachedResponse, CacheStatus, Served
from gfe_proxy.caching import cache_key
from gfe_proxy.config import AppConfig, DispatchRule
from gfe_proxy.edge import Edge
from gfe_proxy.errorpages import ErrorPages, gfe_error_page
from gfe_proxy.errors import (
    DeadlineExceeded,
    GfeError,
    NotFound,
    PendingTimeout,
    ResponseTooLarge,
    StartupError,
)
from gfe_proxy.front import FrontServer, Request
from gfe_proxy.services import select
from gfe_proxy.settings import Settings
from gfe_proxy.static import StaticFiles
from gfe_proxy.supervisor import ServiceRuntime

log = logging.getLogger("gfe_proxy")
access_log = logging.getLogger("gfe_proxy.access")

Scheme = Literal["http", "https"]


@dataclass(slots=True)
class Service:
    """One service's compiled configuration and its instances."""

    config: AppConfig
    router: routing.Router
    static: StaticFiles
    pages: ErrorPages
    runtime: ServiceRuntime
    shim: bool

    @classmethod
    def build(cls, config: AppConfig, settings: Settings) -> Service:
        return cls(
            config=config,
            router=routing.Router.from_handlers(config.handlers),
            static=StaticFiles(config.root, config.skip_files),
            pages=ErrorPages(config),
            runtime=ServiceRuntime(config, settings),
            shim=launch.uses_shim(config),
        )


@dataclass(slots=True)
class Exchange:
    """What the access log needs to know about one request, filled in as it goes."""

    service: str = "-"
    version: str = "-"
    instance: str = "-"
    pending_ms: int = 0
    loading: bool = False
    cache: str = "-"
    request_log_id: str = ""
    trace: str = ""
    user: headers.UserInfo | None = None  # the signed-in user (SPEC LOGIN-3, LOGIN-5)
    trace_echo: str = ""  # X-Cloud-Trace-Context for the response (RESP-1)
    scheme: str = "http"  # the effective scheme (SEC-2)
    target_instance: str | None = None  # INSTANCE-dot-… host naming one instance (ROUTE-5)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or StartupError naming the taken port (SPEC CLI-3: exit 1)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise StartupError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(1024)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise StartupError(f"port {port} on {host} is already in use") from None
        raise StartupError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.setblocking(False)
    return sock


class Proxy:
    """gfe_proxy's front end: the services, their instances and the listeners."""

    def __init__(
        self,
        configs: Sequence[AppConfig],
        settings: Settings,
        *,
        dispatch: Sequence[DispatchRule] = (),
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rand: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.wall = wall
        self.rand = rand or random.Random()
        self.services = {c.service: Service.build(c, settings) for c in configs}
        self.dispatch = tuple(dispatch)
        self.log_ids = headers.RequestLogIds(self.rand)
        self.edge = Edge(settings, clock=wall)
        self.listeners: list[tuple[str, str, int]] = []  # (scheme, host, port)
        self.certificate: tls.Certificate | None = None  # the HTTPS listener's, once started
        self.ready = False
        self._fronts: list[FrontServer] = []  # the public listeners (front.py)
        self._runners: list[web.BaseRunner] = []  # the admin listener (aiohttp)
        self._date_second = -1
        self._date = ""
        self._date_lines_for = ""  # the Date value _date_lines was made for
        self._date_lines = b""
        self._default_host: str | None = None  # _default_hostname's answer for
        self._default_host_for = 0  # this many listeners
        self._json_log = settings.log_format == "json"
        self._reload_task: asyncio.Task[None] | None = None  # --reload watcher (reload.py)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind every listener (fail fast on a taken port), start the instances, then serve."""
        socks: list[tuple[Scheme, socket.socket]] = [
            ("http", bind(self.settings.host, self.settings.port))
        ]
        admin_sock = None
        ssl_context = None
        try:
            if self.settings.https_port:
                # SPEC §1: --cert/--key, else the cached self-signed localhost certificate.
                self.certificate = tls.listener_certificate(
                    self.settings.cert, self.settings.key, environ=os.environ, now=self.wall()
                )
                ssl_context = tls.server_context(self.certificate.cert, self.certificate.key)
                socks.append(("https", bind(self.settings.host, self.settings.https_port)))
            if self.settings.admin_port:
                admin_sock = bind(self.settings.host, self.settings.admin_port)
            await asyncio.gather(*(s.runtime.start() for s in self.services.values()))
        except BaseException:
            for _, s in socks:
                s.close()
            if admin_sock is not None:
                admin_sock.close()
            await self.stop()
            raise
        for scheme, sock in socks:
            tls_ctx = ssl_context if scheme == "https" else None
            front = await FrontServer.start(self._handler_for(scheme), sock, ssl=tls_ctx)
            self._fronts.append(front)
            host, port = sock.getsockname()[:2]
            self.listeners.append((scheme, str(host), int(port)))
        if admin_sock is not None:
            from gfe_proxy.admin import admin_app

            admin_runner = web.AppRunner(admin_app(self), handle_signals=False, access_log=None)
            await admin_runner.setup()
            await web.SockSite(admin_runner, admin_sock).start()
            self._runners.append(admin_runner)
            host, port = admin_sock.getsockname()[:2]
            self.listeners.append(("admin", str(host), int(port)))
        if self.settings.reload:
            self._reload_task = asyncio.get_running_loop().create_task(
                self._watch_files(), name="reload-watcher"
            )
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if self._reload_task is not None:
            self._reload_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reload_task
            self._reload_task = None
        await asyncio.gather(*(f.close() for f in self._fronts), return_exceptions=True)
        self._fronts.clear()
        for runner in reversed(self._runners):
            with contextlib.suppress(Exception):
                await runner.cleanup()
        self._runners.clear()
        await asyncio.gather(
            *(s.runtime.close() for s in self.services.values()), return_exceptions=True
        )

    def listener_stats(self) -> list[dict[str, Any]]:
        """Each listener with its open client connections and answered requests (the admin
        listener's are aiohttp's, not counted: None)."""
        fronts = {front.sockname[1]: front for front in self._fronts}
        out: list[dict[str, Any]] = []
        for scheme, host, port in self.listeners:
            front = fronts.get(port)
            out.append(
                {
                    "scheme": scheme,
                    "host": host,
                    "port": port,
                    "connections": front.connections if front else None,
                    "requests": front.requests if front else None,
                    "refused": front.refused if front else None,
                }
            )
        return out

    def cache_stats(self) -> dict[str, Any]:
        """Edge cache and compression counters for /api/status and /metrics (CACHE-*, COMP-*)."""
        return self.edge.stats()

    def purge_cache(self, *, url: str | None = None, prefix: str | None = None) -> int:
        """``POST /api/cache/purge``: drop entries by URL, by prefix, or all (CACHE-5)."""
        return self.edge.purge(url=url, prefix=prefix)

    # -- the pipeline -------------------------------------------------------------------

    def _handler_for(self, scheme: Scheme) -> Callable[[Request], Awaitable[wire.Reply]]:
        async def handler(request: Request) -> wire.Reply:
            return await self.handle(request, scheme)

        return handler

    def date(self, now: float) -> str:
        second = int(now)
        if second != self._date_second:
            self._date_second = second
            self._date = headers.http_date(now)
        return self._date

    async def handle(self, request: Request, scheme: Scheme) -> wire.Reply:
        t0 = self.clock()
        now = self.wall()
        ex = Exchange()
        service: Service | None = None
        # SPEC SEC-2: the listener's scheme, or a trusted X-Forwarded-Proto; decided once here.
        scheme = login.effective_scheme(
            scheme,
            request.headers.getall("X-Forwarded-Proto", ()),
            trusted=self.settings.trust_forwarded_proto,
        )
        ex.scheme = scheme
        try:
            # The service first (Host only, no body read), so that even a rejected request
            # gets that app's error_handlers page (ERR-2); then SPEC HDR-3's limits, before
            # anything reads the request.
            service = self._service(request, ex)
            ex.service = service.config.service
            ex.version = service.config.version or "local"  # as GAE_VERSION (INST-2)
            headers.check_request_headers(request.headers.items())
            headers.check_request_body_length(request.content_length)
            response = await self._route(request, scheme, service, ex, t0, now)
        except GfeError as e:
            response = self._error_response(e, request, service, now)
        except Exception:  # never a traceback to the client (ERR-1)
            log.exception("internal error serving %s %s", request.method, request.path_qs)
            response = self._error_response(GfeError("internal error"), request, service, now)
        self._access(request, response, ex, t0, now)
        return response

    def _service(self, request: Request, ex: Exchange) -> Service:
        if len(self.services) == 1 and not self.dispatch and "-dot-" not in request.host:
            return next(iter(self.services.values()))
        target = select(request.host, request.path, self.services.keys(), self.dispatch)
        ex.target_instance = target.instance
        return self.services[target.service]

    async def _route(
        self,
        request: Request,
        scheme: Scheme,
        service: Service,
        ex: Exchange,
        t0: float,
        now: float,
    ) -> wire.Reply:
        # Decoded like dev_appserver (so /%61dmin cannot dodge an /admin handler), but with
        # %2F kept encoded so the static guard can refuse encoded separators (STATIC-5).
        path = routing.route_path(request.raw_path.partition("?")[0])
        reserved = routing.reserved(path)
        if reserved == "blocked":
            raise NotFound(path)  # SPEC ROUTE-4: only we send /_ah/warmup|start|stop
        # SPEC LOGIN-3: identity only from our cookie (client X-AppEngine-* never count, HDR-1).
        ex.user = frontdoor.signed_in_user(request)
        if reserved is not None:  # SPEC LOGIN-4: /_ah/login and /_ah/logout are ours
            ex.instance = "frontdoor"
            return await frontdoor.login_page(request, reserved, user=ex.user, date=self.date(now))
        match = service.router.match(path)
        if match is None:
            raise NotFound(path)  # SPEC ROUTE-3
        # Front door (SPEC SEC-*, LOGIN-*): redirects and sign-in checks come after routing,
        # because secure:/login: belong to the matched handler.
        if frontdoor.applies(request, match.handler, scheme):
            door = frontdoor.check(
                request,
                match.handler,
                scheme=scheme,
                user=ex.user,
                other_port=self._other_port(request, scheme),
                date=self.date(now),
            )
            if door is not None:
                ex.instance = "frontdoor"
                return door
        produce: Callable[[], Awaitable[Served]]
        if match.handler.kind == "script":
            produce = partial(self._dynamic, request, scheme, service, match, ex, t0, now)
        else:
            produce = partial(self._static, request, service, match, ex, now)
        if not (self.edge.cache.enabled and request.method in ("GET", "HEAD")):
            ex.cache = CacheStatus.BYPASS.value  # SPEC CACHE-6
            served = await produce()
            return self._finish(request, served.status, served.headers, served.body, ex, now)
        key = cache_key(scheme, request.host, request.raw_path)
        response, status, age = await self.edge.through_cache(
            key, request.method, request.headers, produce
        )
        ex.cache = status.value
        if isinstance(response, CachedResponse):
            fast = self._prebuilt_hit(request, response, age, ex, now)
            if fast is not None:
                return fast
            code, out, send_body = Edge.hit_headers(response, request.headers)
            out["Age"] = str(age or 0)  # SPEC CACHE-4
            return self._finish(request, code, out, response.body if send_body else b"", ex, now)
        assert isinstance(response, Served)
        return self._finish(
            request, response.status, response.headers, response.body, ex, now, response.reason
        )

    def _prebuilt_hit(
        self,
        request: Request,
        entry: CachedResponse,
        age: int | None,
        ex: Exchange,
        now: float,
    ) -> wire.Reply | None:
        """A hit sent from the entry's serialised header lines: the same bytes as
        ``hit_headers`` + ``_finish`` produce, or None where those must run (the entry has
        no block, the client's If-None-Match may turn it into a 304 (CACHE-4), a trace echo
        is due)."""
        block = entry.head
        if block is None or ex.trace_echo or "If-None-Match" in request.headers:
            return None
        # _finish's order: Age (CACHE-4), Server and Date (RESP-1), X-GFE-Cache (CACHE-6).
        extra = b"Age: %d\r\n%b" % (age or 0, self._server_date_line(now))
        if self.settings.cache_header:
            extra += b"X-GFE-Cache: " + ex.cache.encode() + b"\r\n"
        return wire.prebuilt_response(request, entry.status, block, entry.body, extra)

    def _server_date_line(self, now: float) -> bytes:
        date = self.date(now)
        if date is not self._date_lines_for:
            self._date_lines_for = date
            self._date_lines = f"Server: {headers.SERVER}\r\nDate: {date}\r\n".encode()
        return self._date_lines

    async def _static(
        self,
        request: Request,
        service: Service,
        match: routing.RouteMatch,
        ex: Exchange,
        now: float,
    ) -> Served:
        ex.instance = "static"
        sr = service.static.respond(
            request.method,
            request.headers,
            match,
            default_expiration=service.config.default_expiration,
            now=now,
        )
        etag = sr.headers.get("ETag")
        body = await self.edge.encode(
            request.headers,
            sr.headers,
            sr.body,
            status=sr.status,
            may_compress=sr.status == 200 and etag is not None,
            origin_encoding=None,
            static_etag=etag,
        )
        return Served(sr.status, sr.headers, body)

    async def _dynamic(
        self,
        request: Request,
        scheme: Scheme,
        service: Service,
        match: routing.RouteMatch,
        ex: Exchange,
        t0: float,
        now: float,
    ) -> Served:
        config = service.config
        body = await self._read_body(request)
        trace = headers.request_trace(request.headers, self.rand)
        ex.request_log_id = self.log_ids.next(now)
        ex.trace = trace.trace_id
        ctx = headers.ForwardContext(
            client_ip=request.remote or "127.0.0.1",
            scheme=scheme,
            trace=trace,
            request_log_id=ex.request_log_id,
            default_version_hostname=self._default_hostname(),
            timeout_ms=int(service.runtime.deadline * 1000),
            geo=self.settings.geo,
            generation=config.generation,
            trusted_forwarded_for=self.settings.trust_forwarded_proto,
            user=ex.user,
            host=request.host,
        )
        out_headers = headers.upstream_request_headers(request.headers, ctx)
        if service.shim and match.script is not None:
            out_headers.append((launch.SCRIPT_HEADER, match.script))
        fwd = await service.runtime.forward(
            request.method,
            request.raw_path,
            out_headers,
            body,
            started=t0,
            instance=ex.target_instance,
        )
        ex.instance, ex.pending_ms, ex.loading = fwd.instance_id, fwd.pending_ms, fwd.loading
        r = fwd.response
        head = headers.response_headers(
            r.headers,
            generation=config.generation,
            trace=trace,
            date=self.date(now),
            body_length=len(r.body),
            method=request.method,
            status=r.status,
            now=now,
            front_end=False,  # _finish adds Server and Date to each response (RESP-1)
        )
        out = head.headers
        # The trace echo belongs to this request, not to a stored copy (RESP-1, CACHE-4).
        ex.trace_echo = trace.response_echo
        if not head.send_body:
            return Served(r.status, out, b"", r.reason)
        sent = await self.edge.encode(
            request.headers,
            out,
            r.body,
            status=r.status,
            may_compress=head.may_compress,
            origin_encoding=r.headers.get("Content-Encoding"),
        )
        return Served(r.status, out, sent, r.reason)

    def _finish(
        self,
        request: Request,
        status: int,
        out: CIMultiDict[str],
        body: bytes,
        ex: Exchange,
        now: float,
        reason: str | None = None,
    ) -> wire.Reply:
        """Add what belongs to this one response (RESP-1, CACHE-6) and hand it to aiohttp."""
        out["Server"] = headers.SERVER
        out["Date"] = self.date(now)
        if ex.scheme == "http":
            # Browsers ignore HSTS over plain HTTP, and RFC 6797 §7.2 forbids sending it there:
            # an http_headers Strict-Transport-Security goes out over HTTPS only.
            out.popall("Strict-Transport-Security", None)
        if ex.trace_echo:
            out["X-Cloud-Trace-Context"] = ex.trace_echo
        if self.settings.cache_header:
            out["X-GFE-Cache"] = ex.cache
        return self._response(request, status, out, body, reason=reason)

    async def _read_body(self, request: Request) -> bytes:
        """The whole request body, 413 past 32 MB even when chunked (SPEC HDR-3, front.py)."""
        if not request.body_exists:
            return b""
        return await request.read()

    def _other_port(self, request: Request, scheme: Scheme) -> int | None:
        """SPEC SEC-1: the port a secure: redirect targets; None = the scheme's default."""
        if self.settings.trust_forwarded_proto and "X-Forwarded-Proto" in request.headers:
            return None  # behind a TLS-terminating proxy: its public ports are the defaults
        want = "https" if scheme == "http" else "http"
        return next((port for s, _, port in self.listeners if s == want), None)

    def _default_hostname(self) -> str:
        # Fixed once the listeners are bound (SPEC HDR-2 X-AppEngine-Default-Version-Hostname).
        if self._default_host is not None and self._default_host_for == len(self.listeners):
            return self._default_host
        host = self.settings.host
        if host in ("0.0.0.0", "::", ""):
            host = "localhost"
        port = self.listeners[0][2] if self.listeners else self.settings.port
        self._default_host, self._default_host_for = f"{host}:{port}", len(self.listeners)
        return self._default_host

    def _response(
        self,
        request: Request,
        status: int,
        out: CIMultiDict[str],
        body: bytes,
        *,
        reason: str | None = None,
    ) -> wire.Reply:
        return wire.response(request, status, reason, out, body)

    def _error_response(
        self,
        error: GfeError,
        request: Request,
        service: Service | None,
        now: float,
    ) -> wire.Reply:
        status = error.status
        out: CIMultiDict[str] = CIMultiDict()
        out["Server"] = headers.SERVER
        out["Date"] = self.date(now)
        out["Cache-Control"] = "private"
        if isinstance(error, ResponseTooLarge):
            # SPEC RESP-5: an over-large instance response becomes an empty 500.
            out["Content-Type"] = "text/html"
            log.error("%s %s: %s", request.method, request.path, error)
            return self._response(request, 500, out, b"")
        if isinstance(error, PendingTimeout):
            log.error("%s %s: %s", request.method, request.path, PendingTimeout.log_message)
        elif status >= 500:
            log.error("%s %s: %s %s", request.method, request.path, status, error)
        if service is not None:
            body, ctype = service.pages.render(
                status, path=request.path, timeout=isinstance(error, DeadlineExceeded)
            )
        else:
            body, ctype = gfe_error_page(status, path=request.path), "text/html; charset=UTF-8"
        out["Content-Type"] = ctype
        return self._response(request, status, out, body)

    def _access(
        self,
        request: Request,
        response: wire.Reply,
        ex: Exchange,
        t0: float,
        now: float,
    ) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        size = response.size
        rec = accesslog.AccessRecord(
            time=now,
            method=request.method,
            url=request.path_qs,
            host=request.host,
            protocol=f"HTTP/{request.version.major}.{request.version.minor}",
            status=response.status,
            response_size=size,
            latency_s=self.clock() - t0,
            user_agent=request.headers.get("User-Agent", ""),
            referer=request.headers.get("Referer", ""),
            remote_ip=request.remote or "-",
            request_log_id=ex.request_log_id,
            trace=ex.trace,
            instance=ex.instance,
            pending_ms=ex.pending_ms,
            loading_request=ex.loading,
            cache=ex.cache,
            service=ex.service,
            version=ex.version,
        )
        line = accesslog.format_json(rec) if self._json_log else accesslog.format_text(rec)
        access_log.info("%s", line)

    # -- reload (--reload) ----------------------------------------------------------------

    async def reload_service(self, name: str, config: AppConfig, *, why: str = "") -> bool:
        """Switch service ``name`` to ``config`` with no failed request: its new instances boot
        while the old ones serve, then routes and instances switch in one step and the old
        instances drain (supervisor.ServiceRuntime.reload). False if the new version failed."""
        service = self.services[name]
        fresh = Service.build(config, self.settings)  # routes, static files, error pages

        def switch() -> None:
            for f in dataclasses.fields(Service):
                if f.name != "runtime":
                    setattr(service, f.name, getattr(fresh, f.name))

        return await service.runtime.reload(config, why=why, on_switch=switch)

    async def _watch_files(self) -> None:
        """Poll every service's files (in a worker thread) and reload a service whose app code
        or app.yaml changed. A broken app.yaml is logged and the running version kept."""
        from gfe_proxy.appyaml import load_app
        from gfe_proxy.errors import ConfigError
        from gfe_proxy.reload import Watcher

        def watcher(config: AppConfig) -> Watcher:
            return Watcher(config.root, config.skip_files, extra=(config.path,))

        watchers = {
            name: await asyncio.to_thread(watcher, s.config) for name, s in self.services.items()
        }
        while True:
            await asyncio.sleep(self.settings.reload_interval)
            for name, w in list(watchers.items()):
                changes = await asyncio.to_thread(w.poll)
                if not changes:
                    continue
                current = self.services[name].config
                log.info("service %s: %s; reloading", name, changes.describe())
                try:
                    config = await asyncio.to_thread(load_app, current.path)
                except ConfigError as e:
                    for problem in e.problems:
                        log.error("not reloading service %s: %s", name, problem)
                    continue
                if config.service != name:
                    log.error(
                        "not reloading service %s: app.yaml now names service %r; restart"
                        " gfe-proxy to rename a service",
                        name,
                        config.service,
                    )
                    continue
                await self.reload_service(name, config, why=changes.describe())
                if config.skip_files != current.skip_files or config.root != current.root:
                    watchers[name] = await asyncio.to_thread(watcher, config)
