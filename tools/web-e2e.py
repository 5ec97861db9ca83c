#!/usr/bin/env python3
"""End-to-end test of a report folder's browser explorer in real headless Chromium (standard library only).

    python3 tools/web-e2e.py REPORT_DIR [SCREENSHOT_DIR] [--faces NATIVE_CSV PHOTO_DIR] [--clip NATIVE_CSV PHOTO_DIR]

REPORT_DIR is a report folder written by `popalign report` from a binary that embeds the explorer
(tools/build-web.sh before building it): explorer.html, pkg/, report.json, images/. The test copies it,
adds one image slot whose prompt is `<img src=x onerror=alert(1)>`, serves the copy on 127.0.0.1 and
checks, with the SwiftShader WebGPU adapter:
  1. every discrepancy and quality number on the overview equals report.json (value attribute exactly,
     shown text to 3 decimals);
  2. the XSS prompt shows literally, no element from it exists, and no dialog opens;
  3. `#/prompt/0` shows the first prompt; its images' "classify in browser" (burn-wgpu) give
     probabilities within 1e-4 of the native ones stored in report.json, for every model's first image;
  4. the overview has a loss and an accuracy chart per trained model;
  5. opened from disk (file://, the unmodified folder), the overview shows the same numbers, the prompt page
     shows its images, and classifying a shown image says what to do instead of failing silently;
  6. a screenshot of each view is saved in SCREENSHOT_DIR (default: target/e2e-screenshots);
  7. with --faces (the report carries the face classifier: `popalign report --face-weights`), each photo of
     PHOTO_DIR chosen in the drop zone is classified in the browser (MTCNN and the dlib networks on
     burn-wgpu) with the face found or not as natively, and probabilities within 1e-4 of NATIVE_CSV (what
     `popalign classify --classifier faces` wrote for the same files), over http and from file://; the
     drop zone's menu starts on the first classifier the report carries;
  8. with --clip (the report also carries CLIP zero-shot: `popalign report --clip-weights`), the same with
     the CLIP classifier chosen in the menu, against `popalign classify --classifier clip`.
Prints time to interactive and the in-browser classifier latency.
"""
import csv
import base64
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser import Browser, serve  # noqa: E402

XSS = "<img src=x onerror=alert(1)>"
TOLERANCE = 1e-4
TIMEOUT = float(os.environ.get("WEB_E2E_TIMEOUT", "120"))


def screenshot(cdp, session, path):
    data = cdp.call("Page.captureScreenshot", session, format="png", captureBeyondViewport=True)["data"]
    with open(path, "wb") as f:
        f.write(base64.b64decode(data))
    print(f"web-e2e: screenshot {path}")


def prepare(report_dir, tmp):
    copy = os.path.join(tmp, "report")
    shutil.copytree(report_dir, copy)
    with open(os.path.join(copy, "report.json")) as f:
        report = json.load(f)
    attack = dict(report["images"][0], prompt=XSS, name="xss.png")
    report["images"].append(attack)
    with open(os.path.join(copy, "report.json"), "w") as f:
        json.dump(report, f)
    return copy, report


def check_overview(cdp, session, report, failures):
    cells = cdp.eval(session, """[...document.querySelectorAll('td[data-metric]')].map(td => ({
        metric: td.dataset.metric, model: td.dataset.model, value: td.dataset.value, text: td.textContent}))""")
    models = {m["model"]: m for m in report["models"]}
    checked = 0
    for cell in cells:
        model = models[cell["model"]]
        metric = cell["metric"]
        if metric == "quality":
            want = model["quality"]["mean"]
        elif metric.startswith("quality-"):
            want = model["more_quality"][int(metric[len("quality-"):]) - 1]["mean"]
        elif metric.startswith("discrepancy-"):
            want = model["axes"][metric[len("discrepancy-"):]]["discrepancy"]
        elif metric.startswith("face-found-"):
            want = model["axes"][metric[len("face-found-"):]]["face_found_rate"]
        else:
            failures.append(f"unknown metric cell {metric}")
            continue
        if want is None:
            ok = cell["value"] == ""
        else:
            ok = cell["value"] != "" and float(cell["value"]) == want and cell["text"].startswith(f"{want:.3f}")
        checked += 1
        if not ok:
            failures.append(f"{metric} of {cell['model']}: page {cell['value']!r} / {cell['text']!r}, report {want}")
    expected = len(models) * (2 * len(report["models"][0]["axes"]) + 1)
    if checked != expected:
        failures.append(f"checked {checked} number cells, expected {expected}")
    print(f"web-e2e: {checked} overview numbers equal report.json")
    curves = cdp.eval(session, "document.querySelectorAll('#training figure').length")
    if curves != 2 * len(report.get("training", [])):
        failures.append(f"{curves} training charts for {len(report.get('training', []))} trained models")


