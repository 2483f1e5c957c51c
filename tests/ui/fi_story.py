"""The FI's web UI in a real browser (Debian's Chromium, driven by Playwright for Python), against a real owner.

The whole story in one test: an owner serves its sample data with its UI, uploads a CSV through the Data form
and makes an invite in Host a session; the FI runs `duo fi ui`, opens the printed address and connects through
its UI with that code (the pinned owner key shown); Home shows the owner's
datasets and catalogue; the FI writes an expression and sees the live check (an error, then the lineage in
words), and sends a request with a reason; the owner approves it in the owner's UI; the FI's open Requests page
shows the answer and its verified receipt without a reload; a DP request over the owner's budget is refused with
the numbers; a request the owner denies shows the owner's reason; a private scoring run with a model file chosen
in a file input waits for the owner, runs once approved and shows what each side learned; a decline with
reasons, which the owner's policy lists, shows them in plain words. Every response
carries the CSP and the browser reports no CSP violation.

Usage: python3 tests/ui/fi_story.py [--duo target/debug/duo] [--browser PATH]
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from playwright.sync_api import expect, sync_playwright

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from story import Duo, find_browser, serve, upload_csv  # noqa: E402

MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "model.toml")


def fi_ui(fi):
    proc = subprocess.Popen([fi.exe, "--home", fi.home, "fi", "ui"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = proc.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:") and "/?k=" in url, url
    return proc, url


def watch_csp(page, url, problems):
    origin = re.match(r"http://[^/]+", url).group(0)

    def on_response(r):
        if r.url.startswith(origin) and "default-src 'none'" not in (r.headers.get("content-security-policy") or ""):
            problems.append(f"no CSP on {r.url}")
    page.on("response", on_response)
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)


def owner_invites(owner_page):
    """The owner makes an invite in the owner's UI (Host a session) and reads the code off the screen."""
    owner_page.get_by_role("link", name="Host a session").click()
    owner_page.get_by_label("The lender's name").fill("Acme Bank")
    owner_page.get_by_label("The code stays valid for").select_option(label="an hour")
    owner_page.get_by_role("button", name="Make an invite code").click()
    return owner_page.locator("#invite-code").inner_text().strip()


def connect(page, owner, ws, fi_url, code):
    page.goto(fi_url)
    # Not paired yet: Home sends the person to Connect.
    expect(page.get_by_role("heading", name="Connect to a host", level=1)).to_be_visible()
    assert "k=" not in page.url, page.url
    page.get_by_label("The owner node's address").fill(ws)
    page.get_by_label("The invite code").fill(code)
    page.get_by_label("A name for this owner").fill("maria")
    page.get_by_role("button", name="Connect").click()
    expect(page.get_by_role("heading", name="Connected")).to_be_visible()
    key = page.locator("#owner-key").inner_text().strip()
    assert key and key in owner.run("owner", "key"), key
    page.get_by_role("link", name="Home", exact=True).click()
    expect(page.get_by_role("heading", name="maria")).to_be_visible()
    expect(page.get_by_role("table", name=re.compile(r"^rent \(version 1\)"))).to_be_visible()
    # The dataset the owner uploaded through the Data form is published like the others.
    expect(page.get_by_role("table", name=re.compile(r"^savings \(version 1\): My savings account"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"rent_on_time_ratio_12m\(\)")).first).to_be_visible()


def ask(page, expr, reason, dp_epsilon=None):
    page.get_by_role("link", name="New request", exact=True).click()
    page.get_by_label(re.compile("^What to ask")).fill(expr)
    page.get_by_label(re.compile("^Why you need it")).fill(reason)
    if dp_epsilon is not None:
        page.get_by_label(re.compile("^A noisy value")).check()
        page.get_by_label("Spend", exact=True).select_option("epsilon")
        page.get_by_label("Amount", exact=True).fill(str(dp_epsilon))
    page.get_by_role("button", name="Send the request").click()
    heading = page.get_by_role("heading", name=re.compile(r"^Request \d+ sent"))
    expect(heading).to_be_visible()
    return int(re.search(r"\d+", heading.inner_text()).group(0))


