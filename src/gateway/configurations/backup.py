"""Export and import of a user's configurations. Keys leave only sealed under a passphrase: scrypt derives an
AES-256-GCM key (salt in the file, cost fixed), each key is sealed with its configuration's name, provider and
base URL as associated data, so a sealed key can neither be swapped between entries nor pointed at another host
by editing the file. Import merges by name."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.configurations.cleared import clear_key, has_key
from gateway.configurations.crud import (
    Policy,
    check_provider_and_url,
    create_configuration,
    decrypt_key,
    default_configuration,
    list_user_configurations,
    moves_key,
    update_configuration,
)
from gateway.crypto.keyring import KeyRing, b64url_decode, b64url_encode
from gateway.errors import Unprocessable
from gateway.store.models import LLMConfiguration, utcnow
from gateway.validation import MAX_MODEL, MAX_NAME, printable

FORMAT = "llm-gateway-configurations"
# Version 2 binds each sealed key to its provider and base URL; version 1 bound it to the name only.
VERSION = 2
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MIN_PASSPHRASE = 8
COMPARED = ("provider", "model", "base_url", "is_active")
# create_configuration needs a key; an entry exported without one gets this, replaced at once by clear_key.
UNSET_KEY = "unset-key-cleared-after-create"


class Strict(BaseModel):
    # Export and import are rare: their validators are built on first use, not at start-up.
    model_config = ConfigDict(extra="forbid", defer_build=True)


class Sealing(Strict):
    """How the keys of an export are sealed: only the parameters this gateway writes are accepted, so a crafted
    file cannot make one request spend seconds of CPU or gigabytes of memory in scrypt."""

    kdf: Literal["scrypt"] = "scrypt"
    salt: str = Field(min_length=1, max_length=64)
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P
    cipher: Literal["AES-256-GCM"] = "AES-256-GCM"

    @field_validator("n", "r", "p")
    @classmethod
    def _our_cost(cls, value: int, info: ValidationInfo) -> int:
        ours = {"n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}[str(info.field_name)]
        if value != ours:
            raise ValueError(f"must be {ours}: only the scrypt cost this gateway writes is accepted")
        return value


Text = AfterValidator(printable)


class ExportedConfiguration(Strict):
    """One configuration in an export; fallbacks by name, since ids differ between gateways."""

    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME), Text]
    provider: str = Field(min_length=1, max_length=50)
    model: Annotated[str, Field(min_length=1, max_length=MAX_MODEL), Text]
    base_url: str | None = Field(default=None, max_length=2048)
    is_default: bool = False
    is_active: bool = True
    fallbacks: list[str] = Field(default_factory=list, max_length=50)
    api_key_sealed: str | None = Field(default=None, max_length=8192)


class ExportDocument(Strict):
    """The export file."""

    format: str = FORMAT
    version: int = Field(default=VERSION, ge=1, le=VERSION)
    exported_at: datetime | None = None
    encryption: Sealing | None = None
    configurations: list[ExportedConfiguration] = Field(max_length=10_000)


class NameConflict(BaseModel):
    """A name that exists on both sides with different settings."""

    model_config = ConfigDict(defer_build=True)

    name: str
    fields: list[str]


class ImportReport(BaseModel):
    """What an import did (or, in a dry run, would do)."""

    model_config = ConfigDict(defer_build=True)

    dry_run: bool
    keys_restored: bool
    created: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    conflicts: list[NameConflict] = Field(default_factory=list)
    needs_key: list[str] = Field(default_factory=list, description="created without a key: inactive until one is set")
    errors: list[dict[str, str]] = Field(default_factory=list)


def checked_entries(document: ExportDocument, policy: Policy, report: ImportReport
                    ) -> Iterator[tuple[ExportedConfiguration, str | None]]:
    """The document's entries with their base URL checked and normalised; one the catalog or the URL policy
    refuses becomes an error of the report instead."""
    for entry in document.configurations:
        try:
            base_url = check_provider_and_url(policy, entry.provider, entry.base_url)
        except Unprocessable as exc:
            report.errors.append({"name": entry.name, "error": exc.message})
            continue
        yield entry, base_url


def check_passphrase(passphrase: str) -> str:
    """At least MIN_PASSPHRASE characters (422 naming `passphrase` otherwise)."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise Unprocessable(f"Invalid 'passphrase': at least {MIN_PASSPHRASE} characters", param="passphrase")
    return passphrase


