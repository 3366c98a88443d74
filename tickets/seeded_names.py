"""Chinese names for the work orders and approval nodes that data migrations seed in English.

Each app's migration names the rows it seeded (tickets: APPLICATION_REDEPLOY; redeploy:
APPLICATION_DELETE_POD), so tickets keeps no knowledge of redeploy's kinds."""

from django.db import migrations


def add_chinese_names(apps, *, key: str, work_order: tuple[str, str], nodes: dict[str, str]):
    """Give work order `key` (english, chinese) and its nodes ({english: chinese}) their Chinese
    names, only where the name is still the seeded English one and no Chinese name was given:
    an administrator's own wording stays."""
    WorkOrder = apps.get_model("tickets", "WorkOrder")
    ApprovalNode = apps.get_model("tickets", "ApprovalNode")
    english, chinese = work_order
    WorkOrder.objects.filter(key=key, name=english, name_zh_hans="").update(name_zh_hans=chinese)
    for english, chinese in nodes.items():
        ApprovalNode.objects.filter(work_order__key=key, name=english, name_zh_hans="").update(
            name_zh_hans=chinese
        )


def chinese_names_operation(
    *, key: str, work_order: tuple[str, str], nodes: dict[str, str]
) -> migrations.RunPython:
    """The migration step running add_chinese_names; going back leaves the names (the schema
    migration before it drops their column)."""

    def name_in_chinese(apps, schema_editor):
        add_chinese_names(apps, key=key, work_order=work_order, nodes=nodes)

    return migrations.RunPython(name_in_chinese, migrations.RunPython.noop)
