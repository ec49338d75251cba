"""TLS for the HTTPS listener: the server context and a cached self-signed certificate.

Without ``--cert/--key`` gfe_proxy makes one self-signed certificate for ``localhost``,
``127.0.0.1`` and ``::1`` with the ``cryptography`` package, keeps it in
``$XDG_CACHE_HOME/gfe-proxy/`` (default ``~/.cache/gfe-proxy/``) and reuses it on every start
until it is within 30 days of expiring, so a user trusts it once. Both files are 0600, written
to a temporary name and renamed into place under a lock, so two proxies starting at once never
read half a certificate or a key from a different pair.

File I/O and key generation only; no aiohttp, no asyncio. The key and the serial number come
from the OS's random source, as key material must, so unlike elsewhere randomness is not a
parameter here; time is (``now``, Unix seconds).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gfe_proxy.errors import StartupError

__all__ = [
    "CERT_FILE",
    "DNS_NAMES",
    "IP_ADDRESSES",
    "KEY_FILE",
    "Certificate",
    "cache_dir",
    "ensure_self_signed",
    "generate",
    "listener_certificate",
    "server_context",
    "usable",
]

CERT_FILE = "localhost.pem"
KEY_FILE = "localhost-key.pem"
DNS_NAMES: tuple[str, ...] = ("localhost",)
IP_ADDRESSES: tuple[str, ...] = ("127.0.0.1", "::1")
VALIDITY = dt.timedelta(days=825)  # the longest validity Apple platforms accept for TLS servers
RENEW_BEFORE = dt.timedelta(days=30)  # regenerate when this close to expiry
_BACKDATE = dt.timedelta(minutes=5)  # tolerate a client clock a little behind ours


@dataclass(frozen=True, slots=True, kw_only=True)
class Certificate:
    """The certificate the HTTPS listener serves."""

    cert: Path
    key: Path
    self_signed: bool  # made by gfe_proxy (kept in the cache directory)
    created: bool = False  # made on this start (False: reused, or given with --cert/--key)


def cache_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/gfe-proxy``, or ``~/.cache/gfe-proxy`` (the XDG base-dir rules: a
    relative ``XDG_CACHE_HOME`` is invalid and ignored)."""
    base = environ.get("XDG_CACHE_HOME", "")
    if base and os.path.isabs(base):
        return Path(base) / "gfe-proxy"
    home = environ.get("HOME")
    return (Path(home) if home else Path.home()) / ".cache" / "gfe-proxy"


def _utc(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, tz=dt.UTC)


def generate(now: float) -> tuple[bytes, bytes]:
    """A new self-signed localhost certificate and its key: ``(cert_pem, key_pem)``.

    ECDSA P-256 with SHA-256, valid from ``now`` (less 5 minutes) for 825 days, SANs
    ``localhost``, ``127.0.0.1``, ``::1``. It is an end-entity certificate (CA:FALSE,
    serverAuth): browsers refuse a CA certificate used as a server's own.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gfe-proxy local development"),
        ]
    )
    start = _utc(now)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in DNS_NAMES]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in IP_ADDRESSES]
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - _BACKDATE)
        .not_valid_after(start + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def usable(cert_pem: bytes, key_pem: bytes, now: float) -> bool:
    """True when a cached pair can be served again: it parses, the key is the certificate's,
    it names every local address, and it is valid now and for 30 days more."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, x509.ExtensionNotFound):
        return False
    current = _utc(now)
    if (
        not cert.not_valid_before_utc <= current
        or cert.not_valid_after_utc - current < RENEW_BEFORE
    ):
        return False
    names = set(sans.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    if not set(DNS_NAMES) <= names or not set(IP_ADDRESSES) <= ips:
        return False
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(
        serialization.Encoding.DER, public
    ) == cert.public_key().public_bytes(serialization.Encoding.DER, public)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask, and if a stale tmp file existed
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: the rename still keeps files whole
        yield
        return
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def ensure_self_signed(directory: Path, now: float) -> Certificate:
    """The cached self-signed certificate in ``directory``, made (or remade) when missing,
    unreadable, not ours to use, or within 30 days of expiry."""
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _locked(directory):
            try:
                if usable(cert_path.read_bytes(), key_path.read_bytes(), now):
                    return Certificate(cert=cert_path, key=key_path, self_signed=True)
            except OSError:
                pass  # missing or unreadable: make a new pair
            cert_pem, key_pem = generate(now)
            _write_private(key_path, key_pem)
            _write_private(cert_path, cert_pem)
    except OSError as e:
        raise StartupError(
            f"cannot keep the self-signed certificate in {directory}: {e.strerror}; "
            "set XDG_CACHE_HOME or pass --cert and --key"
        ) from None
    return Certificate(cert=cert_path, key=key_path, self_signed=True, created=True)


def listener_certificate(
    cert: Path | None, key: Path | None, *, environ: Mapping[str, str], now: float
) -> Certificate:
    """``--cert/--key`` when given (both or neither), else the cached self-signed pair."""
    if cert is not None and key is not None:
        return Certificate(cert=cert, key=key, self_signed=False)
    if cert is not None or key is not None:
        raise StartupError("--cert and --key must be given together")
    return ensure_self_signed(cache_dir(environ), now)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context serving ``cert``; StartupError (exit 1) if it cannot load."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])  # the listener speaks HTTP/1.1 only
    where = f"cannot load TLS certificate {cert} with key {key}"
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as e:
        detail = f" ({e.reason})" if e.reason else ""
        raise StartupError(f"{where}: not a PEM certificate and its private key{detail}") from None
    except OSError as e:
        raise StartupError(f"{where}: {e.strerror or e}") from None
    return ctx
