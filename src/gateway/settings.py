"""Typed settings: environment (`LLM_GATEWAY_*`), an optional TOML file (`LLM_GATEWAY_CONFIG`), defaults."""

from __future__ import annotations

import base64
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/gateway.db"
KEY_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
# A table name, optionally schema-qualified; it is quoted as an identifier, never pasted into SQL.
TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")
# Values people paste from examples; a secret equal to one of these is refused.
PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "password", "admin", "token", "xxx", "todo"}
SUPPORTED_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")


def parse_key_ring(raw: str) -> list[tuple[str, bytes]]:
    """Parse `id:base64url(32 bytes),id2:...` into (key_id, key) pairs; raise ValueError naming the problem."""
    entries: list[tuple[str, bytes]] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        key_id, sep, encoded = part.partition(":")
        if not sep or not KEY_ID_RE.match(key_id):
            raise ValueError("each entry must be key_id:base64url(32 bytes), key_id of letters, digits, _ or -")
        try:
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (ValueError, TypeError):
            raise ValueError(f"key {key_id!r} is not valid base64url") from None
        if len(key) != 32:
            raise ValueError(f"key {key_id!r} must decode to 32 bytes, not {len(key)}")
        if any(existing == key_id for existing, _ in entries):
            raise ValueError(f"key id {key_id!r} appears twice")
        entries.append((key_id, key))
    if not entries:
        raise ValueError("no key given")
    return entries


class ConfigFileError(ValueError):
    """The file named by LLM_GATEWAY_CONFIG is missing or is not valid TOML."""


