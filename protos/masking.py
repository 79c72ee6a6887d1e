"""The cryptography of a secure round, one place for the device and the coordinator.

Everything comes from maintained libraries; nothing here is a hand-made cipher, key agreement or random
source:
- key agreement: X25519, then HKDF-SHA256 bound to the round and the pair (`cryptography`);
- shares in transit: AES-256-GCM, the round, sender and receiver as associated data (`cryptography`);
- masks: AES-256-CTR's keystream as the pseudo-random generator, read as uint32 (`cryptography`);
  Flower's SecAgg+ seeds numpy's Mersenne Twister instead, which is not a cryptographic generator;
- a removable noise share: the same keystream under another key, read as uniform integers by rejection
  (`Keystream.randbelow`), feeding protos/noise.py's exact sampler;
- secret sharing: Shamir over GF(2^128) (`pycryptodome`), a 16-byte secret per split;
- fresh secrets: the OS's generator (`secrets`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import numpy as np

from edgeatlas.protos.errors import InvalidInput

KEY_BYTES = 32
SEED_BYTES = 16
NONCE_BYTES = 12


def _hkdf(material: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(material)


@dataclass(frozen=True)
class KeyPair:
    """An X25519 key pair; `private` as 32 raw bytes, so it can be secret-shared."""

    private: bytes
    public: bytes

    @classmethod
    def generate(cls) -> "KeyPair":
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
        return cls.from_private(X25519PrivateKey.generate().private_bytes_raw())

    @classmethod
    def from_private(cls, raw: bytes) -> "KeyPair":
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
        key = X25519PrivateKey.from_private_bytes(raw)
        return cls(raw, key.public_key().public_bytes_raw())

    def agree(self, peer_public: bytes, info: bytes) -> bytes:
        """A 32-byte key both ends derive: X25519, then HKDF bound to `info`."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
        try:
            peer = X25519PublicKey.from_public_bytes(peer_public)
            shared = X25519PrivateKey.from_private_bytes(self.private).exchange(peer)
        except ValueError as exc:  # wrong length, or a low-order point (an all-zero shared secret)
            raise InvalidInput(f"public key is not a usable X25519 key: {exc}") from None
        return _hkdf(shared, info)


def pair_info(round_id: str, purpose: str, a: int, b: int) -> bytes:
    """HKDF's info for a pair's key: the protocol, the round, the purpose, the pair in a fixed order."""
    lo, hi = sorted((a, b))
    return f"edgeatlas.secagg/v1|{round_id}|{purpose}|{lo}|{hi}".encode()


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    if len(sealed) < NONCE_BYTES + 16:
        raise InvalidInput("a sealed share is too short")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag:
        raise InvalidInput("a sealed share does not open: wrong key, or altered in transit") from None


def _keystream(seed: bytes, purpose: bytes):
    """AES-256-CTR under a key derived from the seed for one purpose: `.update(zeros)` gives its bytes."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    key = _hkdf(seed, b"edgeatlas.secagg/v1|" + purpose)
    return Cipher(algorithms.AES(key), modes.CTR(b"\0" * 16)).encryptor()


def mask(seed: bytes, dim: int) -> np.ndarray:
    """dim uniform uint32 values from a seed: AES-256-CTR's keystream under a key derived from it."""
    stream = _keystream(seed, b"mask").update(b"\0" * (4 * dim))
    return np.frombuffer(stream, dtype="<u4").astype(np.uint32)


class Keystream:
    """Uniform integers from a seed, for a sampler that takes `randbelow` (protos/noise.py): whoever holds
    the seed draws the same numbers. Each draw takes the fewest whole bytes and rejects values ≥ n."""

    BLOCK = 4096

    def __init__(self, seed: bytes, purpose: bytes):
        self._cipher = _keystream(seed, purpose)
        self._buffer, self._at = b"", 0

    def _take(self, n: int) -> bytes:
        if self._at + n > len(self._buffer):
            self._buffer = self._buffer[self._at:] + self._cipher.update(b"\0" * max(self.BLOCK, n))
            self._at = 0
        out = self._buffer[self._at:self._at + n]
        self._at += n
        return out

    def randbelow(self, n: int) -> int:
        if n < 1:
            raise ValueError("randbelow needs n ≥ 1")
        bits = (n - 1).bit_length()
        if bits == 0:
            return 0
        nbytes, shift = (bits + 7) // 8, -bits % 8
        while True:
            r = int.from_bytes(self._take(nbytes), "big") >> shift
            if r < n:
                return r


def commit(secret: bytes) -> bytes:
    """A binding commitment to a high-entropy secret: its SHA-256."""
    return hashlib.sha256(b"edgeatlas.secagg/v1|commit|" + secret).digest()


def split(secret: bytes, threshold: int, holders: int) -> list[bytes]:
    """Shamir shares of a secret (a multiple of 16 bytes) for holders 1..n, any `threshold` of which
    give it back."""
    from Crypto.Protocol.SecretSharing import Shamir
    if len(secret) % SEED_BYTES or not secret:
        raise InvalidInput("a shared secret is a multiple of 16 bytes")
    chunks = [Shamir.split(threshold, holders, secret[i:i + SEED_BYTES])
              for i in range(0, len(secret), SEED_BYTES)]
    return [b"".join(chunk[h][1] for chunk in chunks) for h in range(holders)]


def combine(shares: dict[int, bytes], length: int) -> bytes:
    """The secret from exactly `threshold` shares (holder 1..n → share)."""
    from Crypto.Protocol.SecretSharing import Shamir
    if any(len(s) != length for s in shares.values()):
        raise InvalidInput("a share has the wrong length")
    return b"".join(Shamir.combine([(h, s[i:i + SEED_BYTES]) for h, s in shares.items()])
                    for i in range(0, length, SEED_BYTES))
