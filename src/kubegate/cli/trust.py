"""How a login trusts its server's TLS certificate, decided once at ``kubegate login``.

A certificate the system trusts needs nothing; otherwise ``--certificate-authority FILE``
pins that CA, or kubegate offers the CA the server advertises (``GET /api/v1/info``) and
pins it once the user accepted its SHA-256 fingerprint (trust on first use, as ssh does;
``--ca-fingerprint`` accepts it in scripts). A login made before keeps its pin, so a
changed CA fails loudly.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import typer

from kubegate.cli.api import ApiClient, ApiError
from kubegate.cli.application import Application
from kubegate.cli.config_store import Login, Trust


def fingerprint(ca_pem: str) -> str:
    """The SHA-256 fingerprint of a PEM certificate's DER bytes, as ``openssl x509
    -fingerprint -sha256`` prints it (``AB:12:...``)."""
    import ssl

    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(ca_pem)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _same_fingerprint(given: str, actual: str) -> bool:
    def plain(value: str) -> str:
        return value.upper().removeprefix("SHA256:").replace(":", "").strip()

    return plain(given) == plain(actual)


def decide_trust(
    app: Application,
    server: str,
    *,
    ca_file: Path | None,
    insecure: bool,
    ca_fingerprint: str | None,
    previous: Login | None,
) -> Trust:
    """How this login verifies the server (see the module docstring for the order)."""
    if insecure:
        app.output.note("warning: TLS verification is off for this server")
        return Trust(insecure=True)
    if ca_file is not None:
        try:
            pem = ca_file.read_text()
            fingerprint(pem)
        except (OSError, ValueError) as exc:
            app.output.fail(f"--certificate-authority {ca_file} is not a readable PEM file: {exc}")
        return Trust(ca_pem=pem)
    if previous is not None and not ca_fingerprint:
        return previous.trust  # the pin stays; a changed CA fails loudly below
    if not server.startswith("https://"):
        return Trust()
    try:
        with ApiClient(server, Trust()) as api:
            api.get("/api/v1/info")
        return Trust()  # the system trusts it
    except ApiError as exc:
        if "not trusted" not in exc.message:
            raise
    with ApiClient(server, Trust(insecure=True)) as api:
        offered = api.get("/api/v1/info").get("ca_pem")
    if not offered:
        app.output.fail(
            f"the TLS certificate of {server} is not trusted and it advertises no CA; "
            "pass --certificate-authority FILE"
        )
    trust = Trust(ca_pem=str(offered))
    with ApiClient(server, trust) as api:
        try:
            api.get("/api/v1/info")
        except ApiError:
            app.output.fail(
                f"the certificate of {server} does not chain to the CA it advertises; "
                "pass --certificate-authority FILE"
            )
    seen = fingerprint(trust.ca_pem or "")
    if ca_fingerprint:
        if not _same_fingerprint(ca_fingerprint, seen):
            app.output.fail(f"the server's CA has fingerprint {seen}, not {ca_fingerprint}")
        return trust
    app.output.note(
        f"The certificate authority of {server} is not trusted by this machine.\n"
        f"  SHA-256 fingerprint: {seen}\n"
        "Compare it with the one your kubegate admin gives you "
        "(openssl x509 -noout -fingerprint -sha256 -in <data dir>/tls/ca.crt)."
    )
    if not sys.stdin.isatty():
        app.output.fail(
            "not trusting it without asking; pass --ca-fingerprint "
            f"{seen} (or --certificate-authority FILE)"
        )
    if not typer.confirm("Trust this CA for this server?", default=False, err=True):
        app.output.fail("not logged in: the CA was not trusted")
    return trust
