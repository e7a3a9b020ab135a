from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubegate.pki import CertificateAuthority


def test_client_certificate_carries_groups_and_verifies_against_the_ca() -> None:
    ca = CertificateAuthority.create("test-ca")
    pair = ca.issue("admin", organizations=("system:masters",), client=True)
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    cert.verify_directly_issued_by(ca_cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "admin"
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_server_certificate_names_ip_and_dns_hosts() -> None:
    ca = CertificateAuthority.create("test-ca")
    pair = ca.issue("srv", hosts=("127.0.0.1", "localhost"), server=True)
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]


def test_a_reloaded_ca_issues_certificates_that_chain_to_it() -> None:
    original = CertificateAuthority.create("test-ca")
    saved = original.key_pair()
    loaded = CertificateAuthority.load(saved.cert_pem, saved.key_pem)
    cert = x509.load_pem_x509_certificate(loaded.issue("x", client=True).cert_pem)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(original.cert_pem))


def test_a_certificate_must_have_a_purpose() -> None:
    with pytest.raises(ValueError, match="server, a client or both"):
        CertificateAuthority.create("test-ca").issue("nobody")
