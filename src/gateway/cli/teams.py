"""`llm-gateway teams list|create|add-member|remove-member`: scripted onboarding straight on the database, no
token and no running gateway needed. Writes go through the teams service acting as one of the team's owners
(audited with actor `cli`) and reach running gateways as the API's writes do: one change per affected user."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.accounts.users import get_user_by_name
from gateway.cli.bootstrap import StartupError
from gateway.crypto.keyring import KeyRing
from gateway.store.changes import Change, ChangeBus
from gateway.store.models import Team, User
from gateway.teams.directory import acting_owner, all_teams, roles, team_by_name
from gateway.teams.members import add_member, remove_member
from gateway.teams.membership import MEMBER, OWNER, changes_for, create_team, member_ids

ACTOR = "cli"


def add_teams_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], run: Callable[[argparse.Namespace], int]
) -> None:
    """`teams list`, `teams create NAME --owner USER`, `teams add-member TEAM USER [--role]`, `teams remove-member`."""
    teams = sub.add_parser("teams", help="teams sharing configurations",
                           description="Teams for scripted onboarding; teams and members by name.")
    teams_sub = teams.add_subparsers(dest="action", required=True)
    teams_sub.add_parser("list", help="every team: id, name, members, owners")
    create = teams_sub.add_parser("create", help="create a team owned by a user")
    create.add_argument("name", help="the team's name (members call its configurations as <team>/<name>)")
    create.add_argument("--owner", required=True, help="user name of its first owner")
    add = teams_sub.add_parser("add-member", help="add a user to a team")
    add.add_argument("team", help="team name")
    add.add_argument("user", help="user name")
    add.add_argument("--role", choices=(MEMBER, OWNER), default=MEMBER)
    remove = teams_sub.add_parser("remove-member", help="remove a user from a team (never its last owner)")
    remove.add_argument("team", help="team name")
    remove.add_argument("user", help="user name")
    teams.set_defaults(func=run)


async def _user(session: AsyncSession, name: str) -> User:
    user = await get_user_by_name(session, name=name)
    if user is None:
        raise StartupError(f"no user named {name!r} (see `llm-gateway users list`)")
    return user


async def _team(session: AsyncSession, name: str) -> tuple[Team, dict[uuid.UUID, str]]:
    team = await team_by_name(session, name=name)
    if team is None:
        raise StartupError(f"no team named {name!r} (see `llm-gateway teams list`)")
    return team, await roles(session, team_id=team.id)


async def _acting_owner(session: AsyncSession, team: Team, *, not_: uuid.UUID | None = None) -> uuid.UUID:
    owner = await acting_owner(session, team_id=team.id, not_=not_)
    if owner is None:
        raise StartupError(f"team {team.name!r} has no owner")
    return owner


async def teams_list(session: AsyncSession) -> str:
    """One line a team: id, name, member count, owners."""
    lines = [f"{s.team.id}  {s.team.name}  {s.members} member{'' if s.members == 1 else 's'}"
             f"  owners: {', '.join(s.owners) or '-'}" for s in await all_teams(session)]
    return "\n".join(lines) or "no teams"


async def teams_write(session: AsyncSession, args: argparse.Namespace, keyring: KeyRing | None, max_teams: int
                      ) -> tuple[str, list[Change]]:
    """Create a team or change its members; returns what to print and the changes to commit with it."""
    if args.action == "create":
        owner = await _user(session, args.owner)
        assert keyring is not None, "creating a team makes its data key"
        team = await create_team(session, keyring=keyring, user_id=owner.id, actor=ACTOR, name=args.name,
                                 max_teams=max_teams)
        return f"created team {team.name} ({team.id}) owned by {owner.name}", changes_for([owner.id])
    team, members = await _team(session, args.team)
    user = await _user(session, args.user)
    if args.action == "add-member":
        await add_member(session, user_id=await _acting_owner(session, team), actor=ACTOR, team_id=team.id,
                         user_name=user.name, role=args.role, max_teams=max_teams)
        changed = await member_ids(session, team_id=team.id)
        return f"added {user.name} to {team.name} as {args.role}", changes_for(changed)
    if user.id not in members:
        raise StartupError(f"{user.name!r} is not a member of team {team.name!r}")
    await remove_member(session, user_id=await _acting_owner(session, team, not_=user.id), actor=ACTOR,
                        team_id=team.id, member_id=user.id)
    return f"removed {user.name} from {team.name}", changes_for(set(members))


def work(args: argparse.Namespace, keyring: KeyRing | None, *, max_teams: int
         ) -> Callable[[AsyncSession], Awaitable[str]]:
    """The command's work on an open session: a listing, or a write committed with its change notifications
    (running gateways drop their caches of these users, so a removed member is refused at once)."""

    async def run(session: AsyncSession) -> str:
        if args.action == "list":
            return await teams_list(session)
        text, changes = await teams_write(session, args, keyring, max_teams)
        await ChangeBus().commit(session, *changes)
        return text

    return run
