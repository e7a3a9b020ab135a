"""The server's TLS material: the operator's certificate, or a self-signed CA in the data dir.

The CA is made once and kept (``<data_dir>/tls/ca.crt``); it goes into every kubeconfig
kubegate writes. The serving certificate is reissued when the configured hosts change or it
is within 30 days of expiring.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from kubegate.errors import KubegateError
from kubegate.pki import CertificateAuthority
from kubegate.settings import Settings

_RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class ServingTLS:
    """Files uvicorn serves with, and the CA clients should trust."""

    cert_file: Path
    key_file: Path
    ca_pem: bytes


def _hosts_of(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    names = set(san.get_values_for_type(x509.DNSName))
    return names | {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def _wanted(hosts: list[str]) -> set[str]:
    out = set()
    for host in hosts:
        try:
            out.add(str(ipaddress.ip_address(host)))
        except ValueError:
            out.add(host)
    return out


def _needs_reissue(cert_file: Path, hosts: list[str]) -> bool:
    if not cert_file.exists():
        return True
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    expiring = cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < _RENEW_BEFORE
    return expiring or _hosts_of(cert) != _wanted(hosts)


def ensure_serving_tls(settings: Settings) -> ServingTLS:
    """The operator's files when configured, else the data dir's CA and a fresh-enough cert."""
    if settings.tls_cert_file or settings.tls_key_file:
        if not (settings.tls_cert_file and settings.tls_key_file):
            raise KubegateError("set both tls_cert_file and tls_key_file, or neither")
        for path in (settings.tls_cert_file, settings.tls_key_file):
            if not path.is_file():
                raise KubegateError(f"TLS file {path} does not exist")
        return ServingTLS(
            settings.tls_cert_file, settings.tls_key_file, settings.tls_cert_file.read_bytes()
        )
    tls_dir = Path(settings.data_dir) / "tls"
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_cert, ca_key = tls_dir / "ca.crt", tls_dir / "ca.key"
    if ca_cert.exists() and ca_key.exists():
        ca = CertificateAuthority.load(ca_cert.read_bytes(), ca_key.read_bytes())
    else:
        ca = CertificateAuthority.create("kubegate gateway CA")
        ca.key_pair().write(ca_cert, ca_key)
    cert_file, key_file = tls_dir / "server.crt", tls_dir / "server.key"
    if _needs_reissue(cert_file, settings.tls_hosts):
        ca.issue("kubegate", hosts=tuple(settings.tls_hosts), server=True).write(
            cert_file, key_file
        )
    return ServingTLS(cert_file, key_file, ca.cert_pem)


class GatewayCA:
    """The CA a kubeconfig trusts: the gateway's own (made on first use if the server has not
    made it yet) or the operator's ``tls_cert_file``; None when TLS is off.

    Read once per process and kept: the server serves the certificate it started with, so a
    file changed on disk only matters after a restart, which rereads it too.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = asyncio.Lock()
        self._pem: bytes | None = None

    async def pem(self) -> bytes | None:
        if not self._settings.tls:
            return None
        async with self._lock:
            if self._pem is None:
                # File I/O and key parsing: off the event loop.
                tls = await asyncio.to_thread(ensure_serving_tls, self._settings)
                self._pem = tls.ca_pem
        return self._pem
