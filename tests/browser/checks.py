"""What every page a browser visits must pass: no sideways scroll at the viewport's width, and
no serious or critical WCAG 2.1 AA violation found by axe-core (from npm: tests/package.json,
installed by scripts/test). Used by the browser tests and by scripts/screenshots, which also share
the browser: Debian's chromium, never a downloaded one."""

from pathlib import Path

from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # the suite runs as root, where chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these, chromium keeps calling home, which is slow on a closed network.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
FAILING_IMPACTS = {"serious", "critical"}


def sideways_overflow(page: Page) -> list[str]:
    """The elements that stick out past the viewport's right edge (empty: the page does not
    scroll sideways)."""
    return page.evaluate(
        """() => {
          const width = document.documentElement.clientWidth;
          if (document.documentElement.scrollWidth <= width) return [];
          const sticksOut = (el) => el && el.getBoundingClientRect().right > width + 1;
          return Array.from(document.querySelectorAll("body *"))
            .filter((el) => sticksOut(el) && !sticksOut(el.parentElement))
            .slice(0, 5)
            .map((el) => el.tagName.toLowerCase() + "." + String(el.className).replace(/ /g, "."));
        }"""
    )


def axe_violations(page: Page) -> list[str]:
    """Serious and critical axe-core violations of the page, one line each."""
    if not AXE.exists():
        raise RuntimeError(f"axe-core is missing at {AXE}: run `npm ci --prefix tests`")
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    # Only violations are read: axe then skips gathering the nodes of every rule that passed,
    # a quarter of the browser tests' time.
    results = page.evaluate(
        """(tags) => axe.run(document, {
          runOnly: {type: 'tag', values: tags}, resultTypes: ['violations'],
        })""",
        AXE_TAGS,
    )
    return [
        f"{violation['impact']} {violation['id']}: {violation['help']} "
        f"({', '.join(str(node['target']) for node in violation['nodes'][:3])})"
        for violation in results["violations"]
        if violation["impact"] in FAILING_IMPACTS
    ]


def check_page(page: Page) -> None:
    """Fails on sideways scroll or on a serious or critical accessibility violation."""
    where = page.url
    overflow = sideways_overflow(page)
    assert not overflow, f"{where} scrolls sideways; too wide: {overflow}"
    violations = axe_violations(page)
    assert not violations, f"{where}: " + "; ".join(violations)