def check_xss(cdp, session, failures):
    text = cdp.eval(session, "document.body.innerText")
    injected = cdp.eval(session, "document.querySelectorAll('img[src=\"x\"]').length")
    dialogs = [e for e in cdp.events if e.get("method") == "Page.javascriptDialogOpening"]
    if XSS not in text:
        failures.append("the XSS prompt is not shown as text")
    if injected or dialogs:
        failures.append(f"the XSS prompt became markup ({injected} elements, {len(dialogs)} dialogs)")


def classify_shown(cdp, session, failures):
    cdp.wait_for(session, "(document.getElementById('webgpu')||{}).textContent?.startsWith('WebGPU: ok')",
             "the WebGPU probe", TIMEOUT)
    buttons = cdp.eval(session, """[...document.querySelectorAll('#images tr:first-child td.image-cell')]
        .map(td => td.dataset.model)""")
    if not buttons:
        failures.append("no image with a classify button on the prompt page")
    latencies = []
    for i, model in enumerate(buttons):
        t0 = time.monotonic()
        cdp.eval(session, f"document.querySelectorAll('#images tr:first-child td.image-cell')[{i}]"
                          ".querySelector('button.classify').click()")
        cell = f"document.querySelectorAll('#images tr:first-child td.image-cell')[{i}]"
        text = cdp.wait_for(session, f"(() => {{ const r = {cell}.querySelector('.browser-result');"
                        " return r && !r.textContent.endsWith('…') ? r.textContent : null })()", "a classification", TIMEOUT)
        latencies.append(time.monotonic() - t0)
        diff = cdp.eval(session, f"{cell}.querySelector('.browser-result').dataset.maxDiff")
        print(f"web-e2e: {model}: {text}")
        if not diff or float(diff) > TOLERANCE:
            failures.append(f"{model}: browser vs native probabilities: {text}")
    if latencies:
        print(f"web-e2e: in-browser classification, click to result: "
              f"{', '.join(f'{t * 1000:.0f} ms' for t in latencies)} (first includes the classifier's upload)")


