"""The product's journey in a real browser: alice files a redeploy ticket, bob approves it in the
Django admin, alice redeploys and watches the rollout finish, and carol finds it all in the
audit log and exports it as CSV."""

import csv
import io
import re

import pytest
from playwright.sync_api import Page, expect

from redeploy.models import RedeployOperation
from tickets.models import Ticket

# The redeploy runs in a thread of the live server; the simulated rollout takes a few seconds.
ROLLOUT_TIMEOUT_MS = 20_000
# The ticket's audit trail. "redeploy.requested" is not in it: the ticket is known only once
# the task consumed the authorization; the request event links to the operation instead.
TICKET_ACTIONS = {
    "ticket.created",
    "ticket.entry_added",
    "ticket.submitted",
    "ticket.approved",
    "authorization.minted",
    "authorization.consumed",
    "redeploy.started",
    "redeploy.succeeded",
    "rollout.complete",
    "ticket.completed",
}


def file_ticket(page: Page, screenshots) -> str:
    """alice files and submits a ticket for `web`; returns its number."""
    screenshots(page, "my-tickets-empty")
    page.get_by_role("link", name="New ticket", exact=True).click()
    expect(page.get_by_role("heading", name="New redeploy ticket")).to_be_visible()
    page.get_by_role("checkbox", name="web").check()
    page.get_by_label("Reason").fill("Pick up the rotated database password")
    screenshots(page, "new-ticket")
    page.get_by_role("button", name="Save and submit").click()

    ticket_no = re.fullmatch(r".*/tickets/([^/]+)/", page.url).group(1)
    expect(page.get_by_role("status")).to_have_text(
        f"Ticket {ticket_no} was submitted for approval."
    )
    expect(page.locator("h1 .badge")).to_have_text("In approval")
    expect(page.locator(".current-node")).to_contain_text("may decide: bob")
    expect(page.locator(".entries-table tbody td")).to_have_text(["web", "team:shop,tier:frontend"])
    screenshots(page, "ticket-submitted")
    return ticket_no


def approve_in_admin(page: Page, ticket_no: str, screenshots) -> None:
    """bob opens the ticket in the admin and approves it through the confirmation page."""
    page.goto("/admin/tickets/ticket/")
    row = page.locator("#result_list tbody tr").filter(has_text=ticket_no)
    expect(row).to_contain_text("alice")
    expect(row).to_contain_text("In Approval")
    screenshots(page, "admin-tickets")
    row.get_by_role("link", name=ticket_no).click()
    screenshots(page, "admin-ticket")
    page.locator(".object-tools").get_by_role("link", name="Approve", exact=True).click()

    expect(page.locator("#content h2")).to_contain_text(ticket_no)
    expect(page.locator("#content table")).to_contain_text("web")
    page.get_by_label("Comment").fill("Go ahead")
    screenshots(page, "admin-approve-confirmation")
    page.get_by_role("button", name="Approve").click()

    expect(page.locator(".messagelist .success")).to_have_text(f"Ticket {ticket_no} approved.")
    expect(page.locator(".field-state .readonly")).to_have_text("Approved")
    screenshots(page, "admin-ticket-approved")


