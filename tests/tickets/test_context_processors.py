"""tickets.context_processors: what every page's menu says to approvers."""

import pytest

from tickets.context_processors import BADGE_MOST, waiting_badge


@pytest.mark.parametrize(
    ("count", "badge"),
    [(0, ""), (1, "1"), (BADGE_MOST, "99"), (BADGE_MOST + 1, "99+"), (10_000, "99+")],
)
def test_the_badge_names_the_count_up_to_99(count, badge):
    assert waiting_badge(count) == badge