def read_native(csv_path):
    """`popalign classify`'s CSV → {file name: (face found, {axis: probabilities})}."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    native = {}
    for row in rows:
        axes = {c[:-len("_probs")]: [float(v) for v in row[c].split()]
                for c in row if c.endswith("_probs") and row[c]}
        native[os.path.basename(row["file"])] = (row["face_found"] == "true", axes)
    return native


def classify_dropped(cdp, session, check, failures, where):
    """Chooses the carried classifier `kind` in the drop zone's menu, then each photo in its file input (as a
    reader would), and compares the browser's answer with the native CSV."""
    kind, csv_path, photo_dir = check
    native = read_native(csv_path)
    cdp.wait_for(session, "(document.getElementById('webgpu')||{}).textContent?.startsWith('WebGPU: ok')",
                 "the WebGPU probe", TIMEOUT)
    chosen = cdp.eval(session, f"""(() => {{ const s = document.getElementById('drop-classifier');
        const o = [...s.options].find(o => o.textContent.startsWith({json.dumps(kind + ':')}));
        if (!o) return false;
        s.value = o.value; s.dispatchEvent(new Event('change')); return true }})()""")
    if not chosen:
        failures.append(f"{where}: the drop zone offers no {kind} classifier")
        return
    latencies = []
    for name in sorted(native):
        found, probs = native[name]
        root = cdp.call("DOM.getDocument", session)["root"]["nodeId"]
        node = cdp.call("DOM.querySelector", session, nodeId=root, selector="#drop-file")["nodeId"]
        # The same file twice in a row fires no change event: clear the input first.
        cdp.eval(session, "document.getElementById('drop-file').value = ''")
        cdp.call("DOM.setFileInputFiles", session, nodeId=node, files=[os.path.abspath(os.path.join(photo_dir, name))])
        text = cdp.wait_for(session, f"""(() => {{ const r = document.getElementById('drop-result');
            return r.textContent.startsWith({json.dumps(name + ':')}) && !r.textContent.endsWith('…') ? r.textContent : null }})()""",
                            f"the browser's answer for {name}", TIMEOUT)
        got = cdp.eval(session, "document.getElementById('drop-result').dataset.attributes")
        ms = cdp.eval(session, "document.getElementById('drop-result').dataset.ms")
        latencies.append(f"{name} {ms} ms")
        if not got:
            failures.append(f"{where}: {kind}: {name}: {text}")
            continue
        got = json.loads(got)
        if got["face_found"] != found:
            failures.append(f"{where}: {kind}: {name}: face found {got['face_found']} in the browser, {found} natively")
            continue
        diff = max((abs(b - n) for axis in probs for b, n in zip(got["probabilities"].get(axis, []), probs[axis])),
                   default=0.0)
        if set(got["probabilities"]) != set(probs) or diff > TOLERANCE:
            failures.append(f"{where}: {kind}: {name}: browser {got['probabilities']}, native {probs}")
        print(f"web-e2e: {where}: {kind}: dropped {text} (max |browser − native| {diff:.1e})")
    print(f"web-e2e: {where}: {kind} classifier in the browser, choose to result: {', '.join(latencies)} "
          "(the first includes loading the weights)")


def classify_all_dropped(cdp, session, checks, failures, where):
    """The menu starts on the first carried classifier; then every --faces / --clip check."""
    if not checks:
        return
    selected = cdp.eval(session, "document.getElementById('drop-classifier').selectedOptions[0].textContent")
    if not selected.startswith(checks[0][0] + ":"):
        failures.append(f"{where}: the drop zone starts on {selected!r}, not the first carried classifier")
    for check in checks:
        classify_dropped(cdp, session, check, failures, where)


def check_from_disk(report_dir, tmp, shots, failures, checks):
    """The report folder opened straight from disk: report.js and pkg/popalign_web_wasm.js stand in for the
    fetches file:// pages may not make."""
    folder = os.path.join(tmp, "from-disk")
    shutil.copytree(report_dir, folder)
    with open(os.path.join(folder, "report.json")) as f:
        report = json.load(f)
    url = "file://" + os.path.abspath(folder) + "/explorer.html#/"
    t0 = time.monotonic()
    browser = Browser(url, TIMEOUT)
    with browser as (cdp, session):
        try:
            cdp.call("Page.enable", session)
            cdp.wait_for(session, "document.querySelector('#summary td[data-metric]') !== null",
                         "the overview from file://", TIMEOUT)
            print(f"web-e2e: from file://, overview interactive {time.monotonic() - t0:.2f} s after the browser started")
            check_overview(cdp, session, report, failures)
            screenshot(cdp, session, os.path.join(shots, "overview-file.png"))
            cdp.eval(session, "location.hash = '#/prompt/0'")
            cdp.wait_for(session, "(document.getElementById('prompt-title')||{}).textContent", "the prompt page", TIMEOUT)
            loaded = cdp.wait_for(session, """(() => { const imgs = [...document.querySelectorAll('#images img')];
                return imgs.length && imgs.every(i => i.complete) ? imgs.filter(i => i.naturalWidth > 0).length : null })()""",
                                  "the prompt's images", TIMEOUT)
            if not loaded:
                failures.append("from file://: no image of the prompt page loaded")
            cdp.wait_for(session, "(document.getElementById('webgpu')||{}).textContent?.startsWith('WebGPU: ok')",
                         "the WebGPU probe", TIMEOUT)
            cdp.eval(session, "document.querySelector('#images td.image-cell button.classify').click()")
            text = cdp.wait_for(session, """(() => { const r = document.querySelector('#images td.image-cell .browser-result');
                return r && !r.textContent.endsWith('…') ? r.textContent : null })()""", "the classify answer", TIMEOUT)
            print(f"web-e2e: from file://, {loaded} images shown; classify a shown image: {text}")
            if "python3 -m http.server" not in text and "max |browser" not in text:
                failures.append(f"from file://, classifying a shown image gave {text!r}")
            screenshot(cdp, session, os.path.join(shots, "prompt-file.png"))
            classify_all_dropped(cdp, session, checks, failures, "file://")
        except Exception:
            print("--- browser log ---\n" + browser.log_tail(), file=sys.stderr)
            raise