async def derive(passphrase: str, sealing: Sealing) -> AESGCM:
    """The AES-GCM cipher for a passphrase (scrypt runs in a thread: it is slow on purpose)."""
    try:
        salt = b64url_decode(sealing.salt)
    except (ValueError, TypeError):
        raise Unprocessable("Invalid 'data.encryption.salt': not base64url", param="data.encryption.salt") from None
    kdf = Scrypt(salt=salt, length=32, n=sealing.n, r=sealing.r, p=sealing.p)
    return AESGCM(await asyncio.to_thread(kdf.derive, passphrase.encode("utf-8")))


def _aad(entry: ExportedConfiguration) -> bytes:
    # The fields that say where the key goes: editing any of them in the file makes the seal fail to open.
    return orjson.dumps([FORMAT, VERSION, entry.name, entry.provider, entry.base_url])


def seal(cipher: AESGCM, entry: ExportedConfiguration, plaintext: str) -> str:
    """One key sealed for one entry, bound to its name, provider and base URL."""
    nonce = os.urandom(12)
    return b64url_encode(nonce + cipher.encrypt(nonce, plaintext.encode("utf-8"), _aad(entry)))


def unseal(cipher: AESGCM, entry: ExportedConfiguration) -> str:
    """The key of one entry; a wrong passphrase (or a tampered file) is a 422 naming `passphrase`."""
    try:
        raw = b64url_decode(entry.api_key_sealed or "")
        return cipher.decrypt(raw[:12], raw[12:], _aad(entry)).decode("utf-8")
    except (InvalidTag, ValueError, TypeError):
        raise Unprocessable("Wrong passphrase or edited file: the keys in this export cannot be opened with it",
                            param="passphrase", code="wrong_passphrase") from None


async def export_configurations(session: AsyncSession, *, keyring: KeyRing, user_id: uuid.UUID,
                                passphrase: str | None) -> ExportDocument:
    """The user's configurations; keys only when a passphrase is given."""
    configs = await list_user_configurations(session, user_id=user_id)

    async def key_of(config: LLMConfiguration) -> str | None:
        return decrypt_key(keyring, config) if has_key(keyring, config) else None

    return await build_export(configs, key_of=key_of, passphrase=passphrase)


async def build_export(configs: list[LLMConfiguration], *, key_of: Callable[[LLMConfiguration], Awaitable[str | None]],
                       passphrase: str | None, default_id: uuid.UUID | None = None) -> ExportDocument:
    """An export of these configurations; `key_of` gives a row's plaintext key (None: it has none), asked only
    when a passphrase is given. `default_id` marks the default when the rows do not (a team's member)."""
    names = {str(c.id): c.name for c in configs}
    sealing = cipher = None
    if passphrase is not None:
        sealing = Sealing(salt=b64url_encode(os.urandom(16)))
        cipher = await derive(check_passphrase(passphrase), sealing)
    entries = []
    for c in configs:
        entry = ExportedConfiguration(
            name=c.name, provider=c.provider, model=c.model, base_url=c.base_url,
            is_default=c.is_default or c.id == default_id,
            is_active=c.is_active, fallbacks=[names[f] for f in c.fallback_ids or [] if f in names],
        )
        if cipher is not None:
            key = await key_of(c)
            if key is not None:
                entry.api_key_sealed = seal(cipher, entry, key)
        entries.append(entry)
    return ExportDocument(exported_at=utcnow(), encryption=sealing, configurations=entries)


async def open_keys(document: ExportDocument, passphrase: str | None) -> dict[str, str]:
    """name → plaintext key; refuses when the export holds keys and the passphrase is missing or wrong."""
    sealed = [e for e in document.configurations if e.api_key_sealed]
    if not sealed:
        return {}
    if document.version < VERSION:
        # Version 1 sealed a key to its name only: its base URL could have been edited to any host.
        raise Unprocessable("This export was written by an older gateway and its keys are not bound to their "
                            "base URLs: export again, or import it without keys", param="data.version",
                            code="unsupported_export_version")
    if document.encryption is None:
        raise Unprocessable("Invalid 'data.encryption': sealed keys need their encryption block",
                            param="data.encryption")
    if passphrase is None:
        raise Unprocessable("This export holds keys: send the passphrase it was made with", param="passphrase",
                            code="passphrase_required")
    cipher = await derive(passphrase, document.encryption)
    return {entry.name: unseal(cipher, entry) for entry in sealed}


async def check_document(document: ExportDocument, passphrase: str | None) -> dict[str, str]:
    """An import's document checked (format, unique names) and its keys opened: name → plaintext key."""
    if document.format != FORMAT:
        raise Unprocessable(f"Invalid 'data.format': expected {FORMAT!r}", param="data.format")
    if len({e.name for e in document.configurations}) != len(document.configurations):
        raise Unprocessable("Invalid 'data.configurations': a name appears twice", param="data.configurations")
    return await open_keys(document, passphrase)