def story(browser, owner, fi, ws, owner_url, fi_url, problems):
    page = browser.new_page()
    page.set_default_timeout(10000)
    watch_csp(page, fi_url, problems)
    # The owner adds data through the Data form and invites the lender in the owner's UI.
    owner_page = browser.new_page()
    owner_page.set_default_timeout(10000)
    watch_csp(owner_page, owner_url, problems)
    owner_page.goto(owner_url)
    upload_csv(owner_page, owner)
    code = owner_invites(owner_page)
    connect(page, owner, ws, fi_url, code)

    # The live check: the parser's error as it is typed, then the lineage in words from the owner's node.
    page.get_by_role("link", name="New request", exact=True).click()
    box = page.get_by_label(re.compile("^What to ask"))
    box.fill("mean(rent.amount")
    expect(page.locator("#check")).to_contain_text("expected `)`")
    box.fill("mean(rent.nope)")
    expect(page.locator("#check")).to_contain_text("no column `nope`")
    page.get_by_label("Pick a ready-made attribute").select_option("rent_on_time_ratio_12m()")
    expect(box).to_have_value("rent_on_time_ratio_12m()")
    expect(page.locator("#check")).to_contain_text("Reads as: catalogue attribute `rent_on_time_ratio_12m`")
    # The DP preview: cost and expected error, nothing charged.
    box.fill("mean(clamp(rent.amount, 0, 300000))")
    page.get_by_label(re.compile("^A noisy value")).check()
    page.get_by_label("Amount", exact=True).fill("0.5")
    page.get_by_role("button", name="Preview the cost").click()
    expect(page.get_by_text(re.compile(r"cost 0\.5 epsilon; expected error ±\$[\d,]+\.\d\d at 95%"))).to_be_visible()

    # A request made in the UI; the owner approves it in the owner's UI; the open Requests page updates.
    rid = ask(page, "count(rent)", "months of rent history")
    page.get_by_role("link", name="Requests", exact=True).click()
    expect(page.locator(".state-pending").first).to_be_visible()
    page.evaluate("document.body.dataset.notReloaded = 'yes'")
    owner_page.get_by_role("link", name=re.compile("^Requests")).click()
    owner_page.get_by_role("button", name=f"Approve request {rid}").click()
    expect(owner_page.get_by_text(f"Approved request {rid}.")).to_be_visible()
    expect(page.locator(".state-approved").first).to_be_visible()
    expect(page.locator("dt", has_text="Answer").first).to_be_visible()
    expect(page.locator("dd", has_text=re.compile(r"^24$")).first).to_be_visible()
    expect(page.get_by_text(re.compile("^Receipt verified"))).to_be_visible()
    assert page.evaluate("document.body.dataset.notReloaded") == "yes", "the page was reloaded"

    # A DP request over the owner's budget is refused, with the numbers.
    owner.run("owner", "budget", "set", "--epsilon", "1")
    ask(page, "mean(clamp(rent.amount, 0, 300000))", "average rent", dp_epsilon=2)
    expect(page.locator(".state-denied").first).to_be_visible()
    expect(page.get_by_text(re.compile(r"budget would be exceeded: requested 2, remaining 1"))).to_be_visible()

    # A denial's reason reaches the FI.
    rid3 = ask(page, "max(rent.amount)", "largest rent")
    page.get_by_role("link", name="Requests", exact=True).click()
    owner.run("owner", "deny", str(rid3), "--reason", "not this one, sorry")
    expect(page.get_by_text(re.compile("not this one, sorry"))).to_be_visible()
    expect(page.get_by_role("link", name="Ask again").first).to_be_visible()

    scoring(page, owner)


