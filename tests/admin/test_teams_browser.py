"""Teams on the web page, in real Chromium against a real gateway and a fake OpenAI upstream.

An owner creates a team, invites a member (an unknown name is answered exactly alike), adds a team configuration
and shares a personal one into the team; the refusal to demote the last owner is the API's own words. The member,
in another browser context with its own token, accepts the invitation from the page, sees the team's
configurations with their badge and masked, tests one, makes one its default, and has none of the owner's
controls.
"""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import expect

from tests.admin.browser import DESKTOP, PHONE, dom_text_and_values, screenshot
from tests.admin.test_ui_browser import COLD_CATALOG_MS, open_page, row, sign_in
from tests.factories import ApiUser, make_configuration, make_user
from tests.fakes.openai_upstream import start_openai_upstream
from tests.leakwatch import watched

TEAM_KEY = "sk-team-shared-key-0123456789abcdefT1"
OWN_KEY = "sk-own-personal-key-9876543210fedcbaP2"

expect.set_options(timeout=15_000)


async def api_error(
    client: TestClient, user: ApiUser, method: str, path: str, body: dict[str, Any]
) -> tuple[int, str]:
    """The status and envelope message the API gives for a request (to compare with what the page shows)."""
    resp = await client.request(method, path, json=body, headers=user.headers)
    return resp.status, (await resp.json())["error"]["message"]


async def create_team(page: Any, name: str) -> None:
    """"New team" → the team's panel."""
    await page.get_by_role("button", name="New team").click()
    dialog = page.get_by_role("dialog")
    await dialog.get_by_label("Team name").fill(name)
    await dialog.get_by_role("button", name="Create team").click()
    await expect(dialog).to_be_hidden()
    await expect(page.get_by_role("heading", name=f"Team {name}")).to_be_visible()


async def invite(page: Any, user: str) -> None:
    """The owner's "Invite" form, role left at member; the page says the same whatever the name."""
    form = page.get_by_role("form", name="Invite a member")
    await form.get_by_label("User name").fill(user)
    await form.get_by_role("button", name="Invite").click()
    await expect(page.locator("#toasts")).to_contain_text(f"Invited {user} to research: they join when they accept.")


async def add_team_configuration(page: Any, *, name: str, base_url: str) -> None:
    """"Add team configuration" opens the usual dialog inside the team."""
    await page.get_by_role("button", name="Add team configuration").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_be_visible(timeout=COLD_CATALOG_MS)
    await expect(dialog.get_by_role("heading", name="Add a configuration to team research")).to_be_visible()
    await dialog.get_by_label("Name").fill(name)
    await dialog.get_by_label("Model").fill("gpt-4o-mini")
    await dialog.get_by_label("API key", exact=True).fill(TEAM_KEY)
    await dialog.get_by_label("Base URL").fill(base_url)
    await dialog.get_by_role("button", name="Add configuration").click()
    await expect(dialog).to_be_hidden()


async def owner_steps(page: Any, client: TestClient, alice: ApiUser, bob: ApiUser, fake_url: str) -> str:
    """Alice: team, members (with both refusals), a team configuration, a share; returns the team's id."""
    await create_team(page, "research")
    team_id = page.url.split("team=", 1)[1]
    panel = page.locator('.team-panel[data-team="research"]')

    await invite(page, "nobody-here")
    resp = await client.post(f"/api/teams/{team_id}/members", json={"user": "nobody-here"}, headers=alice.headers)
    assert resp.status == 202
    await invite(page, bob.name)
    await expect(panel.locator(f'tr[data-member="{bob.name}"]')).to_have_count(0)  # not until bob accepts

    # The last owner cannot demote herself: the page shows the API's refusal and keeps her the owner.
    status, message = await api_error(
        client, alice, "PATCH", f"/api/teams/{team_id}/members/{alice.id}", {"role": "member"})
    assert status in (403, 409)
    await panel.get_by_label(f"Role of {alice.name}").select_option("member")
    await expect(page.locator("#toasts")).to_contain_text(message)
    await expect(panel.get_by_label(f"Role of {alice.name}")).to_have_value("owner")

    await add_team_configuration(page, name="shared-gpt", base_url=fake_url)
    shared = row(page, "shared-gpt")
    await expect(shared.locator('.tag-team[data-team="research"]')).to_be_visible()
    await expect(shared.get_by_role("button", name="Edit shared-gpt")).to_be_visible()
    await screenshot(page, "team-owner")

    # Share a personal configuration into the team, under another name; the key never reaches the page.
    await page.get_by_label("Show", exact=True).select_option(label="Personal")
    await expect(row(page, "own-gpt")).to_be_visible()
    await expect(row(page, "shared-gpt")).to_have_count(0)
    await row(page, "own-gpt").get_by_role("button", name="Share own-gpt with a team").click()
    dialog = page.get_by_role("dialog")
    await dialog.get_by_label("Team", exact=True).select_option(label="research")
    await dialog.get_by_label("Name in the team").fill("own-gpt-shared")
    await dialog.get_by_role("button", name="Share").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#toasts")).to_contain_text("Shared own-gpt with research as own-gpt-shared.")
    listed = await (await client.get(f"/api/teams/{team_id}/llm-configurations", headers=alice.headers)).json()
    assert sorted(c["name"] for c in listed["items"]) == ["own-gpt-shared", "shared-gpt"]
    assert all(c["team"] == {"id": team_id, "name": "research"} for c in listed["items"])
    return team_id


