"""The benchmark backend: a raw ASGI app for uvicorn (httptools parser, uvloop).

Every system in ``benchmarks/bench.py`` sits in front of this one process (or, for the aiohttp
ceiling, answers the same bytes itself), so a difference between systems is the front's cost.
Run by hand: ``uvicorn main:app --app-dir benchmarks/apps --http httptools --loop uvloop``.

Endpoints (GET; everything else is 404):

- ``/small``        13 bytes of text/plain, no Cache-Control (a dynamic, uncacheable answer)
- ``/text100k``     100 KiB of text/plain prose, no Cache-Control
- ``/cached-small`` the 13 bytes with ``Cache-Control: public, max-age=3600`` and
                    ``Vary: Accept-Encoding`` (cacheable by every front that caches)
- ``/cached-100k``  the 100 KiB text, cacheable the same way

The static files (``static/10k.txt``, ``static/1m.txt``) are never served from here: gfe_proxy
and nginx serve them from the directory, the aiohttp ceiling answers their bytes from memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SMALL = b"Hello, world!"  # 13 bytes
TEXT_100K_SIZE = 100 * 1024
STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"/static/10k.txt": 10 * 1024, "/static/1m.txt": 1024 * 1024}  # path -> bytes

_SENTENCE = (
    "the front end routes each request through the handler table and forwards what it does "
    "not serve itself to an instance over a kept alive connection while the edge cache answers "
    "public responses and compression shrinks text for clients that accept gzip so latency and "
    "throughput depend on parsing headers copying bodies and scheduling callbacks in one loop"
)
_WORDS = _SENTENCE.split(" ")


def prose(size: int, seed: int = 1) -> bytes:
    """``size`` bytes of deterministic word salad in 72-column lines (compresses like text).

    A small linear congruential generator picks the words, so the bytes are the same on every
    Python version (random.Random's choice() is not promised to be).
    """
    out = bytearray()
    state = seed
    line = 0
    while len(out) < size:
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        word = _WORDS[(state >> 16) % len(_WORDS)].encode()
        if line + len(word) + 1 > 72:
            out += b"\n"
            line = 0
        elif line:
            out += b" "
            line += 1
        out += word
        line += len(word)
    return bytes(out[:size])


TEXT_100K = prose(TEXT_100K_SIZE)

_PLAIN = (b"content-type", b"text/plain; charset=utf-8")
_CACHEABLE = ((b"cache-control", b"public, max-age=3600"), (b"vary", b"Accept-Encoding"))


def _answer(body: bytes, *extra: tuple[bytes, bytes]) -> tuple[list[tuple[bytes, bytes]], bytes]:
    return [_PLAIN, (b"content-length", str(len(body)).encode()), *extra], body


ROUTES: dict[str, tuple[list[tuple[bytes, bytes]], bytes]] = {
    "/small": _answer(SMALL),
    "/text100k": _answer(TEXT_100K),
    "/cached-small": _answer(SMALL, *_CACHEABLE),
    "/cached-100k": _answer(TEXT_100K, *_CACHEABLE),
}
_NOT_FOUND = _answer(b"not found")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI entry point: a dictionary lookup and two sends per request."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    found = ROUTES.get(scope["path"])
    status = 200 if found is not None else 404
    headers, body = found if found is not None else _NOT_FOUND
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def write_static_files() -> None:
    """(Re)write the static files from ``prose()``; they are committed, this documents them."""
    STATIC_DIR.mkdir(exist_ok=True)
    block = prose(4096, seed=2)  # 1 MB of repeats of one 4 KB block: tiny in git
    for path, size in STATIC_FILES.items():
        data = (block * (size // len(block) + 1))[:size]
        (STATIC_DIR / path.rsplit("/", 1)[1]).write_bytes(data)


if __name__ == "__main__":
    write_static_files()
