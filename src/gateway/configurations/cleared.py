"""A configuration whose key was cleared (the legacy settings shape can clear it; backups carry the state).

The key is stored as the encryption of CLEARED_KEY, a value no key can be (still bound to its row), and the
configuration is deactivated: no request can use it, and a real key saved later reactivates it."""

from __future__ import annotations

from gateway.configurations.crud import CLEARED_KEY, decrypt_key
from gateway.crypto.keyring import KeyRing, row_binding
from gateway.store.models import LLMConfiguration, utcnow


def has_key(keyring: KeyRing, configuration: LLMConfiguration) -> bool:
    """True unless the key was cleared."""
    return decrypt_key(keyring, configuration) != CLEARED_KEY


def clear_key(keyring: KeyRing, configuration: LLMConfiguration) -> None:
    """Forget the key: nothing usable stays, and the configuration can no longer serve requests."""
    binding = row_binding(configuration.id, configuration.user_id)
    configuration.api_key_encrypted = keyring.encrypt(CLEARED_KEY, binding=binding)
    configuration.key_id = keyring.primary_id
    configuration.is_active = False
    configuration.updated_at = utcnow()
