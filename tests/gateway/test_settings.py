"""Settings: environment over TOML over defaults, secrets hidden, every setting documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.crypto.keyring import generate_key_entry
from gateway.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "gateway.example.toml"


def test_example_file_documents_every_setting() -> None:
    text = EXAMPLE.read_text()
    documented = set(re.findall(r"^#?\s*([a-z_]+)\s*=", text, flags=re.M))
    assert set(Settings.model_fields) <= documented


def test_toml_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gw.toml"
    config.write_text('port = 4100\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("LLM_GATEWAY_CONFIG", str(config))
    monkeypatch.setenv("LLM_GATEWAY_PORT", "4200")
    settings = Settings()
    assert settings.port == 4200 and settings.host == "0.0.0.0"


def test_secrets_are_hidden_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = generate_key_entry("k1")
    monkeypatch.setenv("LLM_GATEWAY_ENCRYPTION_KEYS", entry)
    monkeypatch.setenv("LLM_GATEWAY_ADMIN_TOKEN", "a-long-operator-token-123")
    settings = Settings()
    assert entry.split(":")[1] not in repr(settings) and "a-long-operator-token-123" not in repr(settings)
    assert settings.key_ring_entries()[0][0] == "k1"


@pytest.mark.parametrize(
    ("field", "value"),
    [("encryption_keys", "k1:tooshort"), ("admin_token", "short"), ("database_url", "mysql://x"), ("port", "0")],
)
def test_bad_values_name_the_setting(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(**{field: value})
    assert info.value.errors()[0]["loc"] == (field,)
    assert value not in str(info.value.errors(include_input=False)[0]["msg"])


def test_plain_scheme_aliases_are_normalised() -> None:
    assert Settings(database_url="postgresql://u@h/db").database_url == "postgresql+asyncpg://u@h/db"
    # A relative SQLite path is made absolute, so serve and the CLI agree on the file.
    assert Settings(database_url="sqlite:///x.db").database_url == f"sqlite+aiosqlite:///{Path.cwd() / 'x.db'}"


def test_keys_leave_in_exports_only_when_the_operator_says_so() -> None:
    # A sealed export under the caller's passphrase is the key in clear to whoever holds the user's token.
    assert Settings.model_fields["allow_key_export"].default is False
