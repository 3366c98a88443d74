"""tickets.models: names read in the reader's language."""

import pytest
from django.utils import translation

from tickets.models import WorkOrder

pytestmark = pytest.mark.django_db


def test_display_name_follows_the_active_language():
    work_order = WorkOrder.objects.get(key="APPLICATION_REDEPLOY")
    # Taken once, read in each language: what a lazy refusal message does.
    display = work_order.display_name
    with translation.override("zh-hans"):
        assert (str(display), str(work_order)) == ("应用重新部署", "应用重新部署")
    with translation.override("en"):
        assert (str(display), str(work_order)) == ("Application redeploy", "Application redeploy")


def test_a_blank_chinese_name_reads_as_the_english_one():
    work_order = WorkOrder(key="K", name="Restart", name_zh_hans="")
    with translation.override("zh-hans"):
        assert str(work_order.display_name) == "Restart"
