import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from redeploy.providers import REDEPLOY_GRANTS
from tests.factories import ApplicationFactory, UserFactory
from tickets import services
from tickets.models import Approval, Ticket, WorkOrder

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:tickets_ticket_changelist")


def staff(username: str, *, groups=(), superuser: bool = False):
    return UserFactory(
        username=username,
        groups=list(groups),
        is_staff=True,
        is_superuser=superuser,
        permissions=[] if superuser else ["tickets.view_ticket"],
    )


def submitted_ticket(*, applicant, applications=("web",)) -> Ticket:
    for name in applications:
        ApplicationFactory(
            name=name, tags=[{"key": "team", "value": "shop"}, {"key": "tier", "value": name}]
        )
    ticket = services.create_ticket(
        applicant=applicant,
        work_order=WorkOrder.objects.get(key="APPLICATION_REDEPLOY"),
        application_names=list(applications),
        reason="Pods stuck after the config change",
    )
    return services.submit_ticket(ticket=ticket, actor=applicant)


def run_action(client, action: str, tickets, **confirmation):
    """Post the changelist action, then (when given) the confirmation page's form."""
    data = {"action": action, ACTION_CHECKBOX_NAME: [t.pk for t in tickets], "index": 0}
    response = client.post(CHANGELIST, data)
    if not confirmation:
        return response
    assert response.status_code == 200
    data = {"action": action, ACTION_CHECKBOX_NAME: [t.pk for t in tickets], "post": "yes"}
    return client.post(CHANGELIST, {**data, **confirmation}, follow=True)


def messages_of(response) -> list[tuple[str, str]]:
    """The messages shown on the page the decision redirected to."""
    assert response.redirect_chain, "the decision did not redirect"
    return [(m.level_tag, m.message) for m in response.context["messages"]]


@pytest.fixture
def bob(client):
    bob = staff("bob", groups=["Approvers"])
    client.force_login(bob)
    return bob


def test_changelist_shows_filters_and_searches_tickets(client, alice, bob):
    ticket = submitted_ticket(applicant=alice, applications=("web", "api"))
    other = submitted_ticket(applicant=UserFactory(username="erin"), applications=("billing",))

    response = client.get(CHANGELIST)
    assert response.status_code == 200
    html = response.content.decode()
    for text in (ticket.ticket_no, "alice", "web, api", "IN_APPROVAL", "Approval"):
        assert text in html
    assert "Approve selected tickets" in html and "Reject selected tickets" in html

    def listed(query: dict) -> set[str]:
        response = client.get(CHANGELIST, query)
        return {t.ticket_no for t in response.context["cl"].result_list}

    assert listed({"q": "billing"}) == {other.ticket_no}
    assert listed({"q": "alice"}) == {ticket.ticket_no}
    assert listed({"q": ticket.ticket_no}) == {ticket.ticket_no}
    assert listed({"applicant__id__exact": alice.pk}) == {ticket.ticket_no}
    assert listed({"state__exact": "IN_APPROVAL"}) == {ticket.ticket_no, other.ticket_no}
    assert listed({"state__exact": "APPROVED"}) == set()
    work_order = WorkOrder.objects.get(key="APPLICATION_REDEPLOY")
    assert len(listed({"work_order__id__exact": work_order.pk})) == 2


def test_bulk_approve_confirms_then_mints_the_authorizations(client, alice, bob, redis_client):
    first = submitted_ticket(applicant=alice, applications=("web",))
    second = submitted_ticket(applicant=alice, applications=("api",))

    confirmation = run_action(client, "approve_selected", [first, second])
    assert confirmation.status_code == 200
    html = confirmation.content.decode()
    assert first.ticket_no in html and second.ticket_no in html
    assert "Application Name" in html and "team:shop,tier:web" in html
    assert not redis_client.exists(REDEPLOY_GRANTS.key(username="alice", application_name="web"))

    response = run_action(client, "approve_selected", [first, second], comment="go ahead")
    assert response.redirect_chain[-1][0].startswith(CHANGELIST)
    assert sorted(messages_of(response)) == [
        ("success", f"Ticket {first.ticket_no} approved."),
        ("success", f"Ticket {second.ticket_no} approved."),
    ]
    for ticket, application in ((first, "web"), (second, "api")):
        ticket.refresh_from_db()
        assert ticket.state == Ticket.State.APPROVED
        assert redis_client.exists(
            REDEPLOY_GRANTS.key(username="alice", application_name=application)
        )
        approval = Approval.objects.get(ticket=ticket)
        assert (approval.approver, approval.comment) == (bob, "go ahead")


def test_bulk_reject_requires_a_reason(client, alice, bob):
    ticket = submitted_ticket(applicant=alice)

    response = run_action(client, "reject_selected", [ticket], reason="   ")
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.IN_APPROVAL

    response = run_action(client, "reject_selected", [ticket], reason="Not during the sale")
    assert messages_of(response) == [("success", f"Ticket {ticket.ticket_no} rejected.")]
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.REJECTED
    assert Approval.objects.get(ticket=ticket).comment == "Not during the sale"


