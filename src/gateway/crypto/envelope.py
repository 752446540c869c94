"""Envelope encryption for teams (DESIGN §8): each team has its own random 256-bit data key, stored only wrapped
by the key ring; a team configuration's key is encrypted under the data key.

Wrapped data key: a ring ciphertext (`v1.<ring key id>.<payload>`) of the data key with associated data = team id
(+ ring key id, which the ring always appends). Team configuration key: `v1.<team key id>.<payload>`, AES-256-GCM
under the data key with associated data = configuration id + team id + team key id. A team ciphertext copied into
a personal row names no ring key and carries another binding, so it does not decrypt, and the reverse holds too.
"""

from __future__ import annotations

import os
import secrets
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.crypto.keyring import (
    NONCE_BYTES,
    VERSION,
    DecryptionFailed,
    KeyRing,
    MalformedCiphertext,
    b64url_decode,
    b64url_encode,
    split_stored,
)

DATA_KEY_BYTES = 32


def new_team_key_id() -> str:
    """A fresh id for a team data key (what a team configuration's `key_id` names)."""
    return "tk" + secrets.token_hex(8)


def new_data_key() -> bytes:
    """A random 256-bit data key."""
    return AESGCM.generate_key(bit_length=256)


def wrap_binding(team_id: uuid.UUID | str) -> bytes:
    """The associated data that ties a wrapped data key to its team (the ring adds its key id)."""
    return f"llm-gateway|team-data-key|team={team_id}".encode()


def team_row_binding(configuration_id: uuid.UUID | str, team_id: uuid.UUID | str, team_key_id: str) -> bytes:
    """The associated data that ties a ciphertext to one configuration row of one team, under one data key."""
    return f"llm-gateway|cfg={configuration_id}|team={team_id}|key={team_key_id}".encode()


def wrap_data_key(keyring: KeyRing, *, team_id: uuid.UUID | str, data_key: bytes) -> tuple[str, str]:
    """(ring key id, wrapped data key) under the ring's primary key."""
    return keyring.primary_id, keyring.encrypt(b64url_encode(data_key), binding=wrap_binding(team_id))


def unwrap_data_key(keyring: KeyRing, *, team_id: uuid.UUID | str, wrapped: str) -> bytes:
    """The data key, or a CryptoError (unknown ring key, tampered, or wrapped for another team)."""
    data_key = b64url_decode(keyring.decrypt(wrapped, binding=wrap_binding(team_id)))
    if len(data_key) != DATA_KEY_BYTES:
        raise DecryptionFailed("team data key has the wrong length")
    return data_key


def encrypt_team_key(data_key: bytes, *, team_key_id: str, configuration_id: uuid.UUID | str,
                     team_id: uuid.UUID | str, plaintext: str) -> str:
    """A team configuration's provider key encrypted under the team's data key."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(data_key).encrypt(nonce, plaintext.encode("utf-8"),
                                      team_row_binding(configuration_id, team_id, team_key_id))
    return f"{VERSION}.{team_key_id}.{b64url_encode(nonce + sealed)}"


def decrypt_team_key(data_key: bytes, *, stored: str, configuration_id: uuid.UUID | str,
                     team_id: uuid.UUID | str) -> str:
    """A team configuration's provider key, or a CryptoError; never anything unauthenticated."""
    team_key_id, payload = split_stored(stored)
    if not team_key_id.startswith("tk"):
        raise MalformedCiphertext("stored key is not a team ciphertext")
    try:
        plain = AESGCM(data_key).decrypt(payload[:NONCE_BYTES], payload[NONCE_BYTES:],
                                         team_row_binding(configuration_id, team_id, team_key_id))
    except InvalidTag:
        raise DecryptionFailed("stored key failed authentication") from None
    return plain.decode("utf-8")


def stored_key_id(stored: str) -> str:
    """The key id a stored value names (a ring key, or a team data key)."""
    return split_stored(stored)[0]
