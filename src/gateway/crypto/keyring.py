"""AES-256-GCM key ring for API keys at rest (DESIGN §3).

Stored form: ``v1.<key_id>.<base64url(nonce || ciphertext || tag)>``. The associated data binds a ciphertext to
its row (configuration id, user id, key id), so a value copied into another row does not decrypt.
"""

from __future__ import annotations

import base64
import os
import secrets
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1"
NONCE_BYTES = 12
TAG_BYTES = 16
MAX_PARSED = 10_000


class CryptoError(Exception):
    """A stored value could not be turned back into a key; the message never holds key material."""


class MalformedCiphertext(CryptoError):
    """The value is not `v1.<key_id>.<payload>`."""


class UnknownKeyId(CryptoError):
    """The value was written under a key the ring does not hold."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"encryption key {key_id!r} is not in the key ring")
        self.key_id = key_id


class DecryptionFailed(CryptoError):
    """Authentication failed: tampered, truncated, or bound to another row."""


def b64url_encode(raw: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """base64url, padding optional."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate_key_entry(key_id: str | None = None) -> str:
    """A new ring entry `key_id:base64url(32 random bytes)`."""
    key_id = key_id or "k" + secrets.token_hex(4)
    return f"{key_id}:{b64url_encode(AESGCM.generate_key(bit_length=256))}"


class NotPersonal(CryptoError):
    """A team configuration (no user): its key is under its team's data key (crypto.team_keys), not the ring."""


def row_binding(configuration_id: uuid.UUID | str, user_id: uuid.UUID | str | None) -> bytes:
    """The associated data that ties a ciphertext to one configuration row of one user; a row without a user
    (a team's) has none: NotPersonal."""
    if user_id is None:
        raise NotPersonal("a team configuration's key is not encrypted by the key ring")
    return f"llm-gateway|cfg={configuration_id}|user={user_id}".encode()


def split_stored(value: str) -> tuple[str, bytes]:
    """Split a stored value into (key_id, payload) or raise MalformedCiphertext."""
    parts = value.split(".") if isinstance(value, str) else []
    if len(parts) != 3 or parts[0] != VERSION or not parts[1]:
        raise MalformedCiphertext("stored key is not a v1 ciphertext")
    try:
        payload = b64url_decode(parts[2])
    except (ValueError, TypeError):
        raise MalformedCiphertext("stored key payload is not base64url") from None
    if len(payload) < NONCE_BYTES + TAG_BYTES + 1:
        raise MalformedCiphertext("stored key payload is truncated")
    return parts[1], payload


@dataclass(frozen=True)
class KeyRing:
    """Several AES-256 keys by id: the first encrypts, all decrypt."""

    keys: tuple[tuple[str, bytes], ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a key ring needs at least one key")
        for key_id, key in self.keys:
            if len(key) != 32:
                raise ValueError(f"key {key_id!r} is not 32 bytes")
        # One cipher object per key, made once: the proxy decrypts a key on every request.
        object.__setattr__(self, "_ciphers", {key_id: AESGCM(key) for key_id, key in self.keys})
        # Stored values parsed once (cipher, nonce, sealed bytes, key-id suffix of the associated data): the
        # parse is public data; the plaintext is still made on each call and never kept.
        object.__setattr__(self, "_parsed", {})

    @classmethod
    def from_entries(cls, entries: list[tuple[str, bytes]]) -> KeyRing:
        """Build from parsed settings entries."""
        return cls(tuple(entries))

    @property
    def primary_id(self) -> str:
        """The id of the key that encrypts."""
        return self.keys[0][0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id the ring can decrypt."""
        return tuple(k for k, _ in self.keys)

    def _cipher(self, key_id: str) -> AESGCM:
        cipher: AESGCM | None = self.__dict__["_ciphers"].get(key_id)
        if cipher is None:
            raise UnknownKeyId(key_id)
        return cipher

    def encrypt(self, plaintext: str, *, binding: bytes) -> str:
        """Encrypt under the primary key; the key id is part of the associated data."""
        key_id = self.primary_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._cipher(key_id).encrypt(nonce, plaintext.encode("utf-8"), binding + b"|key=" + key_id.encode())
        return f"{VERSION}.{key_id}.{b64url_encode(nonce + sealed)}"

    def decrypt(self, stored: str, *, binding: bytes) -> str:
        """Decrypt a stored value, or raise a CryptoError; never returns anything unauthenticated."""
        parsed: dict[str, tuple[AESGCM, bytes, bytes, bytes]] = self.__dict__["_parsed"]
        found = parsed.get(stored)
        if found is None:
            key_id, payload = split_stored(stored)
            found = (self._cipher(key_id), payload[:NONCE_BYTES], payload[NONCE_BYTES:], b"|key=" + key_id.encode())
            if len(parsed) >= MAX_PARSED:
                parsed.clear()
            parsed[stored] = found
        cipher, nonce, sealed, suffix = found
        try:
            plain = cipher.decrypt(nonce, sealed, binding + suffix)
        except InvalidTag:
            raise DecryptionFailed("stored key failed authentication") from None
        return plain.decode("utf-8")

    def reencrypt(self, stored: str, *, binding: bytes) -> str:
        """Re-encrypt a stored value under the primary key (rotation)."""
        return self.encrypt(self.decrypt(stored, binding=binding), binding=binding)
