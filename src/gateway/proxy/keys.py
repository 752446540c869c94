"""A cached configuration's provider key, decrypted for one upstream call: a personal one by the key ring, a
team's by its team's data key (unwrapped by the ring for this call too; neither is kept)."""

from __future__ import annotations

from gateway.crypto.envelope import decrypt_team_key, unwrap_data_key
from gateway.crypto.keyring import DecryptionFailed, KeyRing
from gateway.proxy.cache import CachedConfiguration


def plaintext_key(keyring: KeyRing, configuration: CachedConfiguration) -> str:
    """The key to send upstream now; a CryptoError when this gateway cannot decrypt it. Never store the result."""
    team = configuration.team
    if team is None:
        return keyring.decrypt(configuration.api_key_encrypted, binding=configuration.binding)
    if team.wrapped_key is None:
        raise DecryptionFailed("the team data key of this configuration no longer exists")
    data_key = unwrap_data_key(keyring, team_id=team.id, wrapped=team.wrapped_key)
    return decrypt_team_key(data_key, stored=configuration.api_key_encrypted, configuration_id=configuration.id,
                            team_id=team.id)
