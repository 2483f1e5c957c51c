"""One FI home paired with several real owner nodes (duo.testing): duo.Portfolio asks them all at once, reports
each owner's outcome, and resuming the batch never asks an owner twice."""

import tempfile
from pathlib import Path

import duo
from duo.testing import ASK_ALL, SAMPLE_POLICY, owner_node

#: Says no to every catalogue attribute.
DENY = """
default = "ask"
[[rule]]
name = "not-today"
catalogue = ["*"]
action = "deny"
reason = "not today"
"""

EXPR = "rent_on_time_ratio_12m()"


def _pair(node, home, name):
    code = node.duo("owner", "invite", "--fi", "Portfolio FI")["code"]
    duo.pair(node.url, code, home=home, owner=name)


def test_a_portfolio_batch_reports_each_owner_and_resumes_without_asking_twice():
    with owner_node(policy=SAMPLE_POLICY) as yes, owner_node(policy=DENY) as no, owner_node(
        policy=ASK_ALL
    ) as later, owner_node(policy=SAMPLE_POLICY) as away:
        home = Path(tempfile.mkdtemp(prefix="duo-portfolio-"))
        for node, name in ((yes, "yes"), (no, "no"), (later, "later"), (away, "away")):
            _pair(node, home, name)
        away._stop()
        pf = duo.Portfolio(home)

        listed = {o["name"]: o for o in pf.owners(timeout=2)}
        assert listed["yes"]["reachable"] is True and listed["away"]["reachable"] is False
        assert listed["away"]["probe_error"]

        b = pf.request(EXPR, reason="portfolio review", owners=["yes", "no", "later", "away"], concurrency=2)
        got = {o["owner"]: o["outcome"] for o in b.outcomes}
        assert got == {"yes": "approved", "no": "denied", "later": "pending", "away": "unreachable"}, b.outcomes
        assert 0 <= b.outcome("yes")["answer"] <= 1
        assert b.outcome("no")["reason"] == "not today"
        assert not b.complete
        assert [r["owner"] for r in duo.receipts(home)] == ["yes"]
        assert len(b.to_pandas()) == 4

        # The owner of `later` approves; resuming polls its request and tries `away` again, asking nobody twice.
        later.principal = "Portfolio FI"  # approve() finds the request by the FI's principal name
        later.approve(b.outcome("later")["request"])
        b2 = b.resume()
        assert b2.id == b.id
        assert b2.outcome("later")["outcome"] == "approved"
        assert b2.outcome("later")["request"] == b.outcome("later")["request"]
        assert b2.outcome("away")["outcome"] == "unreachable" and b2.outcome("away")["attempts"] == 2
        assert b2.outcome("yes")["attempts"] == 1 and b2.outcome("no")["attempts"] == 1
        assert [x.id for x in pf.batches()] == [b.id]
        # The same question with resume=True continues this batch.
        b3 = pf.request(EXPR, reason="portfolio review", resume=True)
        assert b3.id == b.id
        assert {r["owner"] for r in duo.receipts(home)} == {"yes", "later"}
