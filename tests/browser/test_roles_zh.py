"""The three roles in Chinese at 1280 px: each lands on its own start page, the waiting ticket's
page updates itself, the approved ticket offers Redeploy with the time left, a refusal names its
reason and the next step, and unknown pages stay in the app's frame. Every page pictured is
checked for sideways scroll and axe-core violations (tests/browser/conftest.py)."""

import re

import pytest
from playwright.sync_api import expect

ZH = "zh-CN"  # the browser's language; Django serves it as zh-hans


@pytest.mark.e2e
def test_three_roles_in_chinese(journey, browse, screenshots):
    alice = browse(journey.alice, locale=ZH)
    expect(alice.locator("html")).to_have_attribute("lang", "zh-hans")
    screenshots(alice, "zh-requester-start")
    alice.goto("/tickets/new/?application=web")
    alice.locator("textarea[name=reason]").fill("轮换数据库密码")
    screenshots(alice, "zh-new-ticket")
    alice.locator("button[value=submit]").click()
    ticket_no = re.fullmatch(r".*/tickets/([^/]+)/", alice.url).group(1)
    expect(alice.locator("h1 .badge")).to_have_text("审批中")
    expect(alice.locator(".entries-table thead th")).to_have_text(["应用名称", "标签"])
    # The seeded work order and its step, in their Chinese names.
    expect(alice.locator(".ticket-summary .facts")).to_contain_text("应用重新部署")
    expect(alice.locator(".current-node")).to_contain_text("审批")
    screenshots(alice, "zh-ticket-waiting")

    bob = browse(journey.bob, locale=ZH)
    expect(bob).to_have_url(re.compile("/approvals/$"))  # a ticket waits for him
    expect(bob.locator(f"#ticket-{ticket_no}")).to_contain_text("应用重新部署")
    screenshots(bob, "zh-approver-queue")
    bob.locator(f"#ticket-{ticket_no} .approval-actions > form button[type=submit]").click()
    screenshots(bob, "zh-approver-confirm")
    bob.locator("form button[type=submit]:not(.secondary)").last.click()
    screenshots(bob, "zh-approver-decided")

    # alice's page, open all along, shows the decision by itself (htmx asks every 5 s).
    expect(alice.locator("h1 .badge")).to_have_text("已通过", timeout=12_000)
    step = alice.locator("#next-step li")
    expect(step.get_by_role("button", name="重新部署")).to_be_visible()
    expect(step.locator("[data-seconds-left]")).to_have_text(re.compile(r"^(2h 0m|1h 59m)$"))
    screenshots(alice, "zh-ticket-approved")

    # No approval for api: the refusal says so and offers a prefilled ticket.
    alice.goto("/redeploy/?application=api&namespace=shop&deployment=api")
    alice.locator("[data-redeploy-form] button[type=submit]").click()
    expect(alice.locator("#form-errors")).to_have_text("Unauthorized access")
    reason = alice.locator(".refusal-reason")
    expect(reason).to_contain_text("你没有 api 的已批准工单。")
    expect(reason.get_by_role("button", name="为 api 新建工单")).to_be_visible()
    screenshots(alice, "zh-refused-with-reason")

    alice.goto("/no/such/page/")
    expect(alice).to_have_title("页面不存在 · Cratos 重新部署")
    screenshots(alice, "zh-not-found")

    carol = browse(journey.carol, locale=ZH)
    expect(carol).to_have_url(re.compile("/audit/$"))
    screenshots(carol, "zh-reviewer-audit")