def see_authorization(page: Page, ticket_no: str, screenshots) -> None:
    # The approved ticket names the next step: Redeploy, with the time left.
    page.goto(f"/tickets/{ticket_no}/")
    expect(page.locator("h1 .badge")).to_have_text("Approved")
    step = page.locator("#next-step li")
    expect(step.get_by_role("button", name="Redeploy")).to_be_visible()
    expect(step.locator("[data-seconds-left]")).to_have_text(re.compile(r"^(2h 0m|1h 59m)$"))
    screenshots(page, "ticket-approved")
    page.get_by_role("link", name="My authorizations").click()
    row = page.locator(".authorizations-table tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(0)).to_have_text("web")
    expect(row.locator("td").nth(1)).to_have_text(ticket_no)
    # Two hours from the approval a moment ago.
    expect(row.locator("[data-seconds-left]")).to_have_text(re.compile(r"^(2h 0m|1h 59m)$"))
    screenshots(page, "my-authorizations")


def redeploy_and_watch(page: Page, ticket_no: str, screenshots) -> None:
    """alice redeploys `web` from her authorization and follows the rollout on the page."""
    page.locator(".authorizations-table tbody tr").get_by_role("button", name="Redeploy").click()
    # The only binding of `web` fills in the rest of the form.
    expect(page.get_by_label("Application name")).to_have_value("web")
    expect(page.get_by_label("Namespace")).to_have_value("shop")
    expect(page.get_by_label("Deployment name")).to_have_value("web")
    screenshots(page, "redeploy-form")
    page.get_by_role("button", name="Continue").click()

    expect(page.get_by_role("heading", name="Confirm the redeploy")).to_be_visible()
    expect(page.locator(".confirm-redeploy header")).to_contain_text(f"ticket {ticket_no}")
    for field, value in {
        "application": "web",
        "namespace": "shop",
        "deployment": "web",
        "clusters": "sim",
    }.items():
        expect(page.locator(f"[data-confirm={field}]")).to_have_text(value)
    screenshots(page, "redeploy-confirmation")
    page.get_by_role("button", name="Redeploy now").click()

    expect(page).to_have_url(re.compile(r"/redeploy/operations/[0-9a-f-]{36}/$"))
    state = page.locator("h1 [data-op-field=state]")
    expect(state).to_have_text(re.compile("^(Queued|Running)$"))
    # Marks this document: still marked at the end means no full reload showed the result.
    page.evaluate("window.followedLive = true")
    row = page.locator("[data-targets] tr[data-target-id]")
    expect(row.locator("[data-field=state]")).to_have_text(
        "Rolling out", timeout=ROLLOUT_TIMEOUT_MS
    )
    screenshots(page, "operation-rolling-out")

    expect(state).to_have_text("Succeeded", timeout=ROLLOUT_TIMEOUT_MS)
    assert page.evaluate("window.followedLive") is True
    expect(row.locator("[data-field=state]")).to_have_text("Succeeded")
    expect(row.locator("[data-field=cluster]")).to_have_text("sim")
    expect(row.locator("[data-field=updatedReplicas]")).to_have_text("3")
    expect(row.locator("[data-field=availableReplicas]")).to_have_text("3")
    expect(page.locator(".alert[data-op-field=message]")).to_have_text(
        'deployment "web" successfully rolled out'
    )
    screenshots(page, "operation-succeeded")

    page.locator("[data-op-field=ticketNo]").get_by_role("link", name=ticket_no).click()
    expect(page.locator("h1 .badge")).to_have_text("Completed")
    cells = page.locator(".redeploys-table tbody tr td")
    expect(cells.nth(0)).to_have_text("sim")
    expect(cells.nth(1)).to_have_text("shop")
    expect(cells.nth(2)).to_have_text("web")
    expect(cells.nth(4)).to_contain_text("Succeeded")
    screenshots(page, "ticket-completed")


def redeploy_refused(page: Page, screenshots) -> None:
    """The authorization is used up: a second redeploy is refused next to the form."""
    page.get_by_role("link", name="Redeploy", exact=True).click()
    expect(page.get_by_role("heading", name="No live authorization")).to_be_visible()
    page.get_by_label("Application name").fill("web")
    page.get_by_label("Namespace").fill("shop")
    page.get_by_label("Deployment name").fill("web")
    page.get_by_role("button", name="Continue").click()
    expect(page.locator("#form-errors")).to_have_text("Unauthorized access")
    # The refusal names its reason and the next step.
    reason = page.locator(".refusal-reason")
    expect(reason).to_contain_text("for web was already used, on ")
    expect(reason.get_by_role("link", name="Open the operation that used it")).to_be_visible()
    expect(reason.get_by_role("button", name="File a new ticket for web")).to_have_attribute(
        "href", "/tickets/new/?work_order=APPLICATION_REDEPLOY&application=web"
    )
    expect(page.get_by_label("Application name")).to_have_value("web")
    screenshots(page, "redeploy-refused")


def audit_and_export(page: Page, ticket_no: str, screenshots) -> None:
    """carol lands on the audit page, finds the ticket's events and exports them as CSV."""
    expect(page).to_have_url(re.compile("/audit/$"))
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    screenshots(page, "audit")
    page.get_by_label("Ticket no.").fill(ticket_no)
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(page).to_have_url(re.compile(f"ticket_no={ticket_no}"))
    rows = page.locator(".audit-table tbody tr")
    expect(rows).to_have_count(len(TICKET_ACTIONS))
    expect(rows.first).to_contain_text("ticket.completed")
    screenshots(page, "audit-filtered")

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Export CSV").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    with open(download.path(), encoding="utf-8-sig") as exported:
        events = list(csv.DictReader(io.StringIO(exported.read())))
    assert {event["Ticket"] for event in events} == {ticket_no}
    assert {event["Action"] for event in events} == TICKET_ACTIONS
    assert len(events) == len(TICKET_ACTIONS)

    # The refused second attempt is there too, in the manual's words.
    page.get_by_label("Ticket no.").fill("")
    page.get_by_label("Outcome").select_option(label="Failure")
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("redeploy.refused")
    expect(rows).to_contain_text("alice")
    expect(rows.locator(".audit-message")).to_have_text("Unauthorized access")
    screenshots(page, "audit-refusals")


@pytest.mark.e2e
def test_ticket_approval_redeploy_audit(journey, browse, screenshots, settings):
    # The redeploy runs in a thread of the live server, as in the demo, so the request returns
    # at once and the operation page can show the rollout while it runs.
    settings.TASKS_IN_THREADS = True
    alice = browse(journey.alice, screenshot_login=True)
    ticket_no = file_ticket(alice, screenshots)

    bob = browse(journey.bob)
    approve_in_admin(bob, ticket_no, screenshots)

    alice.bring_to_front()
    see_authorization(alice, ticket_no, screenshots)
    redeploy_and_watch(alice, ticket_no, screenshots)
    redeploy_refused(alice, screenshots)

    carol = browse(journey.carol)
    audit_and_export(carol, ticket_no, screenshots)

    ticket = Ticket.objects.get(ticket_no=ticket_no)
    assert (ticket.state, ticket.success) == (Ticket.State.COMPLETED, True)
    operations = RedeployOperation.objects.order_by("created_at")
    assert [op.state for op in operations] == ["SUCCEEDED"]
    assert [r.method for r in journey.sim.requests if r.method == "PATCH"] == ["PATCH"]
