"""Check the built site offline, from disk, in headless Chromium (``make docs-check``).

Opens ``site/*.html`` through ``file://`` with the network off (no QUIC, no background
requests, and every host name resolves to nothing) and drives Chromium over the DevTools
protocol on a pipe (``--remote-debugging-pipe``: JSON messages ending in NUL on fds 3/4).

- Every page with a ``mermaid`` block renders each diagram: mkdocs-material replaces the
  ``<pre class="mermaid">`` holding the diagram's source with a ``<div class="mermaid">``
  whose closed shadow root holds mermaid's ``<svg>``, only once ``mermaid.render()``
  succeeded. The check reads the DOM with shadow roots pierced and requires an ``<svg>``
  with drawn shapes and labels in each host, and no diagram source left as text.
- It screenshots the first diagram of each page, alone and in its page
  (build/docs-check/diagram-PAGE.png, page-PAGE.png), and checks that the diagram's
  pixels are a drawing (strokes, labels and mermaid's tinted boxes on white), not an
  empty box or text.
- Every request the pages make is ``file:`` or ``data:``: nothing comes from a CDN.
- A sidebar link leads to a ``.html`` file that exists, and following it loads that page
  (not a directory listing).
- No Sphinx role (``:class:`` ...) leaks into the rendered API reference.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "site"
DOCS = ROOT / "docs"
OUT = ROOT / "build" / "docs-check"
RENDER_TIMEOUT = 60.0  # mermaid is 3.5 MB of JavaScript; the machine may be loaded
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no DNS: a CDN request could not succeed
    "--hide-scrollbars",
    "--window-size=1280,1000",
    "--remote-debugging-pipe",
]
SPHINX_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|ref):`")

Node = dict[str, Any]


def fail(message: str) -> None:
    sys.exit(f"docs-check: FAILED: {message}")


def log(message: str) -> None:
    print(f"docs-check: {message}", flush=True)


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    fail("no chromium on PATH (scripts/ensure_system_packages.sh chromium installs it)")
    raise AssertionError("unreachable")


class Browser:
    """A headless Chromium driven over the DevTools protocol on a pipe, one page session."""

    def __init__(self, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def use_fds_3_and_4() -> None:  # where --remote-debugging-pipe expects the pipe
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self._process = subprocess.Popen(
            [find_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(3, 4, to_browser_r, from_browser_w),  # 3, 4: made by dup2 above
            preexec_fn=use_fds_3_and_4,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: close() ends every helper
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._ids = itertools.count(1)
        self._buffer = b""
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        attached = self.call("Target.attachToTarget", targetId=target, flatten=True)
        self._session: str | None = attached["sessionId"]
        self.call("Page.enable")
        self.call("Network.enable")

    def call(self, method: str, *, tolerate: bool = False, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its result (events that arrive meanwhile are kept).

        With ``tolerate``, an error reply is returned as ``{"error": ...}`` instead of failing
        the check: a page that is navigating answers "Inspected target navigated or closed".
        """
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if method.split(".")[0] != "Target" and getattr(self, "_session", None):
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + RENDER_TIMEOUT
        while time.monotonic() < deadline:
            reply = self._read()
            if reply.get("id") == message_id:
                if "error" in reply:
                    if tolerate:
                        return {"error": reply["error"]}
                    fail(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)
        fail(f"{method}: no answer within {RENDER_TIMEOUT} s")
        raise AssertionError("unreachable")

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                fail("chromium closed the DevTools pipe (did it crash?)")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self.events.clear()
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + RENDER_TIMEOUT
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                fail(f"{url} did not load within {RENDER_TIMEOUT} s")
            self.events.append(self._read())

    def evaluate(self, expression: str, *, during_navigation: bool = False) -> Any:
        result = self.call(
            "Runtime.evaluate",
            tolerate=during_navigation,
            expression=expression,
            returnByValue=True,
        )
        if during_navigation and ("error" in result or "exceptionDetails" in result):
            return None  # the old page went away mid-evaluation: ask the new one next time
        if "exceptionDetails" in result:
            fail(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def requested_urls(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent"
        ]

    def close(self) -> None:
        """Ask Chromium to quit; kill its process group if it has not within 10 s."""
        try:
            os.write(self._to_browser, json.dumps({"id": 0, "method": "Browser.close"}).encode())
            os.write(self._to_browser, b"\0")
            self._process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)  # renderers that outlived it
        self._process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def walk(node: Node) -> Iterator[Node]:
    yield node
    for key in ("children", "shadowRoots", "contentDocument"):
        value = node.get(key)
        for child in value if isinstance(value, list) else [value] if value else []:
            yield from walk(child)


