"""The audit event's labels: Django's get_FOO_display replaced by one translated per language."""

from django.utils.translation import override

from cratos.audit.models import AuditEvent


def event(**fields) -> AuditEvent:
    return AuditEvent(action="redeploy.succeeded", outcome="SUCCESS", **fields)


def test_labels_follow_the_active_language():
    with override("en"):
        assert event().get_action_display() == "Redeploy Succeeded"
        assert event().get_outcome_display() == "Success"
    with override("zh-hans"):
        assert (event().get_action_display(), event().get_outcome_display()) == (
            "重新部署成功",
            "成功",
        )
    with override("en"):
        assert event().get_action_display() == "Redeploy Succeeded"  # not the cached Chinese


def test_an_unknown_value_shows_as_itself():
    assert AuditEvent(action="gone.action", outcome="ODD").get_action_display() == "gone.action"
    assert AuditEvent(action="gone.action", outcome="ODD").get_outcome_display() == "ODD"