async def member_steps(page: Any, client: TestClient, bob: ApiUser, team_id: str) -> None:
    """Bob: accepts the invitation; the team's configurations with their badge, test and default; none of the
    owner's controls."""
    invitations = page.get_by_role("region", name="Team invitations")
    await expect(invitations).to_contain_text("team-alice invites you to team research as member.")
    await invitations.get_by_role("button", name="Accept the invitation to research").click()
    await expect(page.locator("#toasts")).to_contain_text("You joined research as member.")
    await expect(page.locator('.team-panel[data-team="research"]')).to_be_visible()
    await expect(page.get_by_role("region", name="Team invitations")).to_have_count(0)
    await page.goto("/ui/")
    shared = row(page, "shared-gpt")
    await expect(shared.locator('.tag-team[data-team="research"]')).to_be_visible()
    await expect(row(page, "own-gpt-shared")).to_be_visible()
    for control in ("Edit shared-gpt", "Delete shared-gpt", "Share shared-gpt with a team"):
        await expect(shared.get_by_role("button", name=control)).to_have_count(0)
    await expect(shared.get_by_label("Select shared-gpt")).to_have_count(0)

    await shared.get_by_role("button", name="Test shared-gpt").click()
    await expect(shared.locator(".status")).to_have_attribute("data-status", "success")
    await shared.get_by_role("button", name="Make shared-gpt the default").click()
    await expect(shared.locator(".cell-default")).to_have_text("Default")
    listed = await (await client.get("/api/llm-configurations", headers=bob.headers)).json()
    assert [c["name"] for c in listed["items"] if c["is_default"]] == ["shared-gpt"]

    # The team's own view: the members panel without controls, no "Add team configuration", no "Delete team".
    await page.get_by_label("Show", exact=True).select_option(label="research (member)")
    panel = page.locator('.team-panel[data-team="research"]')
    await expect(panel).to_contain_text("You are a member")
    await expect(panel.locator(f'tr[data-member="{bob.name}"] .cell-role')).to_have_text("member")
    await expect(panel.locator("select")).to_have_count(0)
    for control in ("Remove", "Delete team", "Invite"):
        await expect(panel.get_by_role("button", name=control)).to_have_count(0)
    await expect(page.get_by_role("button", name="Add team configuration")).to_be_hidden()
    await expect(page.locator("tbody tr[data-name]")).to_have_count(2)
    await screenshot(page, "team-member")

    # Settings shows the team default with its key masked.
    await page.get_by_role("link", name="Settings").click()
    await expect(page.get_by_role("combobox", name="Default configuration")).to_contain_text("research/shared-gpt")
    await expect(page.locator("[data-masked-key]")).to_have_text(f"{TEAM_KEY[:4]}...{TEAM_KEY[-4:]}")


async def test_owner_and_member_share_a_team(  # type: ignore[no-untyped-def]
    browser: Any, gateway: tuple[TestServer, TestClient], aiohttp_server
) -> None:
    server, client = gateway
    watched(TEAM_KEY, "test_teams_browser TEAM_KEY")
    fake = await start_openai_upstream(aiohttp_server, keys=(TEAM_KEY, OWN_KEY))
    alice = await make_user(client, "team-alice")
    bob = await make_user(client, "team-bob")
    await make_configuration(client, alice, name="own-gpt", api_key=OWN_KEY, base_url=fake.url)

    owner_context, owner_page, owner_seen = await open_page(browser, server)
    await sign_in(owner_page, alice.token)
    team_id = await owner_steps(owner_page, client, alice, bob, fake.url)

    member_context, member_page, member_seen = await open_page(browser, server)
    await sign_in(member_page, bob.token)
    await member_steps(member_page, client, bob, team_id)
    assert fake.requests[-1].api_key == TEAM_KEY

    # The owner's team view fits a phone: the members panel included, nothing scrolls sideways.
    await owner_page.set_viewport_size(PHONE)
    await owner_page.goto(f"/ui/?team={team_id}")
    await expect(owner_page.get_by_role("form", name="Invite a member")).to_be_visible()
    overflow = await owner_page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the team view scrolls sideways by {overflow}px at 375 px"
    await screenshot(owner_page, "team-owner-375px")

    # With bob an owner too, alice may step down: the page is drawn again with her new role, owner controls gone.
    await owner_page.set_viewport_size(DESKTOP)
    panel = owner_page.locator('.team-panel[data-team="research"]')
    await panel.get_by_label(f"Role of {bob.name}").select_option("owner")
    await expect(owner_page.locator("#toasts")).to_contain_text(f"{bob.name} is now an owner of research.")
    await panel.get_by_label(f"Role of {alice.name}").select_option("member")
    await expect(panel).to_contain_text("You are a member")
    await expect(owner_page.get_by_role("form", name="Invite a member")).to_have_count(0)
    await expect(owner_page.get_by_role("button", name="Add team configuration")).to_be_hidden()

    for page in (owner_page, member_page):
        leak = await dom_text_and_values(page)
        assert TEAM_KEY not in leak and OWN_KEY not in leak and TEAM_KEY[4:-4] not in leak
    owner_seen.assert_clean()
    member_seen.assert_clean()
    await owner_context.close()
    await member_context.close()


async def test_a_gateway_user_without_teams_sees_no_team_controls_but_may_start_one(
    browser: Any, gateway: tuple[TestServer, TestClient]
) -> None:
    server, client = gateway
    carol = await make_user(client, "team-carol")
    await make_configuration(client, carol, name="solo")
    context, page, seen = await open_page(browser, server)
    await sign_in(page, carol.token)
    solo = row(page, "solo")
    await expect(solo.get_by_role("button", name="Edit solo")).to_be_visible()
    await expect(solo.get_by_role("button", name="Share solo with a team")).to_have_count(0)
    await expect(solo.locator(".tag-team")).to_have_count(0)
    await expect(page.get_by_role("button", name="New team")).to_be_visible()
    seen.assert_clean()
    await context.close()
