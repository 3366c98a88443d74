"""Ticket fixtures shared by the ticket tests (the cast and the work order: tests/conftest.py)."""

import pytest

from tests.factories import ApplicationFactory, ApprovalNodeFactory, GroupFactory, TicketFactory
from tests.robot_receivers import RobotServer
from tickets.models import ApprovalNode

SITE_URL = "https://cratos.example"


@pytest.fixture
def notices(settings):
    """Mails in mail.outbox, links to SITE_URL, webhooks given half a second."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.DEFAULT_FROM_EMAIL = "cratos@example.com"
    settings.SITE_URL = SITE_URL
    settings.NOTICE_WEBHOOK_TIMEOUT = 0.5


@pytest.fixture
def web():
    return ApplicationFactory(name="web", tags=[{"key": "team", "value": "shop"}])


@pytest.fixture
def api_app():
    return ApplicationFactory(name="api")


@pytest.fixture
def lead_node(work_order):
    """A second, USER_SPECIFIED node: the applicant picks one of the "Leads"."""
    return ApprovalNodeFactory(
        work_order=work_order,
        position=2,
        name="Lead",
        node_type=ApprovalNode.Type.USER_SPECIFIED,
        group=GroupFactory(name="Leads"),
    )


@pytest.fixture
def approved_two(alice, bob):
    """alice's ticket for web and api, approved by bob: two live authorizations in Redis."""
    return TicketFactory(
        applicant=alice,
        applications=[ApplicationFactory(name="web"), ApplicationFactory(name="api")],
        approved_by=bob,
    )


@pytest.fixture
def robot_server():
    """A local stand-in for the chat platforms (tests/robot_receivers.py)."""
    server = RobotServer()
    yield server
    server.close()
