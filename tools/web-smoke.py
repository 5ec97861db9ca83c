#!/usr/bin/env python3
"""Smoke test of the built browser app (www/ + www/pkg/) in real headless Chromium, standard library only.

Serves www/ on 127.0.0.1 (a secure context, so WebGPU is exposed), opens it in headless Chromium with the
SwiftShader WebGPU adapter (no GPU needed), waits until the app's WebGPU probe has finished, then checks the
DOM: the Leptos-rendered title, the "no report" placeholder, and "WebGPU: ok".

    bash tools/build-web.sh && python3 tools/web-smoke.py      # needs: apt-get install chromium

Why not `chromium --dump-dom --virtual-time-budget=N`: under virtual time, GPUAdapter.requestDevice() does
not resolve before the budget runs out (Chromium 148), so the dump always shows "WebGPU: probing…". This script
drives the browser over the DevTools protocol on a pipe (--remote-debugging-pipe) and polls the real DOM.

Env: CHROMIUM (browser binary), WEB_SMOKE_EXTRA_FLAGS (appended to the browser flags), WEB_SMOKE_TIMEOUT (seconds, default 120),
     WEB_SMOKE_EXPECT_GPU=0 to accept "WebGPU not available" (then only checks that the app rendered).
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WWW = os.path.join(REPO, "www")
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu-sandbox", "--enable-unsafe-webgpu",
    "--enable-features=Vulkan", "--use-angle=swiftshader", "--use-webgpu-adapter=swiftshader",
    "--enable-unsafe-swiftshader", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]


class Quiet(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm"}

    def log_message(self, *args):
        pass


class Cdp:
    """Minimal DevTools-protocol client over --remote-debugging-pipe (fd 3: to browser, fd 4: from browser)."""

    def __init__(self, to_browser, from_browser):
        self.w, self.r, self.buf, self.next_id = to_browser, from_browser, b"", 0

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

    def eval(self, session, expr):
        res = self.call("Runtime.evaluate", session, expression=expr, returnByValue=True)
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
    sys.exit("web-smoke: no chromium found (apt-get install chromium)")


def main():
    if not os.path.isfile(os.path.join(WWW, "pkg", "popalign_web_bg.wasm")):
        sys.exit("web-smoke: www/pkg is missing; run tools/build-web.sh first")
    timeout = float(os.environ.get("WEB_SMOKE_TIMEOUT", "120"))
    expect_gpu = os.environ.get("WEB_SMOKE_EXPECT_GPU", "1") != "0"

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=WWW))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html"

    tmp = tempfile.mkdtemp(prefix="web-smoke-")
    xdg = os.path.join(tmp, "xdg")
    os.mkdir(xdg, 0o700)
    to_r, to_w = os.pipe()      # we write, browser reads on fd 3
    from_r, from_w = os.pipe()  # browser writes on fd 4, we read
    # Move the browser's ends above 4 so the dup2 onto 3 and 4 in the child cannot clobber one another.
    to_r, from_w = fd_above(to_r, 10), fd_above(from_w, 10)

    def child_fds():
        os.dup2(to_r, 3)
        os.dup2(from_w, 4)

    log = open(os.path.join(tmp, "browser.log"), "w+")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [find_browser(), *FLAGS, *os.environ.get("WEB_SMOKE_EXTRA_FLAGS", "").split(), f"--user-data-dir={tmp}/profile", "--remote-debugging-pipe", url],
        stdout=log, stderr=log, preexec_fn=child_fds, pass_fds=(3, 4),
        env={**os.environ, "XDG_RUNTIME_DIR": xdg},
    )
    os.close(to_r)
    os.close(from_w)
    failures = []
    try:
        cdp = Cdp(to_w, from_r)
        page = None
        while page is None and time.monotonic() - t0 < timeout:
            pages = [t for t in cdp.call("Target.getTargets")["targetInfos"] if t["type"] == "page"]
            page = pages[0] if pages else time.sleep(0.2)
        if page is None:
            raise RuntimeError("no page target appeared")
        session = cdp.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]

        status = None
        while time.monotonic() - t0 < timeout:
            status = cdp.eval(session, "(document.getElementById('webgpu') || {}).textContent || null")
            boot = cdp.eval(session, "(document.getElementById('boot') || {}).textContent || null")
            if boot and ("failed" in boot or "file://" in boot):
                break  # index.html's loader reported an error
            if status and not status.startswith("WebGPU: probing"):
                break
            time.sleep(0.25)
        elapsed = time.monotonic() - t0
        title = cdp.eval(session, "(document.querySelector('main#app h1#title') || {}).textContent || null")
        body = cdp.eval(session, "document.body.innerText")
        dom = cdp.eval(session, "document.documentElement.outerHTML")
        print(f"web-smoke: {url} settled in {elapsed:.1f}s")
        print(f"web-smoke: title:  {title!r}")
        print(f"web-smoke: status: {status!r}")
        if title != "popalign report explorer":
            failures.append("Leptos-rendered title missing")
        if "No report is loaded." not in (body or ""):
            failures.append("placeholder missing")
        if expect_gpu and not (status or "").startswith("WebGPU: ok"):
            failures.append("WebGPU probe did not report ok")
        if failures:
            print("--- DOM ---\n" + (dom or ""), file=sys.stderr)
    except Exception as e:  # report and fail
        failures.append(f"{type(e).__name__}: {e}")
    finally:
        proc.kill()
        proc.wait()
        server.shutdown()
        if failures:
            log.seek(0)
            lines = [l for l in log.read().splitlines() if "dbus" not in l]
            print("--- browser log (tail, dbus noise removed) ---\n" + "\n".join(lines[-30:]), file=sys.stderr)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        sys.exit("web-smoke: FAILED: " + "; ".join(failures))
    print("web-smoke: ok")


if __name__ == "__main__":
    main()
