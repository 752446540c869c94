"""Endpoints that test configurations: unsaved, saved (result stored), and all of the caller's at once."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from admin.registry import ApiRegistry
from admin.schemas import Public, StrictBody, json_response
from gateway.checks.probe import STATUSES, TestResult
from gateway.checks.runs import Checker, SavedTestResult
from gateway.store.models import LLMConfiguration
from gateway.web.auth import caller_of
from gateway.web.requests import parse_body

api = ApiRegistry(tag="configuration tests")
TEST_ERRORS = (404, 422, 429)


class UnsavedTest(StrictBody):
    provider: str = Field(min_length=1, max_length=50)
    model: str = Field(min_length=1, max_length=200)
    api_key: str = Field(min_length=1, max_length=4096)
    base_url: str | None = Field(default=None, max_length=2048)


class TestSummary(Public):
    __test__ = False
    total: int
    success: int
    failed: int
    rate_limited: int
    timeout: int
    unreachable: int


class TestAllResult(Public):
    __test__ = False
    results: list[SavedTestResult]
    summary: TestSummary



def summarise(results: list[SavedTestResult]) -> TestSummary:
    """Counts per verdict class."""
    counts = {status: sum(r.status == status for r in results) for status in STATUSES}
    return TestSummary(total=len(results), **counts)


# Fixed paths are registered before the configurations module's `/llm-configurations/{id}` (see REGISTRIES).
@api.route("POST", "/llm-configurations/test", summary="Test an unsaved configuration; nothing is stored",
           body=UnsavedTest, response=TestResult, errors=(422, 429))
async def test_unsaved_handler(request: web.Request) -> web.Response:
    user_id = caller_of(request).require_user()
    body = await parse_body(request, UnsavedTest)
    result = await Checker.of(request.config_dict).test_unsaved(
        user_id=user_id, provider=body.provider, model=body.model, api_key=body.api_key, base_url=body.base_url
    )
    return json_response(result)


@api.route("POST", "/llm-configurations/test-all", summary="Test every active configuration of the caller",
           response=TestAllResult, errors=(429,))
async def test_all_handler(request: web.Request) -> web.Response:
    caller = caller_of(request)
    results = await Checker.of(request.config_dict).test_all(user_id=caller.require_user(), actor=caller.user_name)
    return json_response(TestAllResult(results=results, summary=summarise(results)))


@api.route("POST", "/llm-configurations/{id}/test", summary="Test a saved configuration and store the result",
           response=SavedTestResult, errors=TEST_ERRORS)
async def test_saved_handler(request: web.Request) -> web.Response:
    caller = caller_of(request)
    result = await Checker.of(request.config_dict).test_saved(
        user_id=caller.require_user(), configuration_id=request.match_info["id"], actor=caller.user_name
    )
    return json_response(result)


async def run_test_on_save(request: web.Request, session: AsyncSession, config: LLMConfiguration) -> SavedTestResult:
    """The create/update hook for `test_on_save`: call after the save is committed, in the same session.

    Stores the verdict on the row and updates `config` in place, so a response built from it shows the result."""
    caller = caller_of(request)
    return await Checker.of(request.config_dict).test_on_save(session, config, actor=caller.user_name,
                                                               tester=caller.user_id)
