import pytest

from redeploy import authorization
from tests.factories import ApplicationFactory, UserFactory
from tickets import services
from tickets.models import Ticket, WorkOrder

pytestmark = pytest.mark.django_db


def test_file_submit_approve_mints(redis_client):
    alice = UserFactory(username="alice")
    bob = UserFactory(username="bob", groups=["Approvers"])
    ApplicationFactory(name="web", tags=[{"key": "team", "value": "shop"}])
    wo = WorkOrder.objects.get(key="APPLICATION_REDEPLOY")
    t = services.create_ticket(applicant=alice, work_order=wo, application_names=["web"], reason="x")
    services.submit_ticket(ticket=t, actor=alice)
    t = services.approve_ticket(ticket=t, approver=bob)
    assert t.state == Ticket.State.APPROVED
    key = "APPLICATION:REDEPLOY:TOKEN:USERNAME:alice:APPLICATION_NAME:web"
    assert 7195 < redis_client.ttl(key) <= 7200
    assert authorization.live_token(username="alice", application_name="web")
