"""The Dagster UI in a real browser: Debian's chromium, headless, driven by Playwright (which brings no
browser of its own here). Dagster's UI is a React app, so every check waits for what it renders.

The metadata table shows numbers inline, but a Markdown entry longer than 1,000 characters (each inline
PNG is) shows as "[Show Markdown]" and renders in a dialog; its sanitizer allows data: image sources.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect, sync_playwright

from mlplatform_tests.servers_dagster import EXAMPLE_PLOTS, DagsterServers, latest_metadata, png_from_markdown, png_size
from mlplatform_tests.system import ensure_debian_packages

pytestmark = pytest.mark.slow

# Playwright adds --headless (headless=True) and --user-data-dir (a fresh profile under tmp_path) itself.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000  # the UI's first render on a busy 2-core machine
# The dialog fades in: a screenshot taken before its CSS transitions end shows it half transparent.
OPENING_TRANSITIONS_DONE = (
    "() => document.getAnimations().every(a => !(a instanceof CSSTransition) || a.playState === 'finished')"
)


@pytest.fixture(scope="module")
def chromium() -> str:
    return ensure_debian_packages(["chromium"])["chromium"]


@pytest.fixture
def page(
    chromium: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Page]:
    # Playwright's driver and chromium write scratch files, a crash database and a dconf cache outside
    # the profile folder: all of it goes under pytest's temporary folders. TMPDIR is a short one because
    # chromium puts a Unix socket there, and a socket path must fit in 107 bytes.
    monkeypatch.setenv("TMPDIR", str(tmp_path_factory.mktemp("chromium")))
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        folder = tmp_path / name.lower()
        folder.mkdir()
        monkeypatch.setenv(name, str(folder))
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "profile",
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1800},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            context.close()


def metadata_row(page: Page, label: str) -> Locator:
    return page.locator("tr").filter(has=page.get_by_text(label, exact=True))


def test_asset_page_shows_the_metrics_and_renders_the_plots(
    dagster_ui: DagsterServers, materialized_run: str, page: Page, tmp_path: Path
) -> None:
    run_id, metadata = latest_metadata(dagster_ui, "evaluation_report")
    assert run_id == materialized_run
    # Dismissing the community newsletter dialog on the server, as its "Skip" button does: it covers the page.
    dagster_ui.graphql("mutation { setNuxSeen }")

    page.goto(f"{dagster_ui.url}/assets/evaluation_report", wait_until="domcontentloaded")

    metrics = {label: value for label, value in metadata.items() if label.startswith("holdout_")}
    assert metrics
    for label, value in metrics.items():
        value_cell = metadata_row(page, label).locator("td").last
        expect(value_cell).to_have_text(re.compile(r"\S"), timeout=TIMEOUT_MS)
        assert float(value_cell.inner_text()) == pytest.approx(value), label
    expect(metadata_row(page, "primary_metric")).to_contain_text(str(metadata["primary_metric"]))
    page.screenshot(path=tmp_path / "evaluation_report.png")

    for plot in EXAMPLE_PLOTS:
        metadata_row(page, plot).get_by_text("[Show Markdown]").click()
        dialog = page.get_by_role("dialog").filter(has_text=plot)
        image = dialog.locator("img")
        expect(image).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))
        # Decoded by the browser, at the size of the PNG the asset wrote: the plot really shows.
        page.wait_for_function("image => image.complete && image.naturalWidth > 0", arg=image.element_handle())
        shown = tuple(image.evaluate("image => [image.naturalWidth, image.naturalHeight]"))
        assert shown == png_size(png_from_markdown(metadata[plot])), plot
        assert image.bounding_box()["width"] > 100, plot
        page.wait_for_function(OPENING_TRANSITIONS_DONE)
        page.screenshot(path=tmp_path / f"{plot}.png")
        dialog.get_by_role("button", name="Close").click()
        expect(dialog).to_be_hidden()
    print(f"screenshots in {tmp_path}")
