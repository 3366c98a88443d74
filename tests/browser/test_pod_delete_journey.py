"""Pod delete in a real browser: alice files an APPLICATION_DELETE_POD ticket, bob approves it in
the Django admin, alice picks two of the pods the worker lists, deletes them and watches the
operation until their replacements are Ready, and the ticket shows the seed's records table."""

import re

import pytest
from playwright.sync_api import Page, expect

from redeploy.models import PodDeletion
from tests.browser.test_journey import approve_in_admin
from tests.factories import DeletePodWorkOrderFactory
from tickets.models import Ticket

# The deletion runs in a thread of the live server; replacements are Ready a step later.
DELETION_TIMEOUT_MS = 20_000
LISTING_SECONDS = 30
RECORDS_HEADERS = [
    "Instance Name",
    "Namespace",
    "Deployment Name",
    "Pod Name",
    "Delete Operation Time",
    "Result",
]


def file_delete_pod_ticket(page: Page, screenshots) -> str:
    """alice, with no approval yet, files a pod-delete ticket for `web` from the pod page."""
    page.goto("/pod-deletions/new/")
    expect(page.get_by_role("heading", name="Delete pods of an application")).to_be_visible()
    page.get_by_role("link", name="File a ticket to delete pods").click()
    expect(page.get_by_text("Work order Application pod delete")).to_be_visible()
    page.get_by_role("checkbox", name="web").check()
    page.get_by_label("Reason").fill("Two pods hold stale connections")
    screenshots(page, "pod-delete-ticket")
    page.get_by_role("button", name="Save and submit").click()

    ticket_no = re.fullmatch(r".*/tickets/([^/]+)/", page.url).group(1)
    expect(page.locator("h1 .badge")).to_have_text("In approval")
    expect(page.locator(".entries-table tbody td")).to_have_text(["web", "team:shop,tier:frontend"])
    return ticket_no


def pick_and_delete(page: Page, ticket_no: str, screenshots) -> list[str]:
    """alice opens the pod table from her approval, deletes two pods and follows the operation
    to its end; returns the pods' names."""
    # Her ticket page, still open, updates itself once approved (a reload): wait for it, or the
    # reload could land after the click below.
    expect(page.locator("h1 .badge")).to_have_text("Approved", timeout=15_000)
    page.get_by_role("link", name="My authorizations").click()
    row = page.locator(".authorizations-table tbody tr")
    expect(row.locator("td").nth(1)).to_have_text(ticket_no)
    row.get_by_role("button", name="Delete pods").click()

    pods = page.locator(".pods-table tbody tr")
    expect(pods).to_have_count(3, timeout=LISTING_SECONDS * 1000)
    for index in range(3):
        cells = pods.nth(index).locator("td")
        expect(cells.nth(1)).to_have_text(re.compile(r"^web-[0-9a-z]+-[0-9a-z]{5}$"))
        expect(cells.nth(2)).to_have_text("Running")
        expect(cells.nth(3)).to_have_text("yes")
        expect(cells.nth(4)).to_have_text("0")
    names = [pods.nth(index).locator("td").nth(1).inner_text() for index in range(2)]
    for name in names:
        page.get_by_role("checkbox", name=name).check()
    screenshots(page, "pod-picker")
    page.get_by_role("button", name="Delete the pods picked").click()

    expect(page).to_have_url(re.compile(r"/pod-deletions/[0-9a-f-]{36}/$"))
    expect(page.get_by_role("heading", name="Pod deletion of web")).to_be_visible()
    expect(page.locator("#targets tbody td:first-child")).to_have_text(names)
    screenshots(page, "pod-deletion-running")
    # The page reloads itself until the deletion ends.
    expect(page.locator("h1 .badge")).to_have_text("Succeeded", timeout=DELETION_TIMEOUT_MS)
    expect(page.locator("#targets .result-message")).to_have_text(
        [f"Pod {name} deleted; its replacement is Ready" for name in names]
    )
    screenshots(page, "pod-deletion-succeeded")
    return names


def see_records(page: Page, ticket_no: str, names: list[str], screenshots) -> None:
    """The ticket is completed and records each pod deleted, in the seed's table."""
    page.get_by_role("link", name=ticket_no).click()
    expect(page.locator("h1 .badge")).to_have_text("Completed")
    table = page.locator("#pod-deletions table")
    expect(table.locator("thead th")).to_have_text(RECORDS_HEADERS)
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(2)
    for index, name in enumerate(names):
        cells = rows.nth(index).locator("td")
        expect(cells.nth(0)).to_have_text("sim")
        expect(cells.nth(1)).to_have_text("shop")
        expect(cells.nth(2)).to_have_text("web")
        expect(cells.nth(3)).to_have_text(name)
        expect(cells.nth(4)).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
        expect(cells.nth(5)).to_contain_text("Succeeded")
    screenshots(page, "pod-delete-ticket-completed")


@pytest.mark.e2e
def test_ticket_approval_pod_delete_records(journey, browse, screenshots, settings):
    # As in the demo: tasks run in threads of the live server, the page lists pods through one.
    settings.TASKS_IN_THREADS = True
    # The listing thread is what is tested, not its speed on a loaded CI machine.
    settings.POD_LISTING_WAIT_SECONDS = LISTING_SECONDS
    DeletePodWorkOrderFactory()
    alice = browse(journey.alice)
    ticket_no = file_delete_pod_ticket(alice, screenshots)

    bob = browse(journey.bob)
    approve_in_admin(bob, ticket_no, screenshots)

    alice.bring_to_front()
    names = pick_and_delete(alice, ticket_no, screenshots)
    see_records(alice, ticket_no, names, screenshots)

    # The approval is used up: the pod page offers nothing more.
    alice.goto("/pod-deletions/new/")
    expect(alice.get_by_text("You have no live approval to delete pods.")).to_be_visible()

    ticket = Ticket.objects.get(ticket_no=ticket_no)
    assert (ticket.state, ticket.success) == (Ticket.State.COMPLETED, True)
    (operation,) = PodDeletion.objects.all()
    assert operation.state == PodDeletion.State.SUCCEEDED
    deleted = [r.path.rsplit("/", 1)[-1] for r in journey.sim.requests if r.method == "DELETE"]
    assert sorted(deleted) == sorted(names)
