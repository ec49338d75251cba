"""Which gzip level and brotli quality should gfe_proxy use? (SPEC COMP-3, COMP-4)

Measures ``gfe_proxy.compression.compress`` itself at gzip levels 1, 4, 6, 9 and brotli
qualities 1, 4, 5, 6, 9, 11 on realistic text at 1 KB, 10 KB, 100 KB and 1 MB, and prints
compressed size (% of input, lower is better) and throughput (MB/s of input, best of N rounds),
then the same as ratios to gzip-6 (zlib's default) measured in the same run.

Corpus, four kinds, equal weight (every byte is deterministic for a given input file set):
- prose: SPEC.md and the App Engine documents in seeds/ (``--prose`` to choose files); cycled
  past its ~150 KB, so at 1 MB brotli's 4 MB window sees repeats gzip's 32 KB window cannot.
- html:  a generated page (navigation, paragraphs of prose sentences, data tables, links).
- json:  a generated compact API response (records with ids, names, dates, floats, tags, urls).
- code:  Python standard-library sources, standing in for JavaScript bundles.

Run from the repository root:  .venv/bin/python benchmarks/compression_levels.py
Options: --rounds N (best of N, default 3), --min-time S (seconds per timed batch, 0.05).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import sysconfig
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import brotli

REPO = Path(__file__).resolve().parents[1]
SHARED = Path("/work/shared")
SIZES = (1_000, 10_000, 100_000, 1_000_000)
SIZE_NAMES = ("1 KB", "10 KB", "100 KB", "1 MB")
CONFIGS: tuple[tuple[str, int], ...] = (
    ("gzip", 1),
    ("gzip", 4),
    ("gzip", 6),
    ("gzip", 9),
    ("br", 1),
    ("br", 4),
    ("br", 5),
    ("br", 6),
    ("br", 9),
    ("br", 11),
)
BASELINE = ("gzip", 6)

Compress = Callable[[bytes, str, int], bytes]


def load_compress() -> Compress:
    """gfe_proxy.compression.compress, importable without installing the package."""
    sys.path.insert(0, str(REPO))
    from gfe_proxy.compression import compress

    return compress  # type: ignore[return-value]


def _fill(text: str, size: int) -> bytes:
    data = text.encode()
    while len(data) < size:
        data += data
    return data[:size]


def prose_corpus(paths: Sequence[Path]) -> str:
    return "\n\n".join(p.read_text(encoding="utf-8") for p in paths)


def html_corpus(prose: str, rng: random.Random, size: int) -> str:
    sentences = [s.strip() for s in prose.replace("\n", " ").split(". ") if len(s.strip()) > 20]
    words = [w for w in prose.split() if w.isalpha() and len(w) > 3]
    out = [
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        "<title>gfe_proxy status</title><link rel=stylesheet href=/static/site.css></head>"
        '<body>\n<nav class="top"><ul>'
        + "".join(f'<li><a href="/{w.lower()}">{w}</a></li>' for w in rng.sample(words, 12))
        + "</ul></nav>\n<main>\n"
    ]
    total = len(out[0])
    while total < size:
        part: list[str] = [f'<article id="a{rng.randrange(10**6)}">']
        part.append(f"<h2>{' '.join(rng.sample(words, 4)).title()}</h2>")
        for _ in range(rng.randint(1, 4)):
            part.append("<p>" + ". ".join(rng.sample(sentences, rng.randint(2, 5))) + ".</p>")
        part.append(
            '<table class="data"><thead><tr><th>Instance</th><th>State</th>'
            "<th>Port</th><th>In flight</th><th>Latency</th></tr></thead><tbody>"
        )
        for _ in range(rng.randint(3, 15)):
            part.append(
                f'<tr><td><a href="/instances/i-{rng.randrange(16**8):08x}">'
                f'i-{rng.randrange(100)}</a></td><td class="st-{rng.choice(("ok", "warn"))}">'
                f"{rng.choice(('READY', 'STARTING', 'DRAINING'))}</td>"
                f"<td>{rng.randint(30000, 60000)}</td><td>{rng.randint(0, 10)}/10</td>"
                f"<td>{rng.uniform(0.5, 900):.1f} ms</td></tr>"
            )
        part.append("</tbody></table></article>\n")
        chunk = "".join(part)
        out.append(chunk)
        total += len(chunk)
    out.append("</main></body></html>\n")
    return "".join(out)


def json_corpus(prose: str, rng: random.Random, size: int) -> str:
    words = [w.lower() for w in prose.split() if w.isalpha() and 3 < len(w) < 12]
    records = []
    total = 0
    while total < size:
        name = f"{rng.choice(words).title()} {rng.choice(words).title()}"
        record = {
            "id": rng.randrange(10**9),
            "name": name,
            "email": f"{name.replace(' ', '.').lower()}@example.com",
            "created": f"20{rng.randint(10, 25)}-{rng.randint(1, 12):02d}-"
            f"{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:"
            f"{rng.randint(0, 59):02d}Z",
            "score": round(rng.uniform(0, 1000), 3),
            "active": rng.random() < 0.7,
            "tags": rng.sample(words, rng.randint(0, 4)),
            "url": f"https://app.example.com/u/{rng.randrange(16**12):012x}",
            "version": rng.choice(("v1", "v2", "20240101t000000")),
        }
        records.append(record)
        total += len(json.dumps(record, separators=(",", ":"))) + 1
    return json.dumps({"kind": "list", "items": records}, separators=(",", ":"))


def code_corpus(size: int) -> str:
    lib = Path(sysconfig.get_paths()["stdlib"])
    out: list[str] = []
    total = 0
    for path in sorted(lib.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        out.append(text)
        total += len(text)
        if total >= size:
            break
    return "".join(out)


def build_corpus(prose_paths: Sequence[Path]) -> dict[str, bytes]:
    rng = random.Random(20240601)
    prose = prose_corpus(prose_paths)
    top = max(SIZES)
    return {
        "prose": _fill(prose, top),
        "html": _fill(html_corpus(prose, rng, top), top),
        "json": _fill(json_corpus(prose, rng, top), top),
        "code": _fill(code_corpus(top), top),
    }


def measure(
    compress: Compress, data: bytes, encoding: str, level: int, rounds: int, min_time: float
) -> tuple[int, float]:
    """(compressed size, best seconds per call)."""
    started = time.perf_counter()
    out = compress(data, encoding, level)
    once = time.perf_counter() - started
    reps = max(1, min(10_000, int(min_time / max(once, 1e-7))))
    best = once
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(reps):
            compress(data, encoding, level)
        best = min(best, (time.perf_counter() - started) / reps)
    return len(out), best


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, zlib {zlib.ZLIB_RUNTIME_VERSION}, "
        f"brotli {brotli.__version__}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    default_prose = [SHARED / "SPEC.md", *sorted((SHARED / "seeds").glob("*.txt"))]
    parser.add_argument("--prose", type=Path, nargs="+", default=default_prose)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=0.05)
    args = parser.parse_args(argv)
    missing = [p for p in args.prose if not p.is_file()]
    if missing:
        parser.error(f"prose file not found: {missing[0]} (pass --prose FILE...)")

    compress = load_compress()
    corpus = build_corpus(args.prose)
    # results[(encoding, level)][size] = (bytes in, bytes out, seconds)
    results: dict[tuple[str, int], dict[int, tuple[int, int, float]]] = {}
    for encoding, level in CONFIGS:
        row = results.setdefault((encoding, level), {})
        for size in SIZES:
            bytes_in = bytes_out = 0
            seconds = 0.0
            for data in corpus.values():
                sample = data[:size]
                out, took = measure(compress, sample, encoding, level, args.rounds, args.min_time)
                bytes_in += len(sample)
                bytes_out += out
                seconds += took
            row[size] = (bytes_in, bytes_out, seconds)
        print(f"  measured {encoding}-{level}", file=sys.stderr)

    print(f"machine: {machine()}")
    print(
        f"corpus: {', '.join(corpus)} (equal weight); size % of input / MB/s, best of {args.rounds}"
    )
    header = f"{'':8}" + "".join(f"{name:>17}" for name in SIZE_NAMES)
    print(header)
    for (encoding, level), row in results.items():
        cells = []
        for size in SIZES:
            bytes_in, bytes_out, seconds = row[size]
            cells.append(f"{100 * bytes_out / bytes_in:6.1f}% {bytes_in / seconds / 1e6:7.1f}")
        print(f"{encoding + '-' + str(level):8}" + "".join(f"{c:>17}" for c in cells))

    base = results[BASELINE]
    print(f"relative to {BASELINE[0]}-{BASELINE[1]} (size x, speed x)")
    print(header)
    for (encoding, level), row in results.items():
        cells = []
        for size in SIZES:
            _, out, secs = row[size]
            _, base_out, base_secs = base[size]
            cells.append(f"x{out / base_out:5.2f} x{base_secs / secs:6.2f}")
        print(f"{encoding + '-' + str(level):8}" + "".join(f"{c:>17}" for c in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