def sqlite_file(url: str) -> str | None:
    """The file part of a sqlite URL (None for in-memory, a `file:` URI or another database)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[1].split("?", 1)[0] if ":///" in url else ""
    return None if path in ("", ":memory:") or path.startswith("file:") else path


def _absolute_sqlite_url(url: str) -> str:
    path = sqlite_file(url)
    if path is None or Path(path).is_absolute():
        return url
    head, _, tail = url.partition(":///")
    return f"{head}:///{Path(path).resolve()}{tail[len(path):]}"


def public_database_url(url: str) -> str:
    """The URL with any password replaced by `***`, for start-up lines and errors (up to the netloc's last `@`,
    so even an unescaped `@` in the password does not leak its tail)."""
    return re.sub(r"^([^:/]+://[^:/@]*:)[^/]*@", r"\1***@", url)


def normalise_database_url(value: str) -> str:
    """The async-driver form of a PostgreSQL or SQLite URL; ValueError for any other scheme."""
    scheme = value.split("://", 1)[0]
    if scheme == "postgresql" or scheme == "postgres":
        return "postgresql+asyncpg://" + value.split("://", 1)[1]
    if scheme == "sqlite":
        return "sqlite+aiosqlite://" + value.split("://", 1)[1]
    if scheme not in SUPPORTED_SCHEMES:
        raise ValueError(f"unsupported scheme {scheme!r}: use postgresql+asyncpg:// or sqlite+aiosqlite://")
    return value


class Settings(BaseSettings):
    """Everything the gateway reads from its environment; passed in, never imported as a global."""

    model_config = SettingsConfigDict(env_prefix="LLM_GATEWAY_", extra="forbid", validate_default=True)

    database_url: str = DEFAULT_DATABASE_URL  # unset: gateway.db in data_dir
    data_dir: Path = Path("./data")  # relative: resolved against the working directory, and printed
    encryption_keys: SecretStr | None = None
    admin_token: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    client_header_timeout_s: float = Field(default=30.0, gt=0)
    allow_private_base_urls: bool = False
    # Off: no export carries keys, so no holder of a user's token (an operator can mint one) can read them.
    allow_key_export: bool = False
    upstream_timeout_s: float = Field(default=120.0, gt=0)
    upstream_connect_timeout_s: float = Field(default=10.0, gt=0)
    max_upstream_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_event_bytes: int = Field(default=1024 * 1024, ge=1024)
    stream_max_duration_s: float = Field(default=0.0, ge=0)
    upstream_max_connections: int = Field(default=4096, ge=1)
    upstream_max_connections_per_host: int = Field(default=0, ge=0)
    queue_timeout_s: float = Field(default=2.0, ge=0)
    max_concurrent_requests_per_user: int = Field(default=500, ge=1)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # A /v1 body's whole read, from the handler's first look at it (a trickled body is answered 408).
    body_read_timeout_s: float = Field(default=30.0, gt=0)
    # Bytes of /v1 bodies one user has in flight in this process (parsed, they take up to ~26 times as much);
    # unset: twice MAX_BODY_BYTES. Never below MAX_BODY_BYTES, or a body of the allowed size could never pass.
    max_body_bytes_in_flight_per_user: int | None = Field(default=None, ge=1024)
    # The translation workers (litellm, shared by every user of the process): how many, and each call's bounds.
    # Two: on a 2-core machine another user's p95 during a flood of calls just under the limits was 55-114 ms
    # with two workers, 110-156 ms with one (tests/proxy/test_translation_isolation.py, three runs each), for
    # ~236 MiB more memory.
    translation_workers: int = Field(default=2, ge=1, le=16)
    translation_max_request_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    translation_max_messages: int = Field(default=2000, ge=1)
    translation_deadline_s: float = Field(default=600.0, gt=0)
    translation_user_share: float = Field(default=0.5, gt=0, le=1)
    translation_worker_calls: int = Field(default=64, ge=1)
    translation_worker_max_rss_mb: int = Field(default=1024, ge=0)  # 0: no ceiling
    max_configurations_per_user: int = Field(default=100, ge=1)
    # Teams multiply configurations (each has its own limit), so a user's teams are bounded too.
    max_configurations_per_team: int = Field(default=100, ge=1)
    max_teams_per_user: int = Field(default=20, ge=1)
    test_timeout_s: float = Field(default=10.0, gt=0)
    test_concurrency: int = Field(default=4, ge=1, le=64)
    tests_per_minute: int = Field(default=30, ge=1)
    cooldown_failures: int = Field(default=3, ge=1)
    cooldown_s: float = Field(default=30.0, ge=0)
    binding_cache_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    usage_flush_interval_s: float = Field(default=1.0, gt=0)
    usage_batch_size: int = Field(default=500, ge=1)
    providers_file: Path | None = None
    templates_file: Path | None = None
    legacy_source_db_url: SecretStr | None = None
    legacy_source_dir: Path | None = None
    legacy_table: str = "user_settings"
    rotation_batch_size: int = Field(default=200, ge=1, le=10_000)
    log_level: str = "INFO"
    log_format: str = "text"
    access_log: bool = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then environment, then the TOML file named by LLM_GATEWAY_CONFIG."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = os.environ.get("LLM_GATEWAY_CONFIG")
        if toml_path:
            sources.append(_toml_source(settings_cls, Path(toml_path)))
        return tuple(sources)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value.upper()

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value.lower() not in ("text", "json"):
            raise ValueError("must be text or json")
        return value.lower()

    @model_validator(mode="after")
    def _absolute_paths(self) -> Settings:
        # A relative path would silently follow the working directory: fix it once, here, and print it.
        self.data_dir = self.data_dir.resolve()
        if "database_url" not in self.model_fields_set:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'gateway.db'}"
        self.database_url = _absolute_sqlite_url(self.database_url)
        return self

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("templates_file")
    @classmethod
    def _valid_templates(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # Checked here so every command refuses a bad file at start-up, on one line naming file, template, field.
        from gateway.configurations.providers import CatalogError, ProviderCatalog
        from gateway.templates.catalog import TemplateCatalog, TemplateError

        if value is not None:
            try:
                TemplateCatalog.load(ProviderCatalog.load(info.data.get("providers_file")), value)
            except CatalogError:
                pass  # the providers file's own error is reported where the catalog is loaded
            except TemplateError as exc:
                raise PydanticCustomError("templates_file", "{reason}", {"reason": str(exc)}) from None
        return value

    @field_validator("legacy_source_db_url")
    @classmethod
    def _legacy_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        return SecretStr(normalise_database_url(value.get_secret_value()))

    @field_validator("legacy_table")
    @classmethod
    def _legacy_table(cls, value: str) -> str:
        if not TABLE_RE.match(value):
            raise ValueError("must be a table name (letters, digits, _; optionally schema.table)")
        return value

    @model_validator(mode="after")
    def _body_allowance(self) -> Settings:
        allowance = self.max_body_bytes_in_flight_per_user
        if allowance is not None and allowance < self.max_body_bytes:
            raise ValueError("MAX_BODY_BYTES_IN_FLIGHT_PER_USER must be at least MAX_BODY_BYTES")
        return self

    @property
    def body_bytes_per_user(self) -> int:
        """Bytes of /v1 bodies one user may have in flight in this process."""
        return self.max_body_bytes_in_flight_per_user or 2 * self.max_body_bytes

    @model_validator(mode="after")
    def _one_legacy_source(self) -> Settings:
        if self.legacy_source_db_url is not None and self.legacy_source_dir is not None:
            raise ValueError("set legacy_source_db_url or legacy_source_dir, not both")
        return self

    @field_validator("encryption_keys")
    @classmethod
    def _valid_ring(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_key_ring(value.get_secret_value())
        return value

    @field_validator("admin_token")
    @classmethod
    def _strong_admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        secret = value.get_secret_value()
        if len(secret) < 16 or secret.lower() in PLACEHOLDER_SECRETS:
            raise ValueError("must be at least 16 characters and not a placeholder")
        return value

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded SQLite database."""
        return self.database_url.startswith("sqlite")

    @property
    def has_legacy_source(self) -> bool:
        """True when a legacy settings source is configured (read-through migration)."""
        return self.legacy_source_db_url is not None or self.legacy_source_dir is not None

    def key_ring_entries(self) -> list[tuple[str, bytes]]:
        """The configured encryption keys; the first encrypts."""
        if self.encryption_keys is None:
            raise ValueError("LLM_GATEWAY_ENCRYPTION_KEYS is not set")
        return parse_key_ring(self.encryption_keys.get_secret_value())


def _toml_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    if not path.is_file():
        raise ConfigFileError(f"LLM_GATEWAY_CONFIG names {path.resolve()}, which does not exist")
    try:
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ConfigFileError(f"LLM_GATEWAY_CONFIG {path.resolve()} is not valid TOML: {exc}") from None


def describe_settings_error(exc: Exception) -> str:
    """One line naming the setting that failed, never its value."""
    errors: list[dict[str, Any]] = getattr(exc, "errors", list)()
    if errors:
        first = errors[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        return f"invalid setting LLM_GATEWAY_{field.upper()}: {message}"
    return f"invalid settings: {exc.__class__.__name__}"