def test_self_approval_is_refused_for_a_superuser_too(client, redis_client):
    root = staff("root", groups=["Approvers"], superuser=True)
    ticket = submitted_ticket(applicant=root)
    client.force_login(root)

    response = run_action(client, "approve_selected", [ticket], comment="")
    assert messages_of(response) == [
        ("error", f"{ticket.ticket_no}: You cannot decide on your own ticket.")
    ]
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.IN_APPROVAL
    assert not redis_client.exists(REDEPLOY_GRANTS.key(username="root", application_name="web"))


def test_non_member_is_refused_and_a_bulk_reports_each_ticket(client, alice):
    mallory = staff("mallory")
    client.force_login(mallory)
    first = submitted_ticket(applicant=alice, applications=("web",))
    second = submitted_ticket(applicant=alice, applications=("api",))

    assert client.get(CHANGELIST).status_code == 200
    response = run_action(client, "reject_selected", [first, second], reason="no")
    refusal = "Only members of Approvers may decide on node Approval."
    assert messages_of(response) == [
        ("error", f"{first.ticket_no}: {refusal}"),
        ("error", f"{second.ticket_no}: {refusal}"),
    ]
    assert set(Ticket.objects.values_list("state", flat=True)) == {Ticket.State.IN_APPROVAL}


def test_mixed_bulk_approves_what_it_may_and_refuses_the_rest(client, bob):
    approvable = submitted_ticket(applicant=UserFactory(username="alice"))
    own = submitted_ticket(applicant=bob, applications=("api",))

    response = run_action(client, "approve_selected", [approvable, own], comment="")
    assert messages_of(response) == [
        ("success", f"Ticket {approvable.ticket_no} approved."),
        ("error", f"{own.ticket_no}: You cannot decide on your own ticket."),
    ]


def test_deciding_a_ticket_in_the_wrong_state_is_refused(client, alice, bob):
    ticket = services.approve_ticket(ticket=submitted_ticket(applicant=alice), approver=bob)

    response = run_action(client, "reject_selected", [ticket], reason="too late")
    [(level, message)] = messages_of(response)
    assert level == "error"
    assert message.startswith(f"{ticket.ticket_no}: Ticket {ticket.ticket_no} is APPROVED;")
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.APPROVED


def test_change_page_is_read_only_with_entries_decisions_and_history(client, alice):
    root = staff("root", groups=["Approvers"], superuser=True)
    client.force_login(root)
    ticket = submitted_ticket(applicant=alice, applications=("web",))
    services.approve_ticket(ticket=ticket, approver=root, comment="looks fine")
    url = reverse("admin:tickets_ticket_change", args=[ticket.pk])

    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    for text in (
        ticket.ticket_no,
        "team:shop,tier:web",
        "Authorized",
        "looks fine",
        '<td class="field-from_label">In Approval</td>',
        '<td class="field-to_label">Approved</td>',
        "Pods stuck after the config change",
    ):
        assert text in html
    assert "IN_APPROVAL" not in html  # states read as words
    assert "Cratos Redeploy administration" in html
    assert "<th></th>" not in html and '<th class="original"></th>' not in html
    assert 'name="_save"' not in html
    for inline in ("entries", "approvals", "chosen_approvers", "state_changes"):
        assert f'name="{inline}-MAX_NUM_FORMS" value="0"' in html  # nothing can be added
    assert "<textarea" not in html and 'type="text"' not in html
    # No decision is pending on an approved ticket, so no buttons.
    assert reverse("admin:tickets_ticket_approve", args=[ticket.pk]) not in html

    assert client.post(url, {"reason": "rewritten"}).status_code == 403
    assert client.get(reverse("admin:tickets_ticket_add")).status_code == 403
    assert client.post(reverse("admin:tickets_ticket_delete", args=[ticket.pk])).status_code == 403
    ticket.refresh_from_db()
    assert ticket.reason == "Pods stuck after the config change"


def test_change_page_buttons_use_the_same_decision(client, alice, bob, redis_client):
    ticket = submitted_ticket(applicant=alice)
    change_url = reverse("admin:tickets_ticket_change", args=[ticket.pk])
    approve_url = reverse("admin:tickets_ticket_approve", args=[ticket.pk])
    reject_url = reverse("admin:tickets_ticket_reject", args=[ticket.pk])

    html = client.get(change_url).content.decode()
    assert approve_url in html and reject_url in html

    response = client.post(reject_url, {"post": "yes", "reason": ""})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()

    page = client.get(approve_url)
    assert page.status_code == 200 and "team:shop,tier:web" in page.content.decode()
    assert not redis_client.exists(REDEPLOY_GRANTS.key(username="alice", application_name="web"))

    response = client.post(approve_url, {"post": "yes", "comment": "ok"}, follow=True)
    assert response.redirect_chain == [(change_url, 302)]
    assert messages_of(response) == [("success", f"Ticket {ticket.ticket_no} approved.")]
    assert redis_client.exists(REDEPLOY_GRANTS.key(username="alice", application_name="web"))

    response = client.post(reject_url, {"post": "yes", "reason": "changed my mind"}, follow=True)
    [(level, message)] = messages_of(response)
    assert level == "error"
    assert message.startswith(f"{ticket.ticket_no}: Ticket {ticket.ticket_no} is APPROVED;")


