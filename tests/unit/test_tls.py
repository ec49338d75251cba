"""The HTTPS listener's certificate: generation, the cache directory, reuse, the server context.

Real files and a real TLS handshake (asyncio streams), no mocks.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import stat
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from gfe_proxy.errors import StartupError
from gfe_proxy.tls import (
    CERT_FILE,
    KEY_FILE,
    RENEW_BEFORE,
    VALIDITY,
    Certificate,
    cache_dir,
    ensure_self_signed,
    generate,
    listener_certificate,
    server_context,
    usable,
)

NOW = 1_795_000_000.0  # a fixed "now"; only the handshake test uses the real clock
DAY = 86400.0


@pytest.fixture(scope="module")
def pair() -> tuple[bytes, bytes]:
    return generate(NOW)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"XDG_CACHE_HOME": "/x/cache", "HOME": "/home/u"}, "/x/cache/gfe-proxy"),
        ({"HOME": "/home/u"}, "/home/u/.cache/gfe-proxy"),
        ({"XDG_CACHE_HOME": "", "HOME": "/home/u"}, "/home/u/.cache/gfe-proxy"),
        ({"XDG_CACHE_HOME": "relative/dir", "HOME": "/home/u"}, "/home/u/.cache/gfe-proxy"),
    ],
    ids=["xdg", "home", "xdg-empty", "xdg-relative-ignored"],
)
def test_cache_dir_follows_xdg(environ: dict[str, str], expected: str) -> None:
    assert cache_dir(environ) == Path(expected)


def test_generated_certificate_is_a_localhost_server_certificate(pair: tuple[bytes, bytes]) -> None:
    cert = x509.load_pem_x509_certificate(pair[0])
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is False  # browsers refuse a CA certificate as a server's own
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.issuer == cert.subject
    assert cert.not_valid_after_utc - cert.not_valid_before_utc > VALIDITY
    assert cert.not_valid_before_utc.timestamp() <= NOW
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)


@pytest.mark.parametrize(
    ("offset", "ok"),
    [
        (0.0, True),
        (VALIDITY.total_seconds() - RENEW_BEFORE.total_seconds() - DAY, True),
        (VALIDITY.total_seconds() - RENEW_BEFORE.total_seconds() + DAY, False),
        (VALIDITY.total_seconds() + DAY, False),
        (-DAY, False),
    ],
    ids=["fresh", "31-days-left", "29-days-left", "expired", "not-yet-valid"],
)
def test_cached_certificate_is_reused_until_30_days_before_expiry(
    pair: tuple[bytes, bytes], offset: float, ok: bool
) -> None:
    assert usable(*pair, NOW + offset) is ok


def test_a_key_from_another_pair_is_not_usable(pair: tuple[bytes, bytes]) -> None:
    other_cert, other_key = generate(NOW)
    assert not usable(pair[0], other_key, NOW)
    assert not usable(other_cert, pair[1], NOW)


@pytest.mark.parametrize(
    ("cert", "key"),
    [(b"", b""), (b"garbage", b"garbage"), (b"-----BEGIN CERTIFICATE-----\nAAAA\n", b"")],
    ids=["empty", "garbage", "truncated"],
)
def test_unreadable_pems_are_not_usable(cert: bytes, key: bytes) -> None:
    assert not usable(cert, key, NOW)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_self_signed_is_made_once_with_private_files_and_then_reused(tmp_path: Path) -> None:
    directory = tmp_path / "cache" / "gfe-proxy"
    first = ensure_self_signed(directory, NOW)
    assert first == Certificate(
        cert=directory / CERT_FILE, key=directory / KEY_FILE, self_signed=True, created=True
    )
    assert _mode(first.cert) == 0o600
    assert _mode(first.key) == 0o600
    assert _mode(directory) == 0o700
    pem = first.cert.read_bytes()
    second = ensure_self_signed(directory, NOW + 100 * DAY)
    assert second.created is False
    assert second.cert.read_bytes() == pem  # reused: the user trusts it once


def test_self_signed_is_remade_when_expiring(tmp_path: Path) -> None:
    first = ensure_self_signed(tmp_path, NOW)
    pem = first.cert.read_bytes()
    later = NOW + VALIDITY.total_seconds() - RENEW_BEFORE.total_seconds() + DAY
    again = ensure_self_signed(tmp_path, later)
    assert again.created is True
    assert again.cert.read_bytes() != pem
    assert usable(again.cert.read_bytes(), again.key.read_bytes(), later)


@pytest.mark.parametrize("damaged", [CERT_FILE, KEY_FILE], ids=["cert", "key"])
def test_self_signed_is_remade_when_a_file_is_damaged_or_missing(
    tmp_path: Path, damaged: str
) -> None:
    ensure_self_signed(tmp_path, NOW)
    (tmp_path / damaged).write_bytes(b"not a pem")
    assert ensure_self_signed(tmp_path, NOW).created is True
    (tmp_path / damaged).unlink()
    got = ensure_self_signed(tmp_path, NOW)
    assert got.created is True
    assert usable(got.cert.read_bytes(), got.key.read_bytes(), NOW)
    assert _mode(got.cert) == 0o600


def test_concurrent_starts_agree_on_one_pair(tmp_path: Path) -> None:
    results: list[Certificate] = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_self_signed(tmp_path, NOW)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert sum(r.created for r in results) == 1  # the lock: one maker, the rest reuse
    assert usable((tmp_path / CERT_FILE).read_bytes(), (tmp_path / KEY_FILE).read_bytes(), NOW)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_unwritable_cache_is_a_startup_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    with pytest.raises(StartupError, match="pass --cert and --key"):
        ensure_self_signed(blocker / "gfe-proxy", NOW)


def test_listener_certificate_prefers_given_files(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    got = listener_certificate(cert, key, environ={}, now=NOW)
    assert got == Certificate(cert=cert, key=key, self_signed=False)
    assert not cert.exists()  # nothing generated


@pytest.mark.parametrize("given", ["cert", "key"])
def test_listener_certificate_needs_both_files(tmp_path: Path, given: str) -> None:
    path = tmp_path / "x.pem"
    with pytest.raises(StartupError, match="--cert and --key"):
        listener_certificate(
            path if given == "cert" else None,
            path if given == "key" else None,
            environ={},
            now=NOW,
        )


def test_listener_certificate_defaults_to_the_xdg_cache(tmp_path: Path) -> None:
    got = listener_certificate(None, None, environ={"XDG_CACHE_HOME": str(tmp_path)}, now=NOW)
    assert got.cert == tmp_path / "gfe-proxy" / CERT_FILE
    assert got.self_signed
    assert got.created


def test_server_context_refuses_a_bad_pair(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("nope")
    with pytest.raises(StartupError, match="cannot load TLS certificate"):
        server_context(tmp_path / "c.pem", tmp_path / "k.pem")


async def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, name: str) -> bytes:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(4))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname=name
        )
        writer.write(b"ping")
        data = await reader.readexactly(4)
        writer.close()
        return data
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1"])
async def test_a_client_trusting_the_certificate_completes_a_handshake(
    tmp_path: Path, name: str
) -> None:
    cert = ensure_self_signed(tmp_path, time.time())
    client = ssl.create_default_context(cafile=str(cert.cert))
    client.verify_flags |= ssl.VERIFY_X509_STRICT  # Python 3.13's default
    assert await _handshake(server_context(cert.cert, cert.key), client, name) == b"ping"


async def test_the_certificate_names_only_local_hosts(tmp_path: Path) -> None:
    cert = ensure_self_signed(tmp_path, time.time())
    client = ssl.create_default_context(cafile=str(cert.cert))
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(server_context(cert.cert, cert.key), client, "example.com")
