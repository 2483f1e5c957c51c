"""The owner's web UI in a real browser: Debian's Chromium (headless shell) driven by Playwright for Python.

One story on a sample owner: `duo owner serve` prints the UI's address; the owner opens it and sees Home, uploads
a CSV file through the Data form and confirms it, makes an invite in the UI; an FI pairs and asks from the command line; the request appears on the open Requests page
without a reload; the owner approves it in the UI and the FI gets the answer; a second request is denied with a
reason, which reaches the FI; the log verifies. Every response the browser gets carries the CSP, and the
browser reports no CSP violation.

Usage: python3 tests/ui/story.py [--duo target/debug/duo] [--browser PATH]
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from playwright.sync_api import expect, sync_playwright

BROWSERS = [
    "/usr/lib/chromium/chromium-headless-shell",
    "/usr/bin/chromium-headless-shell",
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium",
]


def find_browser(given):
    for path in [given] + BROWSERS if given else BROWSERS:
        if path and os.access(path, os.X_OK):
            return path
    sys.exit("no Chromium found: install Debian's chromium-headless-shell (or chromium)")


class Duo:
    def __init__(self, exe, home):
        self.exe, self.home = exe, home

    def run(self, *args):
        out = subprocess.run([self.exe, "--home", self.home, *args], capture_output=True, text=True)
        if out.returncode != 0:
            raise AssertionError(f"duo {args} failed: {out.stdout}\n{out.stderr}")
        return out.stdout

    def json(self, *args):
        return json.loads(self.run(*args, "--json"))


def serve(owner):
    proc = subprocess.Popen(
        [owner.exe, "--home", owner.home, "owner", "serve", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ws = proc.stdout.readline().strip()
    assert ws.startswith("ws://127.0.0.1:"), ws
    deadline = time.time() + 20
    while True:
        out = subprocess.run([owner.exe, "--home", owner.home, "owner", "ui"], capture_output=True, text=True)
        if out.returncode == 0:
            return proc, ws, out.stdout.strip()
        assert time.time() < deadline, "the UI did not start"
        time.sleep(0.05)


def story(page, owner, fi, ws, url, problems):
    origin = re.match(r"http://[^/]+", url).group(0)

    def on_response(r):
        if r.url.startswith(origin) and "default-src 'none'" not in (r.headers.get("content-security-policy") or ""):
            problems.append(f"no CSP on {r.url}")
    page.on("response", on_response)
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)

    # Home, through the printed address (the secret is exchanged for a cookie and stripped).
    page.goto(url)
    expect(page.get_by_role("heading", name="Home", level=1)).to_be_visible()
    assert "k=" not in page.url, page.url
    expect(page.get_by_role("rowheader", name="rent")).to_be_visible()

    # Data: a CSV uploaded through the form, previewed, described and loaded only on confirmation.
    upload_csv(page, owner)

    # Host a session: an invite made in the UI.
    page.get_by_role("link", name="Host a session").click()
    page.get_by_label("The lender's name").fill("Acme Bank")
    page.get_by_label("The code stays valid for").select_option(label="an hour")
    page.get_by_role("button", name="Make an invite code").click()
    code = page.locator("#invite-code").inner_text().strip()
    assert code.startswith("duo1-"), code
    expect(page.get_by_role("button", name="Copy the code")).to_be_visible()
    expect(page.get_by_role("rowheader", name=re.compile("Acme Bank"))).to_be_visible()

    # The FI pairs and asks; the open Requests page shows the request without a reload.
    page.get_by_role("link", name=re.compile("^Requests")).click()
    expect(page.get_by_text("No request is waiting for your decision.")).to_be_visible()
    page.evaluate("document.body.dataset.notReloaded = 'yes'")
    fi.run("fi", "pair", ws, code)
    asked = time.time()
    rid = fi.json("fi", "request", "count(rent)", "--reason", "months of rent history")["id"]
    expect(page.get_by_role("heading", name=f"Request {rid} from Acme Bank")).to_be_visible(timeout=5000)
    print(f"request {rid} appeared on the open page {time.time() - asked:.2f} s after `duo fi request` returned "
          f"(includes the command's exit)")
    assert page.evaluate("document.body.dataset.notReloaded") == "yes", "the page was reloaded"
    expect(page.get_by_text("Approving releases exactly", exact=True)).to_be_visible()
    expect(page.locator("#pending-count")).to_have_text("1")

    # Approve in the UI; the FI gets the answer the owner saw.
    shown = owner.json("owner", "requests")[0]["value"]
    page.get_by_role("button", name=f"Approve request {rid}").click()
    expect(page.get_by_text(f"Approved request {rid}.")).to_be_visible()
    result = fi.json("fi", "result", str(rid))
    assert result["state"] == "approved", result
    assert result["answer"] == shown, (result, shown)

    # A denial with a reason reaches the FI.
    rid2 = fi.json("fi", "request", "max(rent.amount)", "--reason", "largest rent")["id"]
    page.get_by_label("Reason (the lender sees it)").fill("not this one, sorry")
    page.get_by_role("button", name=f"Deny request {rid2}").click()
    expect(page.get_by_text(f"Denied request {rid2}")).to_be_visible()
    result = fi.json("fi", "result", str(rid2))
    assert result["state"] == "denied", result
    assert "not this one, sorry" in json.dumps(result), result

    # The log, verified.
    page.get_by_role("link", name="Log").click()
    page.get_by_role("button", name="Verify the chain").click()
    expect(page.get_by_text(re.compile("The log is intact"))).to_be_visible()

    # Budgets: a cap set in the UI is the CLI's cap; a DP answer the owner approves is charged and charted;
    # lowering the cap asks first.
    page.get_by_role("link", name="Budgets").click()
    expect(page.get_by_text(re.compile("A privacy budget limits how much"))).to_be_visible()
    page.get_by_label("Whose budget").select_option("global")
    page.get_by_label("Cap", exact=True).fill("1")
    page.get_by_role("button", name="Set the cap").click()
    expect(page.get_by_text("global budget: cap 1 epsilon")).to_be_visible()
    caps = owner.json("owner", "budget", "show")["accounts"]
    assert [a["cap"] for a in caps if a["scope"]["scope"] == "global"] == ["1"], caps
    rid3 = fi.json("fi", "request", "count(rent)", "--backend", "dp", "--epsilon", "0.3",
                   "--reason", "noisy count")["id"]
    page.get_by_role("link", name=re.compile("^Requests")).click()
    page.get_by_role("button", name=f"Approve request {rid3}").click()
    expect(page.get_by_text(f"Approved request {rid3}.")).to_be_visible()
    page.get_by_role("link", name="Budgets").click()
    expect(page.get_by_role("img", name=re.compile("Privacy budget spent over time"))).to_be_visible()
    expect(page.locator("figcaption")).to_contain_text("In all 0.3 epsilon was spent in 1 charge(s)")
    page.get_by_label("Cap in epsilon").fill("0.2")
    page.get_by_role("button", name="Set the cap").click()
    expect(page.get_by_text(re.compile("no more noisy answers will be given"))).to_be_visible()
    page.get_by_role("button", name="Lower the cap").click()
    expect(page.get_by_text("global budget: cap 0.2 epsilon")).to_be_visible()

    # Home again: the paired FI, with a revoke that asks first.
    page.get_by_role("link", name="Home").click()
    page.get_by_role("button", name="Revoke Acme Bank").click()
    expect(page.get_by_role("button", name="Yes, revoke Acme Bank")).to_be_visible()


BANK_CSV = "date,amount,kind\n2025-01-03,12.50,groceries\n2025-01-17,-1450.00,rent\n2025-02-02,3.99,groceries\n"


def upload_csv(page, owner):
    """The owner adds a dataset in the UI: upload, see the first rows and the drafted metadata, check, confirm."""
    path = os.path.join(os.path.dirname(owner.home), "savings.csv")
    with open(path, "w") as f:
        f.write(BANK_CSV)
    page.get_by_role("link", name="Data", exact=True).click()
    page.get_by_role("link", name="Add data from a CSV file").click()
    page.get_by_label(re.compile("^The file")).set_input_files(path)
    page.get_by_role("button", name="Upload and preview").click()
    expect(page.locator("#preview")).to_contain_text("-1450.00")
    expect(page.get_by_label("Name", exact=True)).to_have_value("savings")
    expect(page.locator("#c1-type")).to_have_value("money")
    page.get_by_label("What it holds, in a sentence").fill("My savings account")
    assert "savings" not in [d["meta"]["name"] for d in owner.json("owner", "datasets")], "loaded before confirming"
    page.get_by_role("button", name="Check").click()
    expect(page.get_by_text("A new dataset")).to_be_visible()
    page.get_by_role("button", name="Load it").click()
    expect(page.get_by_text("Loaded 3 rows into savings (version 1)")).to_be_visible()
    loaded = {d["meta"]["name"]: d for d in owner.json("owner", "datasets")}
    assert loaded["savings"]["meta"]["description"] == "My savings account", loaded["savings"]
    page.get_by_role("link", name="Back").click()
    expect(page.get_by_role("heading", name="savings", level=2)).to_be_visible()
    page.get_by_role("link", name="Delete savings").click()
    expect(page.get_by_role("button", name="Yes, delete savings")).to_be_visible()
    page.get_by_role("link", name="No, keep it").click()
    expect(page.get_by_role("heading", name="savings", level=2)).to_be_visible()
    page.get_by_role("link", name="Home").click()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duo", default="target/debug/duo")
    ap.add_argument("--browser")
    args = ap.parse_args()
    browser_path = find_browser(args.browser)
    exe = os.path.abspath(args.duo)
    tmp = tempfile.mkdtemp(prefix="duo-ui-")
    proc = None
    try:
        owner = Duo(exe, os.path.join(tmp, "owner-home"))
        fi = Duo(exe, os.path.join(tmp, "fi-home"))
        data = os.path.join(tmp, "data")
        owner.run("sample", "--out", data)
        owner.run("owner", "init")
        for name in ["rent", "utilities", "transactions"]:
            owner.run("owner", "load", os.path.join(data, f"{name}.csv"), "--name", name)
        proc, ws, url = serve(owner)
        problems = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, headless=True)
            page = browser.new_page()
            page.set_default_timeout(10000)
            try:
                story(page, owner, fi, ws, url, problems)
            finally:
                browser.close()
        assert not problems, problems
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        assert not os.path.exists(os.path.join(owner.home, "owner", "ui.url")), "the address file outlives serve"
        print(f"ui story: ok ({browser_path})")
    finally:
        if proc and proc.poll() is None:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
