#!/usr/bin/env python3
"""Screenshots a step's Logs tab in ZenML's dashboard, with headless Chromium driven over its
DevTools protocol (the Logs tab is a side sheet without a URL of its own, so a plain
`chromium --headless --screenshot=<url>` shows only the loading screen).

    python3 dashboard_screenshot.py --server http://127.0.0.1:8237 --run-id <uuid> \
        --step rust_step --wait-for "rust: score below threshold" --out step-logs.png

Opens `<server>/projects/<project>/runs/<run-id>`, clicks the step's node, then the sheet's
Logs tab, waits until the page shows every `--wait-for` text, and writes a PNG of the window.
Marks the server's (single, local) user as done with the onboarding survey first, which the
dashboard otherwise shows a new user instead of the run. Standard library only: the websocket
client below is the little DevTools needs (text frames, client masking, no extensions).

`scripts/dashboard-screenshot.sh` sets up the server and the run and calls this.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any, Dict, List, Optional

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--hide-scrollbars", "--mute-audio",
)


# --- a minimal websocket client (RFC 6455) -------------------------------------------------


class WebSocket:
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        assert url.startswith("ws://"), url
        host_port, _, path = url[len("ws://"):].partition("/")
        host, _, port = host_port.partition(":")
        self.sock = socket.create_connection((host, int(port or 80)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")

    def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buffer)))
            if not chunk:
                raise ConnectionError("websocket closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def send(self, text: str) -> None:
        payload = text.encode()
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _frame(self) -> tuple:
        b0, b1 = self._exactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._exactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._exactly(8))[0]
        mask = self._exactly(4) if b1 & 0x80 else None
        data = self._exactly(n)
        if mask:
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return b0 & 0x80, b0 & 0x0F, data

    def recv(self) -> str:
        """The next text message (pings answered, fragments joined)."""
        parts: List[bytes] = []
        while True:
            fin, opcode, data = self._frame()
            if opcode == 0x8:
                raise ConnectionError("websocket closed by the browser")
            if opcode == 0x9:  # ping: pong (masked, as a client must)
                mask = os.urandom(4)
                body = bytes(b ^ mask[i % 4] for i, b in enumerate(data[:125]))
                self.sock.sendall(struct.pack("!BB", 0x8A, 0x80 | len(body)) + mask + body)
                continue
            if opcode == 0xA:
                continue
            parts.append(data)
            if fin:
                return b"".join(parts).decode()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# --- the DevTools protocol -----------------------------------------------------------------


class DevTools:
    def __init__(self, ws_url: str) -> None:
        self.ws = WebSocket(ws_url)
        self.next_id = 0

    def call(self, method: str, **params: Any) -> Dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def js(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def wait_js(self, expression: str, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.2)

    def click(self, x: float, y: float) -> None:
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)


# The centre of the smallest visible element whose text is exactly `text` (after trimming),
# within `root` (a CSS selector, default the document); null when there is none.
FIND_TEXT = r"""
((text, root) => {
  const scope = root ? document.querySelector(root) : document;
  if (!scope) return null;
  let best = null;
  for (const el of scope.querySelectorAll('*')) {
    if ((el.innerText || '').trim() !== text) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (!best || r.width * r.height < best.area) {
      best = {x: r.x + r.width / 2, y: r.y + r.height / 2, area: r.width * r.height};
    }
  }
  return best;
})(%s, %s)
"""


# The step's side sheet.
SHEET = '[role="dialog"]'

# The lowest bottom edge of the visible text in `root`, in the window.
CONTENT_BOTTOM = r"""
((root) => {
  const scope = document.querySelector(root);
  if (!scope) return null;
  let bottom = 0;
  const walker = document.createTreeWalker(scope, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    if (!walker.currentNode.textContent.trim()) continue;
    const range = document.createRange();
    range.selectNodeContents(walker.currentNode);
    for (const r of range.getClientRects()) {
      if (r.height > 0 && r.bottom <= window.innerHeight) bottom = Math.max(bottom, r.bottom);
    }
  }
  return bottom || null;
})(%s)
"""


def find_text(tools: DevTools, text: str, root: Optional[str] = None) -> Optional[Dict]:
    return tools.js(FIND_TEXT % (json.dumps(text), json.dumps(root)))


def wait_still(
    tools: DevTools, text: str, root: Optional[str], timeout: float, what: str,
    width: int, height: int,
) -> Dict:
    """Where `text` is once it is inside the window and has stopped moving (the graph lays
    itself out, the sheet slides in)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        here = find_text(tools, text, root)
        inside = here and 0 <= here["x"] < width and 0 <= here["y"] < height
        if inside and last and (here["x"], here["y"]) == (last["x"], last["y"]):
            return here
        last = here if inside else None
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.3)