def classes(node: Node) -> list[str]:
    attributes: list[str] = node.get("attributes", [])
    pairs = dict(zip(attributes[::2], attributes[1::2], strict=True))
    return pairs.get("class", "").split()


def diagram_state(browser: Browser) -> tuple[int, list[Node]]:
    """(diagrams still shown as source, hosts whose shadow root holds a drawn svg)."""
    document = browser.call("DOM.getDocument", depth=-1, pierce=True)["root"]
    raw = 0
    rendered: list[Node] = []
    for node in walk(document):
        if "mermaid" not in classes(node):
            continue
        if node.get("nodeName") == "PRE":  # not rendered yet (or failed to)
            raw += 1
        elif node.get("nodeName") == "DIV":
            names = [
                n.get("nodeName", "").lower()
                for root in node.get("shadowRoots", [])
                for n in walk(root)
            ]
            shapes = sum(names.count(shape) for shape in ("path", "rect", "line", "polygon"))
            labels = sum(names.count(label) for label in ("text", "foreignobject"))
            if "svg" in names and shapes >= 2 and labels >= 2:
                rendered.append(node)
    return raw, rendered


def png_pixels(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Decode an 8-bit RGB/RGBA PNG (what Chromium writes) into (width, height, pixels)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat, header = 8, b"", b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    width, height, depth, color_type = struct.unpack(">IIBB", header[:10])
    if depth != 8 or color_type not in (2, 6):
        fail(f"unexpected PNG format: bit depth {depth}, color type {color_type}")
    channels = 3 if color_type == 2 else 4
    stride = width * channels
    raw = zlib.decompress(idat)
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up = previous[x]
            upper_left = previous[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                estimate = left + up - upper_left
                pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - upper_left)
                predictor = left if pa <= pb and pa <= pc else up if pb <= pc else upper_left
                line[x] = (line[x] + predictor) & 0xFF
        rows.append(line)
        previous = line
    pixels = [(row[x], row[x + 1], row[x + 2]) for row in rows for x in range(0, stride, channels)]
    return width, height, pixels


def screenshot(browser: Browser, name: str, clip: dict[str, float] | None = None) -> Path:
    params: dict[str, Any] = {"format": "png", "captureBeyondViewport": True}
    if clip is not None:
        params["clip"] = {**clip, "scale": 1}
    data = base64.b64decode(browser.call("Page.captureScreenshot", **params)["data"])
    path = OUT / name
    path.write_bytes(data)
    return path


def check_diagram_pixels(path: Path) -> None:
    """A drawing: a white background, dark strokes and labels, and the blue/indigo tint
    mkdocs-material gives mermaid's boxes, borders and lifelines (at least 1% of pixels).

    Diagram source shown as text would be grey text on the grey of a code block: no tint.
    """
    width, height, pixels = png_pixels(path.read_bytes())
    total = width * height
    white = sum(1 for r, g, b in pixels if r + g + b > 750) / total
    ink = sum(1 for r, g, b in pixels if r + g + b < 600) / total
    tinted = sum(1 for r, g, b in pixels if b - r >= 12) / total
    log(
        f"{path.name}: {width}x{height} px, {white:.0%} white, {ink:.1%} strokes and text, "
        f"{tinted:.0%} tinted boxes"
    )
    if width < 200 or height < 100:
        fail(f"{path.name}: the diagram is only {width}x{height} px")
    if white < 0.4 or not 0.005 < ink < 0.5 or tinted < 0.01:
        fail(f"{path.name}: does not look like a rendered diagram")


def pages_with_diagrams() -> list[str]:
    pages = sorted(p for p in DOCS.glob("*.md") if "```mermaid" in p.read_text())
    if not pages:
        fail("no page of docs/ has a mermaid block: nothing to check")
    return [p.with_suffix(".html").name for p in pages]


def check_diagrams(browser: Browser) -> None:
    for page in pages_with_diagrams():
        expected = (DOCS / page).with_suffix(".md").read_text().count("```mermaid")
        browser.open((SITE / page).as_uri())
        deadline = time.monotonic() + RENDER_TIMEOUT
        raw, rendered = diagram_state(browser)
        while raw or len(rendered) < expected:
            if time.monotonic() > deadline:
                fail(
                    f"{page}: {len(rendered)} of {expected} diagrams rendered as svg within "
                    f"{RENDER_TIMEOUT} s (is mermaid bundled? make docs copies it)"
                )
            time.sleep(0.2)  # polling the page's DOM, bounded by the deadline
            raw, rendered = diagram_state(browser)
        text = browser.evaluate("document.body.innerText")
        if re.search(r"\b(sequenceDiagram|flowchart|stateDiagram|graph [TL][DR])\b", text):
            fail(f"{page}: diagram source is visible as text")
        offsite = [u for u in browser.requested_urls() if not u.startswith(("file:", "data:"))]
        if offsite:
            fail(f"{page}: requests outside the site: {offsite}")
        log(f"{page}: {len(rendered)} diagrams rendered as svg, no request outside file:")
        # The first diagram of each page, alone, then in its page.
        box = browser.call("DOM.getBoxModel", backendNodeId=rendered[0]["backendNodeId"])
        x, y = box["model"]["border"][:2]
        width, height = box["model"]["width"], box["model"]["height"]
        name = Path(page).stem
        clip = {"x": x, "y": y, "width": width, "height": height}
        check_diagram_pixels(screenshot(browser, f"diagram-{name}.png", clip))
        top = max(0.0, y - 150)
        screenshot(browser, f"page-{name}.png", {"x": 0, "y": top, "width": 1280, "height": 1000})


def check_sidebar_links(browser: Browser) -> None:
    browser.open((SITE / "index.html").as_uri())
    hrefs: list[str] = browser.evaluate(
        "[...document.querySelectorAll('nav.md-nav--primary a.md-nav__link[href]')]"
        ".map(a => a.href)"
    )
    pages = sorted({h.split("#")[0] for h in hrefs if h.startswith("file:")})
    if len(pages) < 10:
        fail(f"the sidebar has only {len(pages)} page links: {hrefs}")
    for href in pages:
        if not href.endswith(".html"):
            fail(f"sidebar link {href} is not a .html file (use_directory_urls?)")
        if not Path(href.removeprefix("file://")).is_file():
            fail(f"sidebar link {href} points at no file")
    target = next(h for h in pages if h.endswith("/quickstart.html"))
    browser.evaluate(
        "document.querySelector('nav.md-nav--primary a.md-nav__link[href$=\"quickstart.html\"]')"
        ".click()"
    )
    loaded = "location.href + ' ' + document.readyState"
    deadline = time.monotonic() + RENDER_TIMEOUT
    while browser.evaluate(loaded, during_navigation=True) != f"{target} complete":
        if time.monotonic() > deadline:
            fail(f"clicking the sidebar link did not open {target}")
        time.sleep(0.2)  # polling the page's location, bounded by the deadline
    title = browser.evaluate("document.querySelector('article h1')?.textContent ?? null")
    if title is None or "quickstart" not in title.lower():
        fail(f"{target} opened, but its heading is {title!r}")
    log(f"{len(pages)} sidebar links are .html files; clicking one opened {Path(target).name}")


def check_no_sphinx_roles() -> None:
    leaks = [
        f"{page.relative_to(SITE)}: {match.group(0)}"
        for page in sorted(SITE.rglob("*.html"))
        for match in SPHINX_ROLE.finditer(page.read_text())
    ]
    if leaks:
        fail(f"Sphinx roles in the rendered site: {leaks}")
    log("no Sphinx role in the rendered pages")


def main() -> None:
    if not (SITE / "index.html").is_file():
        fail("site/index.html is missing: run `make docs` first")
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    check_no_sphinx_roles()
    with tempfile.TemporaryDirectory(
        prefix="grpcstream-docs-check-", ignore_cleanup_errors=True
    ) as profile:
        browser = Browser(Path(profile))
        try:
            check_diagrams(browser)
            check_sidebar_links(browser)
        finally:
            browser.close()
    log(
        f"screenshots in {OUT.relative_to(ROOT)}/; all checks passed in "
        f"{time.monotonic() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
