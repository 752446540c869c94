"""The legacy settings shape (`llm_model`, `llm_api_key`, `llm_base_url`) read and written through the caller's
default configuration, so old clients keep working and a posted-back mask never replaces a key.

A cleared key (llm_api_key_clear) is gateway.configurations.cleared's: the configuration is deactivated until a
real key is posted again."""

from __future__ import annotations

import asyncio
import uuid

from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.configurations.cleared import clear_key, has_key
from gateway.configurations.crud import (
    Policy,
    check_api_key,
    create_configuration,
    default_configuration,
    update_configuration,
)
from gateway.configurations.providers import ProviderCatalog
from gateway.crypto.keyring import KeyRing
from gateway.crypto.masking import is_placeholder
from gateway.errors import Unprocessable
from gateway.legacy.migration import free_name
from gateway.legacy.source import join_model, split_model
from gateway.store.models import LLMConfiguration
from gateway.validation import MAX_MODEL, check_text

NEW_CONFIGURATION_NAME = "Default Configuration"
MAX_PROVIDER_PREFIX = 51  # a legacy model is "<provider>/<model>"


class LegacySettings(BaseModel):
    """GET /api/settings: the key itself is never returned, only whether one is stored."""

    # Built on first use: only a gateway that replaces a legacy single-key service serves /api/settings.
    model_config = ConfigDict(defer_build=True)

    llm_model: str | None = None
    llm_base_url: str | None = None
    llm_api_key: None = None
    llm_api_key_set: bool = False


class LegacySettingsUpdate(BaseModel):
    """POST /api/settings: fields the gateway does not own are accepted and ignored."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    llm_model: str | None = None
    llm_api_key: str | None = None
    llm_base_url: str | None = None
    llm_api_key_clear: bool = False


def settings_view(keyring: KeyRing, catalog: ProviderCatalog, config: LLMConfiguration | None) -> LegacySettings:
    """A configuration in the legacy shape."""
    if config is None:
        return LegacySettings()
    return LegacySettings(llm_model=join_model(catalog, config.provider, config.model), llm_base_url=config.base_url,
                          llm_api_key_set=has_key(keyring, config))


def _key_action(update: LegacySettingsUpdate) -> str:
    """keep, clear or set: absent, null, empty and masked keys keep the stored key unless clearing is explicit."""
    key = update.llm_api_key
    if update.llm_api_key_clear:
        if key not in (None, ""):
            raise Unprocessable("Invalid 'llm_api_key_clear': send it with an empty or absent llm_api_key",
                                param="llm_api_key_clear")
        return "clear"
    if key is None or is_placeholder(key):
        return "keep"
    check_api_key(key)
    return "set"


async def write_settings(session: AsyncSession, *, keyring: KeyRing, policy: Policy, user_id: uuid.UUID,
                         update: LegacySettingsUpdate) -> LLMConfiguration | None:
    """Apply a legacy settings post to the default configuration (flushed, not committed)."""
    action = _key_action(update)
    given = update.model_fields_set
    model = update.llm_model.strip() if update.llm_model and update.llm_model.strip() else None
    if model is not None:
        check_text(model, param="llm_model", max_length=MAX_MODEL + MAX_PROVIDER_PREFIX)
    base_url = (update.llm_base_url or "").strip() or None
    config = await default_configuration(session, user_id=user_id, for_update=True)
    if config is None:
        if action != "set":
            if model is not None:
                raise Unprocessable("Field 'llm_api_key' is required: you have no configuration yet",
                                    param="llm_api_key")
            return None
        if model is None:
            raise Unprocessable("Field 'llm_model' is required: you have no configuration yet", param="llm_model")
        provider, bare = await asyncio.to_thread(split_model, policy.catalog, model)
        return await create_configuration(
            session, keyring=keyring, policy=policy, user_id=user_id,
            name=await free_name(session, user_id=user_id, base=NEW_CONFIGURATION_NAME),
            provider=provider, model=bare, api_key=update.llm_api_key or "", base_url=base_url, is_default=True,
        )
    values: dict[str, object] = {}
    if model is not None and model not in (config.model, join_model(policy.catalog, config.provider, config.model)):
        values["provider"], values["model"] = await asyncio.to_thread(split_model, policy.catalog, model)
    if "llm_base_url" in given and base_url != config.base_url:
        values["base_url"] = base_url
    was_cleared = not has_key(keyring, config)
    if action == "clear":
        clear_key(keyring, config)  # first: a key that is gone may move with its configuration
    config, _ = await update_configuration(
        session, keyring=keyring, policy=policy, user_id=user_id, configuration_id=config.id, values=values,
        api_key=update.llm_api_key if action == "set" else None,
    )
    if action == "set" and was_cleared:
        config.is_active = True
    await session.flush()
    return config
