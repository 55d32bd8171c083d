"""A throwaway PKI for TLS tests: a CA, and server or client certificates it signs
(EC P-256, one day), written as PEM files (``NAME.crt``, ``NAME.key``)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, cert: x509.Certificate, key=None) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


class CA:
    def __init__(self, root: Path, name: str):
        self.root, self.name = root, name
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        _write(root / name, self.cert)
        self.path = str(root / f"{name}.crt")

    def issue(self, cn: str, *, server: bool) -> tuple[str, str]:
        """(certificate path, key path) of a leaf signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        sans = [x509.DNSName(cn)]
        if server:
            sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        stem = self.root / f"{self.name}-{cn}"
        _write(stem, cert, key)
        return str(stem.with_suffix(".crt")), str(stem.with_suffix(".key"))

    def tls_secret(self, cn: str = "localhost", *, server: bool = True) -> dict[str, bytes]:
        """A kubernetes.io/tls Secret's files as cert-manager writes them (tls.crt, tls.key
        and ca.crt), for a certificate of ``cn`` (a server's: 127.0.0.1 too)."""
        cert, key = self.issue(cn, server=server)
        return {
            "tls.crt": Path(cert).read_bytes(),
            "tls.key": Path(key).read_bytes(),
            "ca.crt": Path(self.path).read_bytes(),
        }


def stack_secrets(ca: CA) -> dict[str, dict[str, bytes]]:
    """The TLS Secrets k8s/base expects, issued by ``ca``: the gateway's serving certificate
    (``localhost``, where the tests dial it), Triton's (``stylegate-triton``, 127.0.0.1 too)
    and the gateway's client certificate for Triton (mutual TLS)."""
    return {
        "stylegate-gateway-tls": ca.tls_secret("localhost"),
        "stylegate-triton-tls": ca.tls_secret("stylegate-triton"),
        "stylegate-triton-client-tls": ca.tls_secret("stylegate-gateway", server=False),
    }
