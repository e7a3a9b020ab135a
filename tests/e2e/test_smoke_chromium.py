"""The test browser is real: Chromium loads a local page and runs its JavaScript."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.e2e

# The text the test looks for is computed by the script, so it is nowhere in the HTML.
PAGE = b"""<!doctype html>
<html>
<head><meta charset="utf-8"><title>kubegate smoke</title></head>
<body>
<p id="out">JavaScript did not run</p>
<script>
document.getElementById("out").textContent = ["rendered", "by", "script", 6 * 7].join(" ");
</script>
</body>
</html>
"""


class _PageHandler(BaseHTTPRequestHandler):
    """Serves :data:`PAGE` at ``/`` and 404 elsewhere, without logging to stderr."""

    def do_GET(self) -> None:
        if self.path != "/":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def page_url() -> Iterator[str]:
    """URL of :data:`PAGE` on a local HTTP server (port picked by the kernel), stopped after."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, name="smoke-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_chromium_runs_the_page_script(page: Page, page_url: str) -> None:
    response = page.goto(page_url)

    assert response is not None and response.ok
    expect(page.locator("#out")).to_have_text("rendered by script 42")
    assert page.title() == "kubegate smoke"
