"""The three journeys walked through a running demo (scripts/demo), one screenshot per page, for
the README (docs/screenshots/). Each page is also checked for sideways scroll and axe-core's
serious or critical violations; findings are printed, not fatal (the browser tests fail on them).

    python -m tests.browser.demo_journeys --url http://127.0.0.1:8090 --out docs/screenshots
"""

import argparse
import os
import re
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

from tests.browser.checks import CHROMIUM, CHROMIUM_ARGS, axe_violations, sideways_overflow

ROLLOUT_TIMEOUT_MS = 30_000


class Camera:
    def __init__(self, out: Path):
        self.out = out
        self.count = 0
        self.findings: list[str] = []
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("*.png"):
            old.unlink()

    def __call__(self, page: Page, name: str) -> None:
        self.count += 1
        page.screenshot(path=self.out / f"{self.count:02d}-{name}.png", full_page=True)
        overflow = sideways_overflow(page)
        if overflow:
            self.findings.append(f"{name}: scrolls sideways ({overflow})")
        self.findings += [f"{name}: {violation}" for violation in axe_violations(page)]


def sign_in(browser, url: str, username: str, password: str, language: str) -> Page:
    context = browser.new_context(
        base_url=url,
        viewport={"width": 1280, "height": 800},
        locale=language,
        bypass_csp=True,  # axe-core goes in as an inline script, which the CSP refuses
    )
    page = context.new_page()
    page.goto("/accounts/login/")
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill(password)
    page.locator("main form button[type=submit]").click()
    expect(page.locator(".site-username")).to_have_text(username)
    return page


def requester_files(page: Page, shoot: Camera) -> str:
    shoot(page, "requester-my-tickets")
    page.goto("/tickets/new/?application=web")
    page.locator("textarea[name=reason]").fill("Pick up the rotated database password")
    shoot(page, "requester-new-ticket")
    page.locator("button[value=submit]").click()
    ticket_no = re.fullmatch(r".*/tickets/([^/]+)/", page.url).group(1)
    shoot(page, "requester-ticket-waiting")
    return ticket_no


def approver_decides(page: Page, ticket_no: str, shoot: Camera) -> None:
    expect(page).to_have_url(re.compile("/approvals/$"))
    shoot(page, "approver-queue")
    page.locator(f"#ticket-{ticket_no} .approval-actions form").first.locator(
        "button[type=submit]"
    ).click()
    shoot(page, "approver-confirm")
    page.locator("form button[type=submit]:not(.secondary)").last.click()
    shoot(page, "approver-decided")


def requester_redeploys(page: Page, ticket_no: str, shoot: Camera) -> None:
    page.goto(f"/tickets/{ticket_no}/")
    shoot(page, "requester-ticket-approved")
    page.locator("#next-step a[role=button]").first.click()
    shoot(page, "requester-redeploy-form")
    page.locator("[data-redeploy-form] button[type=submit]").click()
    shoot(page, "requester-redeploy-confirm")
    page.locator(".confirm-redeploy button[type=submit]").click()
    expect(page.locator("h1 [data-op-field=state]")).to_have_attribute(
        "class", re.compile("badge-success"), timeout=ROLLOUT_TIMEOUT_MS
    )
    shoot(page, "requester-redeploy-succeeded")
    page.goto("/redeploy/operations/")
    shoot(page, "requester-my-redeploys")
    page.goto("/redeploy/?application=web")
    page.locator("[data-redeploy-form] button[type=submit]").click()
    shoot(page, "requester-refused-with-reason")


def reviewer_reads(page: Page, shoot: Camera) -> None:
    expect(page).to_have_url(re.compile("/audit/"))
    shoot(page, "reviewer-audit")
    page.goto("/dashboard/")
    shoot(page, "reviewer-dashboard")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--language", default="en")
    args = parser.parse_args(argv)
    password = os.environ.get("DEMO_PASSWORD", "cratos-demo")
    shoot = Camera(args.out)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        alice = sign_in(browser, args.url, "alice", password, args.language)
        ticket_no = requester_files(alice, shoot)
        bob = sign_in(browser, args.url, "bob", password, args.language)
        approver_decides(bob, ticket_no, shoot)
        requester_redeploys(alice, ticket_no, shoot)
        carol = sign_in(browser, args.url, "carol", password, args.language)
        reviewer_reads(carol, shoot)
        browser.close()
    print(f"{shoot.count} screenshots in {args.out}")
    for finding in shoot.findings:
        print(f"  check: {finding}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