def merge_existing(policy: Policy, report: ImportReport, current: LLMConfiguration, entry: ExportedConfiguration,
                   *, base_url: str | None, key: str | None, stored_key: str | None, overwrite: bool
                   ) -> dict[str, Any] | None:
    """Decide what importing `entry` does to the stored configuration of the same name, noting it in the report
    (unchanged, conflict, error, updated); the values to write when it is to be updated, else None.
    `stored_key` is the stored plaintext, None when the configuration has no key."""
    differs = [f for f in COMPARED if getattr(current, f) != (base_url if f == "base_url" else getattr(entry, f))]
    if key is not None and stored_key != key:
        differs.append("api_key")
    if not differs:
        report.unchanged.append(entry.name)
    elif not overwrite:
        report.conflicts.append(NameConflict(name=entry.name, fields=differs))
    elif key is None and stored_key is not None and moves_key(
            policy, current, provider=entry.provider, base_url=base_url):
        # The same rule as every other write path: a stored key is only moved by someone who sends it.
        report.errors.append({"name": entry.name, "code": "key_required_for_new_origin",
                              "error": "another provider or origin needs the key: import it with its key"})
    else:
        report.updated.append(entry.name)
        return {"provider": entry.provider, "model": entry.model, "base_url": base_url, "is_active": entry.is_active}
    return None


async def import_configurations(session: AsyncSession, *, keyring: KeyRing, policy: Policy, user_id: uuid.UUID,
                                document: ExportDocument, passphrase: str | None, dry_run: bool,
                                overwrite: bool) -> ImportReport:
    """Merge an export into the user's configurations by name (flushed, not committed)."""
    keys = await check_document(document, passphrase)
    return await merge_configurations(session, keyring=keyring, policy=policy, user_id=user_id, document=document,
                                      keys=keys, dry_run=dry_run, overwrite=overwrite)


async def merge_configurations(session: AsyncSession, *, keyring: KeyRing, policy: Policy, user_id: uuid.UUID,
                               document: ExportDocument, keys: dict[str, str], dry_run: bool,
                               overwrite: bool) -> ImportReport:
    """Merge a checked document whose keys are open (name → plaintext) into the user's configurations by name
    (flushed, not committed); an entry without a key is created inactive and listed in `needs_key`."""
    report = ImportReport(dry_run=dry_run, keys_restored=bool(keys))
    existing = {c.name: c for c in await list_user_configurations(session, user_id=user_id)}
    has_default = await default_configuration(session, user_id=user_id) is not None
    touched: dict[str, uuid.UUID] = {}
    for entry, base_url in checked_entries(document, policy, report):
        key = keys.get(entry.name)
        current = existing.get(entry.name)
        if current is None:
            report.created.append(entry.name)
            if key is None:
                report.needs_key.append(entry.name)
            if dry_run:
                continue
            make_default = entry.is_default and not has_default
            config = await create_configuration(
                session, keyring=keyring, policy=policy, user_id=user_id, name=entry.name, provider=entry.provider,
                model=entry.model, api_key=key or UNSET_KEY, base_url=base_url,
                is_default=make_default, is_active=entry.is_active and key is not None,
            )
            if key is None:
                clear_key(keyring, config)
            has_default = has_default or make_default
            touched[entry.name] = config.id
            continue
        values = merge_existing(policy, report, current, entry, base_url=base_url, key=key, overwrite=overwrite,
                                stored_key=decrypt_key(keyring, current) if has_key(keyring, current) else None)
        if values is not None and not dry_run:
            await update_configuration(session, keyring=keyring, policy=policy, user_id=user_id,
                                       configuration_id=current.id, values=values, api_key=key)
            touched[entry.name] = current.id
    if not dry_run:
        await _link_fallbacks(session, keyring=keyring, policy=policy, user_id=user_id, document=document,
                              touched=touched)
    return report


async def _link_fallbacks(session: AsyncSession, *, keyring: KeyRing, policy: Policy, user_id: uuid.UUID,
                          document: ExportDocument, touched: dict[str, uuid.UUID]) -> None:
    """Resolve fallback names once every imported configuration exists."""
    by_name = {c.name: str(c.id) for c in await list_user_configurations(session, user_id=user_id)}
    for entry in document.configurations:
        if entry.name in touched and entry.fallbacks:
            ids = [by_name[n] for n in entry.fallbacks if n in by_name and n != entry.name]
            await update_configuration(session, keyring=keyring, policy=policy, user_id=user_id,
                                       configuration_id=touched[entry.name], values={"fallback_ids": ids})