def test_change_page_button_refuses_self_approval_of_a_superuser(client, redis_client):
    root = staff("root", groups=["Approvers"], superuser=True)
    ticket = submitted_ticket(applicant=root)
    client.force_login(root)
    # Not even offered: one's own ticket is never one's to decide.
    html = client.get(reverse("admin:tickets_ticket_change", args=[ticket.pk])).content.decode()
    assert reverse("admin:tickets_ticket_approve", args=[ticket.pk]) not in html

    url = reverse("admin:tickets_ticket_approve", args=[ticket.pk])
    response = client.post(url, {"post": "yes", "comment": ""}, follow=True)
    assert messages_of(response) == [
        ("error", f"{ticket.ticket_no}: You cannot decide on your own ticket.")
    ]
    assert not redis_client.exists(REDEPLOY_GRANTS.key(username="root", application_name="web"))


def test_staff_without_the_view_permission_cannot_reach_tickets(client, alice):
    ticket = submitted_ticket(applicant=alice)
    client.force_login(UserFactory(username="nobody", is_staff=True))

    assert client.get(CHANGELIST).status_code == 403
    url = reverse("admin:tickets_ticket_approve", args=[ticket.pk])
    assert client.post(url, {"post": "yes"}).status_code == 403


def test_work_order_admin_shows_the_approval_chain(client):
    root = staff("root", superuser=True)
    client.force_login(root)
    work_order = WorkOrder.objects.get(key="APPLICATION_REDEPLOY")

    response = client.get(reverse("admin:tickets_workorder_change", args=[work_order.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="nodes-0-position"' in html and 'value="Approval"' in html
    assert 'name="nodes-0-node_type"' in html and 'name="nodes-0-group"' in html


def test_an_admin_gives_a_work_order_and_its_nodes_their_chinese_names(client):
    root = staff("root", superuser=True)
    client.force_login(root)
    work_order = WorkOrder.objects.get(key="APPLICATION_REDEPLOY")
    url = reverse("admin:tickets_workorder_change", args=[work_order.pk])
    form = client.get(url).context["adminform"].form
    node = work_order.nodes.get()
    data = {
        **{name: value for name, value in form.initial.items() if value is not None},
        "name_zh_hans": "重启应用",
        "nodes-TOTAL_FORMS": 1,
        "nodes-INITIAL_FORMS": 1,
        "nodes-0-id": node.pk,
        "nodes-0-work_order": work_order.pk,
        "nodes-0-position": 1,
        "nodes-0-name": "Approval",
        "nodes-0-name_zh_hans": "值班审批",
        "nodes-0-node_type": node.node_type,
        "nodes-0-group": node.group_id,
    }

    response = client.post(url, data)

    assert response.status_code == 302, response.context["errors"]
    work_order.refresh_from_db()
    assert (work_order.name, work_order.name_zh_hans) == ("Application redeploy", "重启应用")
    assert work_order.nodes.get().name_zh_hans == "值班审批"
    listing = client.get(
        reverse("admin:tickets_workorder_changelist"), HTTP_ACCEPT_LANGUAGE="zh-hans"
    ).content.decode()
    assert "重启应用" in listing and "Application redeploy" in listing
    change = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    for label in ("中文名称", "业务类型", "Webhook 地址", "Webhook 密钥", "节点类型", "顺序"):
        assert label in change
    assert "Business type" not in change and "Node type" not in change


def test_ticket_admin_names_the_work_order_and_node_in_the_readers_language(client, alice, bob):
    ticket = submitted_ticket(applicant=alice)
    html = client.get(CHANGELIST, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert '<td class="field-current_node_name">审批</td>' in html
    assert "应用重新部署" in html  # the work-order filter
    english = client.get(CHANGELIST).content.decode()
    assert '<td class="field-current_node_name">Approval</td>' in english
    change = reverse("admin:tickets_ticket_change", args=[ticket.pk])
    html = client.get(change, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "应用重新部署" in html and '<div class="readonly">审批</div>' in html
    # Its fields and parts are labelled in Chinese too.
    for label in ("工单号", "申请人", "提交时间", "工单条目", "状态历史"):
        assert label in html
    assert "Ticket no" not in html and "Submitted at" not in html


def test_entries_of_a_submitted_ticket_await_approval_and_results_read_as_marks(client, alice, bob):
    ticket = submitted_ticket(applicant=alice)
    html = client.get(reverse("admin:tickets_ticket_change", args=[ticket.pk])).content.decode()
    assert '<td class="field-entry_state">Awaiting approval</td>' in html
    assert '<td class="field-result">—</td>' in html
    assert ">Draft<" not in html
