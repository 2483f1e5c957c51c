"""Every screen of the web UI, in a real browser: an accessibility check on each, and screenshots on request.

A sample owner with some history (an FI paired, requests approved, denied and waiting) serves its UI; the tour
starts at Home and follows every link of the UI it finds (the navigation, the links inside pages), and on each
screen runs axe-core (the copy bundled in the `axe-playwright-python` wheel, so no download at test time). A
violation of impact "serious" or "critical" fails the tour; the others are printed. Every screen must also have
one level-1 heading and a main landmark, the skip link must lead to it, and the keyboard must reach every
link and button (each gets focus in turn with Tab).

With `--screens DIR` it also saves a screenshot of each screen (its first 1100x800 pixels) (docs/screens/ in the repository;
`scripts/screens.sh` refreshes them).

Usage: python3 tests/ui/tour.py [--duo target/debug/duo] [--browser PATH] [--screens DIR]
"""

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
from urllib.parse import urlparse

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import sync_playwright

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from story import Duo, find_browser, serve  # noqa: E402
from fi_story import fi_ui  # noqa: E402



def skipped(link):
    """Links the tour does not follow: downloads, assets, and the secret-bearing entry."""
    u = urlparse(link)
    return u.path.endswith(".json") or u.path.startswith("/static/") or "k=" in u.query.split("&")[0]

FAILING = {"serious", "critical"}
# Owner screens reached through a form rather than a link.
OWNER_EXTRA = ["/fi/revoke?principal=Acme%20Bank"]


def history(owner, fi, ws):
    """Give the owner something to show: a paired FI, decided requests and waiting ones."""
    code = owner.json("owner", "invite", "--fi", "Acme Bank")["code"]
    fi.run("fi", "pair", ws, code)
    first = fi.json("fi", "request", "count(rent)", "--reason", "months of rent history")["id"]
    token = next(r["token"] for r in owner.json("owner", "requests") if r["id"] == first)
    owner.run("owner", "approve", str(first), "--seen", token)
    second = fi.json("fi", "request", "max(rent.amount)", "--reason", "largest rent")["id"]
    owner.run("owner", "deny", str(second), "--reason", "not this one")
    fi.json("fi", "request", "mean(rent.amount)", "--reason", "typical rent")
    owner.run("owner", "budget", "set", "--epsilon", "3")
    spent = fi.json("fi", "request", "count(utilities)", "--backend", "dp", "--epsilon", "0.4",
                    "--reason", "number of bills")["id"]
    token = next(r["token"] for r in owner.json("owner", "requests") if r["id"] == spent)
    owner.run("owner", "approve", str(spent), "--seen", token)
    fi.json("fi", "request", "sum(utilities.amount)", "--backend", "dp", "--epsilon", "0.5",
            "--reason", "utility spending")


def screen_name(path):
    name = path.strip("/").replace("/", "-") or "home"
    return re.sub(r"[^a-z0-9-]", "-", name.lower())


def keyboard_reaches_everything(page):
    """Tab through the page: every visible link and button must get focus in turn."""
    # A group of radio buttons is one stop for Tab (the arrows move inside it).
    wanted = page.evaluate("""() => new Set([...document.querySelectorAll('a[href], button, input, select, textarea')]
        .filter(e => !e.disabled && e.offsetParent !== null && e.type !== 'hidden' && e.tabIndex >= 0)
        .map((e, i) => e.type === 'radio' ? 'radio:' + e.name : i)).size""")
    seen = set()
    page.locator("body").focus()
    # A date field takes a Tab per part (month, day, year), so allow several presses per control.
    for _ in range(4 * wanted + 10):
        page.keyboard.press("Tab")
        key = page.evaluate("""() => { const e = document.activeElement;
            return e && e !== document.body ? e.outerHTML.slice(0, 200) + '#' +
              [...document.querySelectorAll('*')].indexOf(e) : null }""")
        if key:
            seen.add(key)
        if len(seen) >= wanted:
            break
    return len(seen), wanted


