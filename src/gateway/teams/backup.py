"""Export and import of a team's configurations (owners), in the same file format as personal ones
(gateway.configurations.backup): keys leave only sealed under a passphrase, each bound to its entry's name,
provider and base URL; import merges by name, under the same rules as an owner's edit."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.configurations.backup import (
    UNSET_KEY,
    ExportDocument,
    ImportReport,
    build_export,
    check_document,
    checked_entries,
    merge_existing,
)
from gateway.configurations.crud import CLEARED_KEY, Policy
from gateway.crypto.keyring import KeyRing
from gateway.store.models import LLMConfiguration
from gateway.teams.configurations import (
    Access,
    KeyReader,
    create_team_configuration,
    list_team_configurations,
    set_team_key,
    update_team_configuration,
)
from gateway.teams.defaults import team_default_id
from gateway.teams.membership import Membership, membership


async def export_team_configurations(session: AsyncSession, *, keyring: KeyRing, user_id: uuid.UUID,
                                     team_id: uuid.UUID | str, passphrase: str | None) -> ExportDocument:
    """The team's configurations (owners); keys only when a passphrase is given."""
    await membership(session, user_id=user_id, team_id=team_id, owner=True)
    configs, _ = await list_team_configurations(session, user_id=user_id, team_id=team_id)
    reader = KeyReader(session, keyring)

    async def key_of(config: LLMConfiguration) -> str | None:
        key = await reader.plaintext(config)
        return None if key == CLEARED_KEY else key

    return await build_export(configs, key_of=key_of, passphrase=passphrase,
                              default_id=await team_default_id(session, user_id=user_id))


async def _by_name(session: AsyncSession, team_id: uuid.UUID) -> dict[str, LLMConfiguration]:
    rows = (await session.execute(select(LLMConfiguration).where(LLMConfiguration.team_id == team_id))).scalars()
    return {c.name: c for c in rows}


async def import_team_configurations(
    session: AsyncSession, *, keyring: KeyRing, policy: Policy, user_id: uuid.UUID, team_id: uuid.UUID | str,
    document: ExportDocument, passphrase: str | None, dry_run: bool, overwrite: bool,
) -> tuple[ImportReport, Membership]:
    """Merge an export into the team's configurations by name (owners; flushed, not committed). An entry
    without a key is created inactive with no key (an owner sets one later); defaults are members' own
    choices, so `is_default` is not imported."""
    member = await membership(session, user_id=user_id, team_id=team_id, owner=True, for_update=True)
    keys = await check_document(document, passphrase)
    report = ImportReport(dry_run=dry_run, keys_restored=bool(keys))
    existing = await _by_name(session, member.team.id)
    reader = KeyReader(session, keyring)
    touched: dict[str, LLMConfiguration] = {}
    for entry, base_url in checked_entries(document, policy, report):
        key, current = keys.get(entry.name), existing.get(entry.name)
        if current is None:
            report.created.append(entry.name)
            if key is None:
                report.needs_key.append(entry.name)
            if not dry_run:
                config, _ = await create_team_configuration(
                    session, keyring=keyring, policy=policy, user_id=user_id, team_id=member.team.id,
                    name=entry.name, provider=entry.provider, model=entry.model, api_key=key or UNSET_KEY,
                    base_url=base_url, is_active=entry.is_active and key is not None)
                if key is None:
                    await _clear_key(session, keyring, config)
                touched[entry.name] = config
            continue
        stored = await reader.plaintext(current)
        values = merge_existing(policy, report, current, entry, base_url=base_url, key=key, overwrite=overwrite,
                                stored_key=None if stored == CLEARED_KEY else stored)
        if values is not None and not dry_run:
            await update_team_configuration(session, keyring=keyring, policy=policy, access=Access(current, member),
                                            values=values, api_key=key)
            touched[entry.name] = current
    if not dry_run:
        await _link_fallbacks(session, keyring=keyring, policy=policy, member=member, document=document,
                              touched=touched)
    return report, member


async def _clear_key(session: AsyncSession, keyring: KeyRing, config: LLMConfiguration) -> None:
    await set_team_key(session, keyring, config, CLEARED_KEY)
    await session.flush()


async def _link_fallbacks(session: AsyncSession, *, keyring: KeyRing, policy: Policy, member: Membership,
                          document: ExportDocument, touched: dict[str, LLMConfiguration]) -> None:
    """Resolve fallback names, within the team, once every imported configuration exists."""
    by_name = {name: str(c.id) for name, c in (await _by_name(session, member.team.id)).items()}
    for entry in document.configurations:
        if entry.name in touched and entry.fallbacks:
            ids = [by_name[n] for n in entry.fallbacks if n in by_name and n != entry.name]
            await update_team_configuration(session, keyring=keyring, policy=policy,
                                            access=Access(touched[entry.name], member), values={"fallback_ids": ids})
