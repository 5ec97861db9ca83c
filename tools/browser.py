"""Headless Chromium driven over the DevTools protocol on a pipe, standard library only.

Shared by tools/web-smoke.py and tools/web-e2e.py. Chromium gets the SwiftShader WebGPU flags
(shared/reference/rust-stack.md), so WebGPU works without a GPU.

Why not `chromium --dump-dom --virtual-time-budget=N`: under virtual time, GPUAdapter.requestDevice() does
not resolve before the budget runs out (Chromium 148). Env: CHROMIUM (browser binary),
WEB_SMOKE_EXTRA_FLAGS (appended to the browser flags).
"""
import fcntl
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu-sandbox", "--enable-unsafe-webgpu",
    "--enable-features=Vulkan", "--use-angle=swiftshader", "--use-webgpu-adapter=swiftshader",
    "--enable-unsafe-swiftshader", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--window-size=1200,900",
]


class Quiet(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm"}

    def log_message(self, *args):
        pass


def serve(directory):
    """Serves `directory` on 127.0.0.1 (a secure context, so WebGPU is exposed); returns (server, base URL)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=directory))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


class Cdp:
    """Minimal DevTools-protocol client over --remote-debugging-pipe (fd 3: to browser, fd 4: from browser).
    Events that arrive while waiting for a reply are kept in `events`."""

    def __init__(self, to_browser, from_browser):
        self.w, self.r, self.buf, self.next_id, self.events = to_browser, from_browser, b"", 0, []

    def call(self, method, session=None, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self.buf:
                chunk = os.read(self.r, 1 << 16)
                if not chunk:
                    raise RuntimeError("browser closed the DevTools pipe")
                self.buf += chunk
            raw, self.buf = self.buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, session, expr, what, timeout=120, interval=0.02):
        """Evaluates `expr` until it is truthy and returns its value; fails naming `what` after `timeout` s."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            value = self.eval(session, expr)
            if value:
                return value
            time.sleep(interval)
        raise RuntimeError(f"timed out waiting for {what}")

    def eval(self, session, expr):
        res = self.call("Runtime.evaluate", session, expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expr}: {res['exceptionDetails']}")
        return res["result"].get("value")


def fd_above(fd, lowest):
    """Duplicates fd to a number >= lowest and closes the original."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, lowest)
    os.close(fd)
    return high


def find_browser():
    for name in [os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"]:
        if name and shutil.which(name):
            return shutil.which(name)
    sys.exit("no chromium found (apt-get install chromium)")


class Browser:
    """Starts Chromium on `url` and attaches to its page: `with Browser(url) as (cdp, session): ...`."""

    def __init__(self, url, timeout=120):
        self.url, self.timeout = url, timeout

    def __enter__(self):
        self.tmp = tempfile.mkdtemp(prefix="popalign-browser-")
        xdg = os.path.join(self.tmp, "xdg")
        os.mkdir(xdg, 0o700)
        to_r, to_w = os.pipe()      # we write, browser reads on fd 3
        from_r, from_w = os.pipe()  # browser writes on fd 4, we read
        # Move the browser's ends above 4 so the dup2 onto 3 and 4 in the child cannot clobber one another.
        to_r, from_w = fd_above(to_r, 10), fd_above(from_w, 10)

        def child_fds():
            os.dup2(to_r, 3)
            os.dup2(from_w, 4)

        self.log = open(os.path.join(self.tmp, "browser.log"), "w+")
        self.proc = subprocess.Popen(
            [find_browser(), *FLAGS, *os.environ.get("WEB_SMOKE_EXTRA_FLAGS", "").split(),
             f"--user-data-dir={self.tmp}/profile", "--remote-debugging-pipe", self.url],
            stdout=self.log, stderr=self.log, preexec_fn=child_fds, pass_fds=(3, 4),
            env={**os.environ, "XDG_RUNTIME_DIR": xdg},
        )
        os.close(to_r)
        os.close(from_w)
        self.cdp = Cdp(to_w, from_r)
        t0, page = time.monotonic(), None
        while page is None and time.monotonic() - t0 < self.timeout:
            pages = [t for t in self.cdp.call("Target.getTargets")["targetInfos"] if t["type"] == "page"]
            page = pages[0] if pages else time.sleep(0.2)
        if page is None:
            raise RuntimeError("no page target appeared")
        session = self.cdp.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        return self.cdp, session

    def log_tail(self, n=30):
        self.log.seek(0)
        lines = [l for l in self.log.read().splitlines() if "dbus" not in l]
        return "\n".join(lines[-n:])

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return False
