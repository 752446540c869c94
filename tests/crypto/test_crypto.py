"""Keys at rest: AES-256-GCM round trip, row binding, tamper detection, unique nonces, rotation."""

from __future__ import annotations

import uuid

import pytest

from gateway.crypto.keyring import (
    CryptoError,
    DecryptionFailed,
    KeyRing,
    MalformedCiphertext,
    UnknownKeyId,
    generate_key_entry,
    row_binding,
    split_stored,
)
from gateway.settings import parse_key_ring

SECRET = "sk-test-crypto-0123456789abcdef"


def ring(*ids: str) -> KeyRing:
    return KeyRing.from_entries(parse_key_ring(",".join(generate_key_entry(i) for i in ids)))


def binding() -> bytes:
    return row_binding(uuid.uuid4(), uuid.uuid4())


def test_round_trip_and_format() -> None:
    keys = ring("a", "b")
    aad = binding()
    stored = keys.encrypt(SECRET, binding=aad)
    assert stored.startswith("v1.a.")
    assert SECRET not in stored
    assert keys.decrypt(stored, binding=aad) == SECRET


def test_ciphertext_copied_to_another_row_does_not_decrypt() -> None:
    keys = ring("a")
    user = uuid.uuid4()
    stored = keys.encrypt(SECRET, binding=row_binding(uuid.uuid4(), user))
    with pytest.raises(DecryptionFailed):
        keys.decrypt(stored, binding=row_binding(uuid.uuid4(), user))
    with pytest.raises(DecryptionFailed):
        keys.decrypt(stored, binding=row_binding(uuid.uuid4(), uuid.uuid4()))


def test_key_id_is_bound_too() -> None:
    # Relabelling the key id of a value must not let another key of the ring try it.
    keys = ring("a", "b")
    aad = binding()
    stored = keys.encrypt(SECRET, binding=aad)
    relabelled = stored.replace("v1.a.", "v1.b.", 1)
    with pytest.raises(DecryptionFailed):
        keys.decrypt(relabelled, binding=aad)


@pytest.mark.parametrize(
    "mutate",
    [
        # Flip a character inside the tag (the last character may carry only padding bits).
        lambda s: s[:-5] + ("A" if s[-5] != "A" else "B") + s[-4:],
        lambda s: s[:-10],
        lambda s: s[: len("v1.a.") + 20],
        lambda s: s.replace("v1.", "v2.", 1),
        lambda s: s + ".extra",
        lambda s: "v1.a.",
        lambda s: "v1.a.!!!notbase64!!!",
        lambda s: SECRET,
        lambda s: "",
        lambda s: "**********",
    ],
)
def test_tampered_truncated_or_plain_values_fail_cleanly(mutate) -> None:  # type: ignore[no-untyped-def]
    keys = ring("a")
    aad = binding()
    bad = mutate(keys.encrypt(SECRET, binding=aad))
    with pytest.raises(CryptoError) as info:
        keys.decrypt(bad, binding=aad)
    assert SECRET not in str(info.value)


def test_unknown_key_id_is_an_error_not_a_key() -> None:
    aad = binding()
    stored = ring("old").encrypt(SECRET, binding=aad)
    with pytest.raises(UnknownKeyId) as info:
        ring("new").decrypt(stored, binding=aad)
    assert info.value.key_id == "old"


def test_no_nonce_repeats_over_10000_encryptions() -> None:
    keys = ring("a")
    aad = binding()
    nonces = {split_stored(keys.encrypt(SECRET, binding=aad))[1][:12] for _ in range(10_000)}
    assert len(nonces) == 10_000


def test_first_key_encrypts_all_decrypt_and_reencrypt_moves_to_primary() -> None:
    old = ring("k0")
    aad = binding()
    stored = old.encrypt(SECRET, binding=aad)
    both = KeyRing(keys=(*ring("k1").keys, *old.keys))
    assert both.primary_id == "k1"
    assert split_stored(stored)[0] == "k0"  # not under the primary: rotation moves it
    assert both.decrypt(stored, binding=aad) == SECRET
    moved = both.reencrypt(stored, binding=aad)
    assert moved.startswith("v1.k1.") and split_stored(moved)[0] == both.primary_id
    # The old key can now be retired: the primary alone decrypts the moved value.
    assert KeyRing(keys=both.keys[:1]).decrypt(moved, binding=aad) == SECRET


@pytest.mark.parametrize(
    "raw",
    ["", "nocolon", "a:short", "a:" + "A" * 50, "bad id:" + "A" * 43, generate_key_entry("x") + "," + generate_key_entry("x")],
)
def test_key_ring_parsing_refuses_bad_entries(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_key_ring(raw)


def test_generated_entry_parses_to_32_bytes() -> None:
    ((key_id, key),) = parse_key_ring(generate_key_entry("abc"))
    assert key_id == "abc" and len(key) == 32
    with pytest.raises(MalformedCiphertext):
        split_stored("v1..AAAA")
