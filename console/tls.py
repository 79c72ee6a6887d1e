"""Certificates for a fleet: a private CA, the coordinator's certificate, and client certificates.

`edgeatlas tls make --out DIR --host coordinator.example.org` writes ca.pem/ca.key, server.pem/server.key
and client.pem/client.key (keys readable by their owner only). Keep ca.key offline once agents have ca.pem.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 825


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, data: bytes, private: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject: str, key, issuer_name, issuer_key, *, ca: bool, usage=None, hosts=()) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=VALID_DAYS))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if hosts:
        names = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def make_certificates(out: str | Path, hosts: list[str], client_name: str = "edgeatlas-agent") -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca = _cert("EdgeAtlas fleet CA", ca_key, None, None, ca=True)
    server_key, client_key = _key(), _key()
    server = _cert(hosts[0], server_key, ca.subject, ca_key, ca=False, usage=ExtendedKeyUsageOID.SERVER_AUTH,
                   hosts=hosts)
    client = _cert(client_name, client_key, ca.subject, ca_key, ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    files = {}
    for name, cert, key in (("ca", ca, ca_key), ("server", server, server_key), ("client", client, client_key)):
        files[name] = out / f"{name}.pem"
        _write(files[name], cert.public_bytes(serialization.Encoding.PEM), private=False)
        _write(out / f"{name}.key", _pem_key(key), private=True)
    return files
