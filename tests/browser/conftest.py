"""Browser fixtures: Debian's chromium, driven by Playwright, against pytest-django's live server
(transactional database, real Redis), with the Kubernetes API simulator as the cluster and the
journey's people: alice (requester), bob (approver) and carol (reviewer).

Each person browses in an own browser context (own cookies), so their sessions never mix.
Screenshots land in test-artifacts/browser/ as NN-name.png, numbered in the order taken.
"""

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import Browser, Page, expect, sync_playwright

from cratos.roles import ensure_roles
from tests.browser.checks import CHROMIUM, CHROMIUM_ARGS, check_page
from tests.factories import (
    ApplicationFactory,
    BindingFactory,
    ClusterFactory,
    RedeployWorkOrderFactory,
    UserFactory,
)
from tests.kubesim import KubeSimulator

ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts" / "browser"
PASSWORD = "browser-pw-123"
SIM_TOKEN = "sim-token-for-browser-tests"
# A rollout replaces one pod per step: with 3 replicas it runs for about 4 s, long enough for
# the operation page (polling every 2 s) to show it in progress, short enough to keep the
# journey quick.
ROLLOUT_STEP_SECONDS = 0.8
REPLICAS = 3
TIMEOUT_MS = 10_000


@pytest.fixture(scope="module", autouse=True)
def _orm_beside_playwright() -> Iterator[None]:
    # Playwright's sync API keeps an asyncio event loop running in the test's thread, so
    # Django takes every ORM call made by the test (fixtures, asserts) for a call from async
    # code and raises SynchronousOnlyOperation. Those calls are plain synchronous code that
    # Playwright merely shares the thread with, so the check is lifted, for these tests only.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture(scope="module")
def chromium(_orm_beside_playwright) -> Iterator[Browser]:
    """Debian's chromium, headless. Never downloaded: when it is missing the tests fail."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"The browser tests need Debian's chromium at {CHROMIUM} "
            "(apt-get install chromium); Playwright's own browser downloads are not used."
        )
    # Module scope, not session: the event loop must stop before other test modules run.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


class Screenshots:
    """Full-page screenshots numbered in the order taken: test-artifacts/browser/NN-name.png."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.taken: list[Path] = []
        self.site = ""  # the live server's URL, set by `browse`
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("*.png"):
            old.unlink()

    def __call__(self, page: Page, name: str) -> Path:
        """Takes the picture, then checks the page if it is the product's (not, say, an
        identity provider's): no sideways scroll, no serious or critical axe-core violation
        (tests/browser/checks.py)."""
        path = self.directory / f"{len(self.taken) + 1:02d}-{name}.png"
        page.screenshot(path=path, full_page=True)
        self.taken.append(path)
        if self.site and page.url.startswith(self.site):
            check_page(page)
        return path


@pytest.fixture(scope="session")
def screenshots() -> Screenshots:
    return Screenshots(ARTIFACTS)


_reports = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    # Lets the `browse` fixture see whether the test failed, to keep a picture of each page.
    report = yield
    item.stash.setdefault(_reports, {})[report.when] = report
    return report


def log_in(page: Page, user) -> None:
    """Signs in through the login page, as a person would (in any language)."""
    page.locator("input[name=username]").fill(user.username)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("main form button[type=submit]").click()
    expect(page.locator(".site-username")).to_have_text(user.username)


@pytest.fixture
def browse(chromium, live_server, screenshots, request) -> Iterator[Callable[..., Page]]:
    """`browse(user)`: a page of a fresh browser context, signed in as `user` through the
    login page (`browse(None)`: not signed in, on the login page)."""
    pages: dict[str, Page] = {}
    screenshots.site = live_server.url

    def open_page(user, *, screenshot_login: bool = False, locale: str = "en-US") -> Page:
        context = chromium.new_context(
            base_url=live_server.url,
            locale=locale,
            timezone_id="UTC",
            viewport={"width": 1280, "height": 800},
            accept_downloads=True,
            # axe-core goes in as an inline script, which the product's CSP (rightly) refuses.
            bypass_csp=True,
        )
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        page.goto("/")
        expect(page).to_have_url(f"{live_server.url}/accounts/login/?next=/")
        if screenshot_login:
            screenshots(page, "login")
        if user is not None:
            log_in(page, user)
        pages[f"{user.username if user else 'anonymous'}-{locale}"] = page
        return page

    yield open_page
    call = request.node.stash.get(_reports, {}).get("call")
    for who, page in pages.items():
        if call is not None and call.failed:
            page.screenshot(path=ARTIFACTS / f"failed-{who}.png", full_page=True)
        page.context.close()


@dataclass
class Journey:
    alice: object
    bob: object
    carol: object
    application: object
    binding: object
    sim: KubeSimulator


@pytest.fixture
def sim() -> Iterator[KubeSimulator]:
    with KubeSimulator(token=SIM_TOKEN, rollout_step_seconds=ROLLOUT_STEP_SECONDS) as simulator:
        yield simulator


@pytest.fixture
def journey(live_server, settings, sim) -> Journey:
    """The world of the journey, in the live server's (transactional) database.

    The flush between transactional tests removes what the migrations created (the redeploy
    work order, the role groups), so they are made again here.
    """
    settings.KUBERNETES_REQUEST_TIMEOUT = 2.0
    settings.KUBERNETES_RETRY_BACKOFF = 0.05
    settings.REDEPLOY_ROLLOUT_POLL_SECONDS = 0.2
    ensure_roles()
    RedeployWorkOrderFactory()
    # UserFactory hashes the password it is given.
    alice = UserFactory(username="alice", password=PASSWORD, groups=["Requesters"])
    bob = UserFactory(username="bob", password=PASSWORD, groups=["Approvers"], is_staff=True)
    carol = UserFactory(username="carol", password=PASSWORD, groups=["Reviewers"])
    application = ApplicationFactory(
        name="web",
        description="The shop's storefront",
        tags=[{"key": "team", "value": "shop"}, {"key": "tier", "value": "frontend"}],
    )
    ApplicationFactory(name="api", tags=[{"key": "team", "value": "shop"}])
    cluster = ClusterFactory(name="sim", server=sim.url, token=SIM_TOKEN)
    sim.add_deployment("shop", "web", replicas=REPLICAS)
    binding = BindingFactory(
        application=application, cluster=cluster, namespace="shop", deployment_name="web"
    )
    return Journey(alice, bob, carol, application, binding, sim)
