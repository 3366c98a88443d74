"""Company login in a real browser: a person signs in through the OpenID provider's own login
page (npm oidc-provider on loopback, tests/oidc), lands on their role's page, signs out here and
at the provider, and at their next sign-in has the role their groups give them then."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from cratos.roles import ensure_roles
from tests.factories import RedeployWorkOrderFactory
from tests.identity.servers import ROLE_GROUPS, TEAM_GROUPS, OpenIDProvider

from .conftest import TIMEOUT_MS


@pytest.fixture(scope="module")
def openid_provider() -> Iterator[OpenIDProvider]:
    with OpenIDProvider() as provider:
        yield provider


@pytest.fixture
def company_login(live_server, settings, openid_provider) -> OpenIDProvider:
    """The live server pointed at the provider, registered there as a client of its own."""
    ensure_roles()
    RedeployWorkOrderFactory()  # its Approvers node is what makes an approver
    for name, value in openid_provider.register_client(live_server.url).items():
        setattr(settings, name, value)
    settings.AUTHENTICATION_BACKENDS = [
        "cratos.identity.backends.CompanyOIDCBackend",
        "cratos.identity.backends.LocalPasswordBackend",
    ]
    settings.DIRECTORY_ROLE_GROUPS = ROLE_GROUPS
    settings.DIRECTORY_TEAM_GROUPS = TEAM_GROUPS
    return openid_provider


def sign_in_at_provider(page: Page, username: str, screenshots=None) -> None:
    page.get_by_role("button", name="Sign in with Test IdP").click()
    expect(page.get_by_role("heading", name="Test IdP")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(OpenIDProvider.PASSWORD)
    if screenshots:
        screenshots(page, "company-login-provider")
    page.get_by_role("button", name="Log in").click()


def test_an_approver_signs_in_at_the_provider_and_a_removed_group_is_gone_next_time(
    chromium, live_server, company_login, screenshots
):
    company_login.set_account("olivia", groups=["cratos-approvers", "team-shop"])
    context = chromium.new_context(
        base_url=live_server.url, locale="en-US", viewport={"width": 1280, "height": 800}
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto("/accounts/login/")
        screenshots(page, "company-login")
        sign_in_at_provider(page, "olivia", screenshots)

        expect(page).to_have_url(f"{live_server.url}/approvals/")
        expect(page.get_by_role("heading", name="Waiting for my vote")).to_be_visible()
        expect(page.locator(".site-username")).to_have_text("olivia")
        screenshots(page, "company-login-approver-landed")

        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_role("heading", name="Sign out of Test IdP?")).to_be_visible()
        page.get_by_role("button", name="Yes, sign me out").click()
        expect(page).to_have_url(f"{live_server.url}/accounts/login/")

        # Moved out of the approvers: the provider asks for the password again (its session
        # ended too), and she comes back a requester only.
        company_login.set_account("olivia", groups=["cratos-requesters"])
        sign_in_at_provider(page, "olivia")
        expect(page).to_have_url(f"{live_server.url}/tickets/")
        expect(page.get_by_role("heading", name="My tickets")).to_be_visible()
        expect(page.get_by_role("link", name="Approvals")).to_have_count(0)
        screenshots(page, "company-login-requester-landed")
    finally:
        context.close()