def visit(page, axe, url, screens, prefix, problems):
    page.goto(url)
    path = urlparse(page.url).path + (("?" + urlparse(page.url).query) if urlparse(page.url).query else "")
    results = axe.run(page)
    for v in results.response["violations"]:
        line = f"{path}: {v['id']} ({v['impact']}) on {len(v['nodes'])} element(s): {v['help']}"
        if v["impact"] in FAILING:
            problems.append(line)
        else:
            print(f"  note: {line}")
    if page.locator("h1").count() != 1:
        problems.append(f"{path}: {page.locator('h1').count()} level-1 headings")
    if page.locator("main").count() != 1:
        problems.append(f"{path}: no single main landmark")
    if screens:
        name = prefix + screen_name(urlparse(page.url).path)
        page.screenshot(path=os.path.join(screens, name + ".png"))
    reached, wanted = keyboard_reaches_everything(page)
    if reached < wanted:
        problems.append(f"{path}: Tab reaches {reached} of {wanted} controls")
    links = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")
    return path, links


def axe_is_live(page):
    """The checker itself must catch a known violation (an unlabelled field, an image without text), or a
    silent axe would pass every screen."""
    page.set_content("<!doctype html><html lang=en><title>t</title><main><img src=a.png><input></main></html>")
    found = {v["id"] for v in Axe().run(page).response["violations"] if v["impact"] in FAILING}
    assert {"image-alt", "label"} <= found, found


def tour(page, start, extra, screens, prefix, problems):
    """Follow every same-origin link from `start` (and the `extra` paths, screens behind a form such as a
    confirmation); check each screen once."""
    origin = re.match(r"http://[^/]+", start).group(0)
    axe = Axe()
    queue, seen, visited = [start] + [origin + e for e in extra], set(), []
    while queue:
        url = queue.pop(0)
        key = urlparse(url).path
        if key in seen:
            continue
        seen.add(key)
        path, links = visit(page, axe, url, screens, prefix, problems)
        visited.append(path)
        for link in links:
            link = link.split("#")[0]
            if link.startswith(origin) and not skipped(link):
                if urlparse(link).path not in seen:
                    queue.append(link)
    return visited


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duo", default="target/debug/duo")
    ap.add_argument("--browser")
    ap.add_argument("--screens", help="save a screenshot of every screen in this directory")
    args = ap.parse_args()
    browser_path = find_browser(args.browser)
    exe = os.path.abspath(args.duo)
    if args.screens:
        os.makedirs(args.screens, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="duo-tour-")
    proc = fi_proc = None
    try:
        owner = Duo(exe, os.path.join(tmp, "owner-home"))
        fi = Duo(exe, os.path.join(tmp, "fi-home"))
        data = os.path.join(tmp, "data")
        owner.run("sample", "--out", data)
        owner.run("owner", "init")
        for name in ["rent", "utilities", "transactions"]:
            owner.run("owner", "load", os.path.join(data, f"{name}.csv"), "--name", name)
        proc, ws, url = serve(owner)
        history(owner, fi, ws)
        problems = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=browser_path, headless=True)
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.set_default_timeout(10000)
            try:
                axe_is_live(page)
                visited = tour(page, url, OWNER_EXTRA, args.screens, "owner-", problems)
                fi_proc, fi_url = fi_ui(fi)
                fi_visited = tour(page, fi_url, [], args.screens, "fi-", problems)
            finally:
                browser.close()
        print(f"tour: {len(visited)} owner screens checked: {', '.join(visited)}")
        print(f"tour: {len(fi_visited)} FI screens checked: {', '.join(fi_visited)}")
        # The tour must not silently stop at Home.
        assert len(visited) >= 5 and len(fi_visited) >= 4, (visited, fi_visited)
        assert not problems, "\n".join(problems)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        print(f"ui tour: ok, no serious or critical accessibility violation ({browser_path})")
    finally:
        for p in (proc, fi_proc):
            if p and p.poll() is None:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