def main():
    args = sys.argv[1:]
    checks = []  # (carried kind, native CSV, photo folder), in the order the report carries them
    for kind in ("faces", "clip"):
        if f"--{kind}" in args:
            i = args.index(f"--{kind}")
            check = (kind, *args[i + 1:i + 3])
            del args[i:i + 3]
            if len(check) != 3:
                sys.exit(__doc__)
            checks.append(check)
    if not args:
        sys.exit(__doc__)
    report_dir = args[0]
    shots = args[1] if len(args) > 1 else os.path.join("target", "e2e-screenshots")
    if not os.path.isfile(os.path.join(report_dir, "pkg", "popalign_web_bg.wasm")):
        sys.exit(f"web-e2e: {report_dir} has no explorer (build www/pkg with tools/build-web.sh, then popalign)")
    os.makedirs(shots, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="web-e2e-")
    failures = []
    server = None
    try:
        folder, report = prepare(report_dir, tmp)
        server, base = serve(folder)
        browser = Browser(base + "explorer.html#/", TIMEOUT)
        t0 = time.monotonic()
        with browser as (cdp, session):
            try:
                cdp.call("Page.enable", session)
                cdp.wait_for(session, "document.querySelector('#summary td[data-metric]') !== null", "the overview", TIMEOUT)
                print(f"web-e2e: overview interactive {time.monotonic() - t0:.2f} s after the browser started "
                      f"({len(report['images'])} image slots)")
                check_overview(cdp, session, report, failures)
                check_xss(cdp, session, failures)
                screenshot(cdp, session, os.path.join(shots, "overview.png"))

                prompts = list(dict.fromkeys(slot["prompt"] for slot in report["images"]))
                cdp.eval(session, "location.hash = '#/prompt/0'")
                title = cdp.wait_for(session, "(document.getElementById('prompt-title')||{}).textContent",
                                 "the prompt page", TIMEOUT)
                if title != prompts[0]:
                    failures.append(f"prompt page shows {title!r}, expected {prompts[0]!r}")
                classify_shown(cdp, session, failures)
                screenshot(cdp, session, os.path.join(shots, "prompt.png"))

                cdp.eval(session, f"location.hash = '#/prompt/{prompts.index(XSS)}'")
                title = cdp.wait_for(session, "(document.getElementById('prompt-title')||{}).textContent",
                                 "the XSS prompt's page", TIMEOUT)
                if title != XSS:
                    failures.append(f"the XSS prompt's page title is {title!r}")
                check_xss(cdp, session, failures)
                screenshot(cdp, session, os.path.join(shots, "prompt-xss.png"))
                classify_all_dropped(cdp, session, checks, failures, "http")
                if checks:
                    screenshot(cdp, session, os.path.join(shots, "dropped.png"))
            except Exception:
                print("--- browser log ---\n" + browser.log_tail(), file=sys.stderr)
                raise
        check_from_disk(report_dir, tmp, shots, failures, checks)
    except Exception as e:  # report and fail
        failures.append(f"{type(e).__name__}: {e}")
    finally:
        if server:
            server.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        sys.exit("web-e2e: FAILED:\n  " + "\n  ".join(failures))
    print("web-e2e: ok")


if __name__ == "__main__":
    main()