def scoring(page, owner):
    page.get_by_role("link", name="Private scoring").click()
    page.get_by_label("Your model file (TOML)").set_input_files(MODEL)
    expect(page.get_by_label(re.compile("^The model file's text"))).to_have_value(re.compile("thin-file-v1"))
    page.get_by_label(re.compile("^Only the decision")).check()
    page.get_by_label(re.compile("^Why you need it")).fill("thin-file loan")
    page.get_by_role("button", name="Ask and run").click()
    expect(page.get_by_role("heading", name="Waiting for the owner")).to_be_visible()
    pending = owner.json("owner", "requests")
    sid = pending[0]["id"]
    owner.run("owner", "approve", str(sid), "--seen", pending[0]["token"])
    page.get_by_role("button", name="Run it now").click()
    expect(page.get_by_role("heading", name="Outcome")).to_be_visible()
    expect(page.get_by_text(re.compile(r"revealed: +a yes/no decision"))).to_be_visible()
    expect(page.get_by_text(re.compile("never left this FI in the clear"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"receipt: +verified"))).to_be_visible()
    reasons(page, owner)


def reasons(page, owner):
    """A decline with adverse-action reasons: the owner's policy lists `decision+reasons`, the model cannot be
    passed (its bias is far below its threshold), and the outcome names the reasons in the catalogue's words."""
    with open(os.path.join(owner.home, "owner", "policy.toml"), "a") as f:
        f.write('\n[[rule]]\nname = "reasons"\nbackend = ["2pc"]\nreveal = ["decision+reasons"]\naction = "ask"\n')
    with open(MODEL) as f:
        model = f.read().replace("bias = -2.5", "bias = -10.0")
    page.get_by_role("link", name="Private scoring").click()
    page.get_by_label(re.compile("^The model file's text")).fill(model)
    page.get_by_label(re.compile("^The decision and, on a decline only, the main reasons")).check()
    page.get_by_label("How many reasons on a decline").select_option("2")
    page.get_by_label(re.compile("^Why you need it")).fill("thin-file loan, with reasons")
    page.get_by_role("button", name="Ask and run").click()
    expect(page.get_by_role("heading", name="Waiting for the owner")).to_be_visible()
    pending = owner.json("owner", "requests")
    owner.run("owner", "approve", str(pending[0]["id"]), "--seen", pending[0]["token"])
    page.get_by_role("button", name="Run it now").click()
    expect(page.get_by_role("heading", name="Outcome")).to_be_visible()
    expect(page.get_by_text(re.compile(r"revealed: +a yes/no decision and, on a decline, which 2 of the 4 attributes"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"reason 1: +\S"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"reason 2: +\S"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"reason 3:"))).to_have_count(0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duo", default="target/debug/duo")
    ap.add_argument("--browser")
    args = ap.parse_args()
    browser_path = find_browser(args.browser)
    exe = os.path.abspath(args.duo)
    tmp = tempfile.mkdtemp(prefix="duo-fi-ui-")
    procs = []
    try:
        owner = Duo(exe, os.path.join(tmp, "owner-home"))
        fi = Duo(exe, os.path.join(tmp, "fi-home"))
        data = os.path.join(tmp, "data")
        owner.run("sample", "--out", data)
        owner.run("owner", "init")
        for name in ["rent", "utilities", "transactions"]:
            owner.run("owner", "load", os.path.join(data, f"{name}.csv"), "--name", name)
        proc, ws, owner_url = serve(owner)
        procs.append(proc)
        fi_proc, fi_url = fi_ui(fi)
        procs.append(fi_proc)
        problems = []
        started = time.time()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, headless=True)
            try:
                story(browser, owner, fi, ws, owner_url, fi_url, problems)
            finally:
                browser.close()
        assert not problems, problems
        fi_proc.send_signal(signal.SIGINT)
        fi_proc.wait(timeout=20)
        assert not os.path.exists(os.path.join(fi.home, "fi", "ui.url")), "the address file outlives `duo fi ui`"
        print(f"fi ui story: ok in {time.time() - started:.1f} s ({browser_path})")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
