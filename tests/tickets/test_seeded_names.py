"""The seeded work orders and nodes get their Chinese names from the data migrations, never over
an administrator's edit."""

from importlib import import_module

import pytest
from django.apps import apps

from tickets.models import ApprovalNode, WorkOrder
from tickets.seeded_names import add_chinese_names

pytestmark = pytest.mark.django_db

SEEDING = [  # the data migrations, in order: (migration module, its RunPython operation)
    ("tickets.migrations.0002_default_redeploy_work_order", 0),
    ("redeploy.migrations.0008_delete_pod_work_order", 0),
    ("tickets.migrations.0008_seeded_names_in_chinese", 0),
    ("redeploy.migrations.0012_delete_pod_names_in_chinese", 0),
]


@pytest.fixture(autouse=True)
def seeded():
    """The rows as the data migrations left them. A transactional test that ran earlier in
    this worker emptied the tables (pytest-xdist's work stealing runs tests in any order):
    the same migration steps seed them again."""
    if WorkOrder.objects.filter(key="APPLICATION_REDEPLOY").exists():
        return
    for module, index in SEEDING:
        import_module(module).Migration.operations[index].code(apps, None)


def names(key: str) -> list[tuple[str, str]]:
    work_order = WorkOrder.objects.get(key=key)
    return [(work_order.name, work_order.name_zh_hans)] + [
        (node.name, node.name_zh_hans) for node in work_order.nodes.all()
    ]


def add_redeploy_names() -> None:
    add_chinese_names(
        apps,
        key="APPLICATION_REDEPLOY",
        work_order=("Application redeploy", "应用重新部署"),
        nodes={"Approval": "审批"},
    )


def test_the_migrations_named_both_seeded_work_orders_in_chinese():
    assert names("APPLICATION_REDEPLOY") == [
        ("Application redeploy", "应用重新部署"),
        ("Approval", "审批"),
    ]
    assert names("APPLICATION_DELETE_POD") == [
        ("Application pod delete", "应用 Pod 删除"),
        ("Approval", "审批"),
    ]


def test_a_name_still_seeded_and_without_chinese_gets_it():
    WorkOrder.objects.filter(key="APPLICATION_REDEPLOY").update(name_zh_hans="")
    ApprovalNode.objects.filter(work_order__key="APPLICATION_REDEPLOY").update(name_zh_hans="")

    add_redeploy_names()

    assert names("APPLICATION_REDEPLOY") == [
        ("Application redeploy", "应用重新部署"),
        ("Approval", "审批"),
    ]


def test_an_administrators_names_stay():
    WorkOrder.objects.filter(key="APPLICATION_REDEPLOY").update(name="Restart", name_zh_hans="")
    ApprovalNode.objects.filter(work_order__key="APPLICATION_REDEPLOY").update(
        name_zh_hans="值班审批"
    )

    add_redeploy_names()

    assert names("APPLICATION_REDEPLOY") == [("Restart", ""), ("Approval", "值班审批")]