def page_has(texts: List[str]) -> str:
    checks = " && ".join(f"document.body.innerText.includes({json.dumps(t)})" for t in texts)
    return f"!!(document.body && {checks})"


# --- the server: the onboarding survey -----------------------------------------------------


def finish_onboarding(server: str) -> None:
    """A new user gets an onboarding survey instead of the page asked for; this clears it
    (the local server has no authentication: NO_AUTH)."""
    body = json.dumps(
        {"email_opted_in": False, "user_metadata": {"finished_onboarding_survey": True}}
    ).encode()
    request = urllib.request.Request(
        f"{server}/api/v1/current-user", data=body, method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


# --- chromium ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_chromium(binary: str, width: int, height: int, profile: str) -> tuple:
    port = free_port()
    cmd = [
        binary, *CHROMIUM_FLAGS, f"--remote-debugging-port={port}",
        f"--window-size={width},{height}", f"--user-data-dir={profile}", "about:blank",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages:
                return proc, pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited {proc.returncode} before its DevTools came up")
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError("chromium's DevTools did not come up in 30 s")
        time.sleep(0.2)


def screenshot(args: argparse.Namespace) -> None:
    finish_onboarding(args.server)
    profile = tempfile.mkdtemp(prefix="zenml-otel-chromium-")
    proc, ws_url = start_chromium(args.chromium, args.width, args.height, profile)
    tools = None
    try:
        tools = DevTools(ws_url)
        tools.call("Page.enable")
        tools.call("Runtime.enable")
        tools.call(
            "Emulation.setDeviceMetricsOverride", width=args.width, height=args.height,
            deviceScaleFactor=1, mobile=False,
        )
        url = f"{args.server}/projects/{args.project}/runs/{args.run_id}"
        log(f"opening {url}")
        tools.call("Page.navigate", url=url)
        node = wait_still(
            tools, args.step, None, args.timeout, f"the step node {args.step!r}",
            args.width, args.height,
        )
        log(f"clicking the step {args.step!r} at ({node['x']:.0f}, {node['y']:.0f})")
        tools.click(node["x"], node["y"])
        # The run page has Logs tabs of its own: take the step sheet's (a dialog).
        tab = wait_still(
            tools, "Logs", SHEET, args.timeout, "the step sheet's Logs tab",
            args.width, args.height,
        )
        log(f"clicking the Logs tab at ({tab['x']:.0f}, {tab['y']:.0f})")
        tools.click(tab["x"], tab["y"])
        tools.wait_js(page_has(args.wait_for), args.timeout, f"the texts {args.wait_for}")
        time.sleep(args.settle)
        # The window down to a little below the sheet's last line (no empty space).
        bottom = tools.js(CONTENT_BOTTOM % json.dumps(SHEET)) or args.height
        height = min(args.height, int(bottom) + 24)
        shot = tools.call(
            "Page.captureScreenshot", format="png",
            clip={"x": 0, "y": 0, "width": args.width, "height": height, "scale": 1},
        )
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        log(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")
        tools.ws.close()
    except Exception:
        if tools is not None:  # what the page showed, to see what went wrong
            failed = os.path.splitext(args.out)[0] + ".failed.png"
            try:
                shot = tools.call("Page.captureScreenshot", format="png")
                with open(failed, "wb") as f:
                    f.write(base64.b64decode(shot["data"]))
                log(f"failed: the page as it was is in {failed}")
            except Exception:
                pass
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def log(text: str) -> None:
    print(f"dashboard_screenshot: {text}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="e.g. http://127.0.0.1:8237")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--project", default="default")
    parser.add_argument("--step", required=True, help="the step's name, as its node shows it")
    parser.add_argument("--wait-for", action="append", default=[],
                        help="a text the Logs tab must show before the screenshot (repeatable)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--settle", type=float, default=1.0,
                        help="seconds to let the page settle before a click and the screenshot")
    args = parser.parse_args()
    screenshot(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
