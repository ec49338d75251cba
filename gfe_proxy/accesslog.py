"""The access log line (SPEC LOG-1). Pure: a record in, one line of text out.

Text follows App Engine's request-log line, an Apache combined line with App Engine's
``key=value`` tail::

    127.0.0.1 - - [21/Nov/2026:11:09:00 +0000] "GET /x HTTP/1.1" 200 123 - "curl/8" \
"app.localhost" ms=3 pending_ms=0 loading_request=0 instance=i-1 cache=MISS trace_id=…

JSON is one object per line with Cloud Logging's ``httpRequest`` fields (int64 values as
strings and ``latency`` as a Duration, as Cloud Logging's JSON mapping writes them) plus the
fields gfe_proxy adds: ``request_log_id``, ``trace``, ``instance``, ``pending_ms``,
``loading_request``, ``cache``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_LOOKED_UP = frozenset({"HIT", "MISS", "STALE-VARIANT"})  # the edge cache was consulted


@dataclass(slots=True, kw_only=True)
class AccessRecord:
    """One served request; the pipeline fills it in as the request progresses."""

    time: float  # Unix seconds when the request arrived
    method: str
    url: str  # path and query, as received
    host: str = ""
    protocol: str = "HTTP/1.1"
    status: int = 0
    response_size: int = 0  # bytes of body sent
    request_size: int | None = None  # bytes of body received, when known
    latency_s: float = 0.0
    user_agent: str = ""
    referer: str = ""
    remote_ip: str = ""
    request_log_id: str = ""
    trace: str = ""  # "projects/<app>/traces/<id>" or the bare id
    instance: str = "-"  # instance id, "static" for files the proxy served, "-" for none
    pending_ms: int = 0  # time spent in the pending queue
    loading_request: bool = False  # the request started (waited for) a new instance
    cache: str = "-"  # HIT, MISS, BYPASS, STALE-VARIANT or "-" (SPEC CACHE-6)
    service: str = "default"
    version: str = "-"


def _severity(status: int) -> str:
    if status >= 500:
        return "ERROR"
    if status >= 400:
        return "WARNING"
    return "INFO"


def _quote(text: str) -> str:
    # Apache-style escaping, so a client cannot forge fields or lines of the log.
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable() and ch != "\x7f":
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def _clf_time(ts: float) -> str:
    t = time.gmtime(ts)
    return (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def _trace_id(trace: str) -> str:
    return trace.rsplit("/", 1)[-1]


def format_text(rec: AccessRecord) -> str:
    """SPEC LOG-1: the App Engine request-log line for ``rec`` (times in UTC)."""
    referer = f'"{_quote(rec.referer)}"' if rec.referer else "-"
    user_agent = f'"{_quote(rec.user_agent)}"' if rec.user_agent else "-"
    line = (
        f"{rec.remote_ip or '-'} - - [{_clf_time(rec.time)}] "
        f'"{_quote(rec.method)} {_quote(rec.url)} {rec.protocol}" {rec.status} '
        f"{rec.response_size} {referer} {user_agent} "
        f'"{_quote(rec.host)}" ms={round(rec.latency_s * 1000)} pending_ms={rec.pending_ms} '
        f"loading_request={int(rec.loading_request)} instance={rec.instance} "
        f"cache={rec.cache}"
    )
    if rec.trace:
        line += f" trace_id={_trace_id(rec.trace)}"
    return line


def _duration(seconds: float) -> str:
    # google.protobuf.Duration in JSON: "0.003s", "1.5s", "0s".
    text = f"{max(seconds, 0.0):.9f}".rstrip("0").rstrip(".")
    return f"{text}s"


def _timestamp(ts: float) -> str:
    t = time.gmtime(ts)
    micros = int((ts - int(ts)) * 1_000_000)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{micros:06d}Z"
    )


def format_json(rec: AccessRecord) -> str:
    """SPEC LOG-1: one JSON object with Cloud Logging's ``httpRequest`` and gfe_proxy's fields."""
    http_request: dict[str, Any] = {
        "requestMethod": rec.method,
        "requestUrl": rec.url,
        "status": rec.status,
        "responseSize": str(rec.response_size),
        "userAgent": rec.user_agent,
        "remoteIp": rec.remote_ip,
        "referer": rec.referer,
        "latency": _duration(rec.latency_s),
        "protocol": rec.protocol,
        "cacheLookup": rec.cache in _LOOKED_UP,
        "cacheHit": rec.cache == "HIT",
    }
    if rec.request_size is not None:
        http_request["requestSize"] = str(rec.request_size)
    entry: dict[str, Any] = {
        "timestamp": _timestamp(rec.time),
        "severity": _severity(rec.status),
        "httpRequest": http_request,
        "host": rec.host,
        "service": rec.service,
        "version": rec.version,
        "request_log_id": rec.request_log_id,
        "trace": rec.trace,
        "instance": rec.instance,
        "pending_ms": rec.pending_ms,
        "loading_request": rec.loading_request,
        "cache": rec.cache,
    }
    if rec.trace:
        # Cloud Logging's structured-logging key: links the line to its trace when shipped.
        entry["logging.googleapis.com/trace"] = rec.trace
    # ensure_ascii: header text may hold lone surrogates (undecodable bytes); \u escapes keep
    # the line writable to any stream.
    return json.dumps(entry, separators=(",", ":"))
