"""`llm-gateway import litellm-config FILE --user NAME [--dry-run]`: a LiteLLM proxy's model_list as that user's
configurations, straight on the database (keys encrypted by the gateway, running gateways told at once). The
report names what was created, what needs a key and what had no equivalent; it never holds a key."""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.accounts.users import get_user_by_name
from gateway.cli.bootstrap import StartupError
from gateway.configurations.backup import merge_configurations
from gateway.configurations.crud import Policy
from gateway.crypto.keyring import KeyRing
from gateway.errors import Unprocessable
from gateway.imports.litellm_config import LiteLLMImportReport, parse, plan
from gateway.store.changes import Change, ChangeBus

MAX_FILE_BYTES = 4 * 1024 * 1024


def add_import_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], run: Callable[[argparse.Namespace], int]
) -> None:
    """`import litellm-config FILE --user NAME [--dry-run]`."""
    imports = sub.add_parser("import", help="import configurations from another gateway")
    kinds = imports.add_subparsers(dest="kind", required=True)
    litellm = kinds.add_parser(
        "litellm-config", help="a LiteLLM proxy config.yaml's model_list as one user's configurations",
        description="Each model_list entry becomes a configuration named after its model_name; os.environ/NAME "
        "keys are read from this environment now; entries without a key are created inactive.")
    litellm.add_argument("file", type=Path, help="LiteLLM's config.yaml")
    litellm.add_argument("--user", required=True, help="user name of the configurations' owner (must exist)")
    litellm.add_argument("--dry-run", action="store_true", help="report what would happen, write nothing")
    imports.set_defaults(func=run)


def read_config(path: Path) -> object:
    """The YAML document in `path`; a one-line error for a file that is missing, too large or not YAML."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise StartupError(f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StartupError(f"{path}: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError):
        # The parser's message quotes the offending line, which may hold a key.
        raise StartupError(f"{path}: not valid YAML") from None


def work(args: argparse.Namespace, keyring: KeyRing, policy: Policy) -> Callable[[AsyncSession], Awaitable[str]]:
    """The import as one transaction on `session`, committed with a change notice unless a dry run."""
    try:
        mapped = plan(parse(read_config(args.file)), policy.catalog, os.environ)
    except Unprocessable as exc:
        raise StartupError(f"{args.file}: {exc.message}") from None

    async def run(session: AsyncSession) -> str:
        user = await get_user_by_name(session, name=args.user)
        if user is None:
            raise StartupError(f"no user named {args.user!r} (see `llm-gateway users list`)")
        report = await merge_configurations(session, keyring=keyring, policy=policy, user_id=user.id,
                                            document=mapped.document, keys=mapped.keys, dry_run=args.dry_run,
                                            overwrite=False)
        if not args.dry_run:
            await ChangeBus().commit(session, Change("configurations", str(user.id)))
        return LiteLLMImportReport(**report.model_dump(), user=user.name, not_mapped=mapped.not_mapped,
                                   missing_keys=mapped.missing_keys).model_dump_json(indent=2)

    return run
