"""The API docs work offline (a hospital intranet): Swagger UI and ReDoc come from files
the package ships, never a CDN; in headless Chromium, with nothing but the server to
reach, /docs renders the routes."""

from __future__ import annotations

import shutil

import httpx
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_docs_pages_load_their_assets_from_the_server(stack) -> None:
    for page, assets in (("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")),
                         ("/redoc", ("redoc.standalone.js",))):
        html = httpx.get(stack.url + page).text
        assert "cdn.jsdelivr.net" not in html and "unpkg.com" not in html
        for asset in assets:
            assert f"/static-offline-docs/{asset}" in html
            got = httpx.get(f"{stack.url}/static-offline-docs/{asset}")
            assert got.status_code == 200 and len(got.content) > 50_000


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: "
                    "apt-get install chromium); .ci/run installs it")
def test_swagger_ui_renders_offline(tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    from tests.stack import make_test_settings, start_stack

    stack = start_stack(make_test_settings(tmp_path / "var"))  # the page: any backend
    with stack, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context()
        outside: list[str] = []

        def only_the_server(route) -> None:  # anything else would be a CDN
            if route.request.url.startswith(stack.url):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        context.route("**/*", only_the_server)
        page = context.new_page()
        page.goto(f"{stack.url}/docs")
        page.wait_for_selector(".opblock", timeout=20_000)  # the routes, drawn
        paths = page.locator(".opblock-summary-path").all_text_contents()
        title = page.text_content(".information-container .title") or ""
        page.screenshot(path=str(tmp_path / "docs.png"))
        browser.close()
    assert outside == []
    assert "ehc-twin card network" in title
    clean = [p.replace("\u200b", "") for p in paths]  # Swagger breaks paths with ZWSPs
    assert "/ehc/v1/qrcodes/verify" in clean and len(clean) > 50
