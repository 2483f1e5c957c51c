"""The SDK against a real owner node (no mocks): pairing, metadata, pointers, requests, receipts, threads."""

import json
import threading
import time
from decimal import Decimal

import pytest

import duo
import duo.testing

MEAN_RENT = "mean(clamp(rent.amount, 0, 300000))"


def test_pairing_pins_the_node_and_a_spent_code_is_refused(node, fi):
    owners = fi.owners()
    assert [o["name"] for o in owners] == ["owner"]
    assert owners[0]["principal"] == "Test FI" == fi.principal
    assert owners[0]["url"] == node.url and len(owners[0]["signing_key"]) == 64
    code = node.duo("owner", "invite", "--fi", "Second FI")["code"]
    other = node.fi_home.parent / "fi2"
    rec = duo.pair(node.url, code, home=other, owner="acme")
    assert rec["principal"] == "Second FI" and rec["name"] == "acme"
    with pytest.raises(duo.DuoError) as e:  # one-time: the same code again is refused by the node
        duo.pair(node.url, code, home=node.fi_home.parent / "fi3")
    assert e.value.code != ""
    with pytest.raises(duo.Refused) as e:
        duo.pair(node.url, "duo1-not-a-code", home=other)
    assert e.value.code == "refused" and "invite code" in e.value.message
    with pytest.raises(duo.NotFound):
        duo.Client(home=other, owner="no-such-owner")


def test_metadata_lists_datasets_and_catalogue(fi):
    ds = fi.datasets()
    assert sorted(d["name"] for d in ds) == ["rent", "transactions", "utilities"]
    rent = next(d for d in ds if d["name"] == "rent")
    assert rent["version"] >= 1 and "amount" in [c["name"] for c in rent["columns"]]
    names = [c["name"] for c in fi.catalogue()]
    assert "rent_on_time_ratio_12m" in names
    pandas = pytest.importorskip("pandas")
    df = fi.catalogue().to_pandas()
    assert isinstance(df, pandas.DataFrame) and "rent_on_time_ratio_12m" in set(df["name"])


def test_pointer_shows_lineage_and_static_type(fi):
    p = fi.expr(MEAN_RENT)
    assert repr(p) == "mean of `amount` (clamped to 0..300000) in dataset `rent`"
    assert p.ty["kind"] == "scalar" and p.dtype == "money"


def test_expression_errors_raise_before_any_request(node, fi):
    before = len(fi.requests())
    with pytest.raises(duo.ParseError) as e:
        fi.expr("mean(clamp(rent.amount, 0, 300000)")
    assert e.value.code == "parse" and isinstance(e.value, ValueError)
    with pytest.raises(duo.CheckError) as e:
        fi.request("mean(rent.no_such_column)", reason="x")
    assert e.value.code == "type_error" and "no_such_column" in e.value.message
    assert len(fi.requests()) == before
    assert node.pending() == []


def test_plaintext_request_approved_by_the_owner_with_a_verified_receipt(node, fi):
    req = fi.request(MEAN_RENT, reason="underwriting")
    assert req.state == "pending" and req.answer is None and req.receipt is None
    shown = next(r for r in node.pending() if r["fi_request"] == req.id)
    node.approve(req.id)
    answer = req.result(wait=30)
    assert req.state == "approved" and req.decided_by == "owner"
    # Money in Decimal dollars: what the owner was shown, in cents, divided by 100.
    assert isinstance(answer, Decimal)
    assert answer == Decimal(repr(shown["value"]["value"]["value"])) / 100
    assert req.receipt.verify() is True
    assert req.receipt.request == req.id and req.receipt.backend == "plaintext"
    kept = fi.receipts(verify=True)
    assert any(r["request"] == req.id for r in kept)
    assert fi.result(req.id).answer == answer


def test_policy_approves_a_catalogue_attribute_at_once(fi):
    req = fi.request("rent_on_time_ratio_12m()", reason="underwriting")
    assert req.state == "approved" and req.decided_by == "policy"
    assert 0.0 <= req.result(wait=0) <= 1.0


def test_denial_carries_the_owners_reason(node, fi):
    req = fi.request("sum(clamp(utilities.amount, 0, 100000))", reason="affordability")
    node.deny(req.id, "not needed for a loan decision")
    with pytest.raises(duo.Denied) as e:
        req.result(wait=30)
    assert e.value.request == req.id and "not needed for a loan decision" in e.value.message
    assert req.state == "denied"


def test_policy_denies_row_level_releases(fi):
    req = fi.request("rent.amount", reason="everything")
    assert req.state == "denied" and "row-level" in req.why


def test_pending_raises_when_the_owner_does_not_decide_in_time(fi):
    req = fi.request("count(transactions)", reason="volume")
    t = time.monotonic()
    with pytest.raises(duo.Pending):
        req.result(wait=1.5)
    assert 1.0 <= time.monotonic() - t < 10


def test_dp_cost_preview_then_budget_refusal_with_numbers(node, fi):
    node.set_budget(100.0, fi=False)
    node.set_budget(1.0)
    p = fi.expr(MEAN_RENT)
    c = fi.cost(p, epsilon=0.5)
    assert c.cost == Decimal("0.5") and c.measure == "epsilon"
    assert isinstance(c.accuracy95, Decimal) and c.accuracy95 > 0
    with pytest.raises(duo.UsageError):
        fi.request(p, reason="x", backend="dp")
    with pytest.raises(duo.UsageError):
        fi.cost(p)
    first = fi.request(p, reason="affordability", backend="dp", epsilon=0.5)
    assert first.state == "approved" and first.cost == Decimal("0.5")
    assert first.accuracy95 == c.accuracy95  # dollars, like the answer
    assert isinstance(first.result(), Decimal) and first.receipt.verify()
    # The same question again is answered from the store at no charge; other questions are charged.
    again = fi.request(p, reason="affordability", backend="dp", epsilon=0.5)
    assert again.decided_by == "store" and again.answer == first.answer
    second = fi.request(fi.expr("mean(clamp(rent.amount, 0, 200000))"), reason="a", backend="dp", epsilon=0.5)
    assert second.state == "approved"
    third = fi.request("mean(clamp(rent.amount, 0, 100000))", reason="a", backend="dp", epsilon=0.5)
    assert third.state == "denied"
    with pytest.raises(duo.BudgetExceeded) as e:
        third.result()
    assert "budget" in e.value.message
    b = e.value
    assert (b.spent, b.requested, b.remaining, b.cap) == (Decimal("1"), Decimal("0.5"), Decimal("0"), Decimal("1"))
    assert (b.scope, b.name, b.measure, b.request) == ("principal", fi.principal, "epsilon", third.id)
    # The numbers are fields of the denial, kept in every later view of it, not words read from the message.
    assert third.refresh().raw["budget"]["requested"] == "0.5"
    third.why = "over budget"
    with pytest.raises(duo.BudgetExceeded) as again_e:
        third.result()
    assert again_e.value.requested == Decimal("0.5") and again_e.value.remaining == Decimal("0")
    # The same story as flat tables: one column per field, money in dollars, costs and budgets as numbers.
    df = fi.requests().to_pandas()
    assert tuple(df.columns) == duo.REQUEST_COLUMNS
    df = df.set_index("id")
    assert df.loc[first.id, "answer"] == float(first.answer) and df.loc[first.id, "dtype"] == "money"
    assert df.loc[first.id, "accuracy95"] == float(first.accuracy95)
    assert (df.loc[first.id, "cost"], df.loc[first.id, "decided_by"]) == (0.5, "policy")
    assert df.loc[again.id, "decided_by"] == "store"
    assert df["cost"].dtype == "float64" and df["budget_requested"].dtype == "float64"
    assert (df.loc[third.id, "state"], df.loc[third.id, "budget_scope"]) == ("denied", "principal")
    assert (df.loc[third.id, "budget_requested"], df.loc[third.id, "budget_remaining"]) == (0.5, 0.0)
    rc = fi.receipts().to_pandas()
    assert tuple(rc.columns) == duo.RECEIPT_COLUMNS
    rc = rc.set_index("request")
    assert rc.loc[first.id, "cost"] == 0.5 and rc.loc[first.id, "answer"] == float(first.answer)
    assert rc.loc[again.id, "cost"] == 0.0 and rc.loc[first.id, "receipt"].verify()
    assert str(rc["issued_at"].dtype).startswith("datetime64")


def test_tampered_receipt_is_refused(node, fi):
    req = fi.request("rent_on_time_ratio_12m()", reason="underwriting")
    r = req.receipt
    assert r.verify()
    answer = json.loads(r.raw["answer"])
    answer["value"]["value"] = 0.123  # another answer under the same signature
    forged = duo.Receipt(dict(r.raw, answer=json.dumps(answer)))
    with pytest.raises(duo.Refused):
        forged.verify(r.node_key)
    with pytest.raises(duo.Refused):  # signed, but not by the key pinned at pairing
        duo.Receipt(r.raw).verify("00" * 32)
    # The FI's receipt log edited on disk: the chain no longer verifies.
    log = node.fi_home / "fi" / "receipts.jsonl"
    lines = log.read_text().splitlines()
    entry = json.loads(lines[-1])
    entry["receipt"]["answer"] = forged.raw["answer"]
    log.write_text("\n".join(lines[:-1] + [json.dumps(entry)]) + "\n")
    try:
        with pytest.raises(duo.Integrity):
            fi.receipts(verify=True)
        assert len(fi.receipts(verify=False)) == len(lines)
    finally:
        log.write_text("\n".join(lines) + "\n")
    assert fi.receipts(verify=True)


def test_requests_from_several_threads_at_once(fi):
    results, errors = [], []

    def ask(i):
        try:
            req = fi.request("rent_on_time_ratio_12m()", reason=f"thread {i}")
            results.append((req.id, req.result(wait=10), req.receipt.verify()))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(results) == 8 and len({r[0] for r in results}) == 8
    assert len({r[1] for r in results}) == 1 and all(r[2] for r in results)


def test_a_thread_waiting_on_the_owner_does_not_block_others(fi):
    req = fi.request("count(utilities)", reason="waits")
    waiter = threading.Thread(target=lambda: pytest.raises(duo.Pending, req.result, wait=4))
    waiter.start()
    time.sleep(0.2)
    t = time.monotonic()
    assert len(fi.datasets()) == 3  # takes its turn on the session between the waiter's short waits
    assert time.monotonic() - t < 2.5
    assert waiter.is_alive()
    waiter.join(30)


def test_pointers_compose_with_python_operators(node, fi):
    t = fi.dataset("transactions")
    assert t.ty["kind"] == "table"
    income = t.filter((t.category == "income") & (t.amount > 0))
    x = income.amount.clamp(0, 500_000)
    total = x.sum()
    assert repr(total) == repr(
        fi.expr('sum(clamp(filter(transactions, category == "income" and amount > 0).amount, 0, 500000))')
    )
    assert "income" in repr(total) and total.dtype == "money"
    assert x.quantile(0.5).ty["kind"] == "scalar"
    assert x.histogram([0, 100_000, 200_000]).ty["kind"] != "scalar"
    assert x.by_month("sum").ty["kind"] == "vector"
    assert x.by_category("category", "sum").ty["kind"] == "vector"
    assert "one for each category of `category`" in repr(t.amount.by_category("category", "count"))
    with pytest.raises(duo.CheckError):
        x.by_category("amount")
    assert repr(x.stdev()).startswith("standard deviation of")
    assert x.stdev().dtype == "money" and x.min().dtype == "money" and x.max().dtype == "money"
    rent = fi.dataset("rent").last_months(12)
    on_time = (rent.paid_date <= rent.due_date).mean()
    assert "paid_date" in repr(on_time)
    assert repr((x * 2 + 1).mean()).startswith("mean of")
    with pytest.raises(duo.CheckError):
        t.no_such_column
    with pytest.raises(duo.CheckError):
        x.sum().sum()
    with pytest.raises(duo.UsageError):
        x.sum() > 3
    # Strings with quotes and control characters reach the node intact (and are checked against the public
    # category set there).
    with pytest.raises(duo.CheckError) as e:
        t.filter(t.category == 'say "hi"\n')
    assert '"say \\"hi\\"\\n"' in e.value.message and "category set" in e.value.message
    # A pointer built this way is asked for like any other.
    req = total.request(reason="income check")
    assert req.state == "pending" and req.description == repr(total)
    node.deny(req.id, "not now")


def test_catalogue_attributes_as_calls(fi):
    a = fi.attr.rent_on_time_ratio_12m()
    assert "rent_on_time_ratio_12m" in dir(fi.attr)
    req = fi.request(a, reason="underwriting")
    assert req.state == "approved"
    assert req.result() == fi.request("rent_on_time_ratio_12m()", reason="again").result()
    with pytest.raises(duo.DuoError):
        fi.attr.no_such_attribute()


def test_every_public_name_is_documented():
    import inspect

    import duo.errors
    import duo.testing

    missing = []
    for mod in (duo, duo.errors, duo.testing):
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if not inspect.getdoc(obj):
                missing.append(f"{mod.__name__}.{name}")
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if not attr.startswith("_") and callable(member) and not inspect.getdoc(member):
                        missing.append(f"{mod.__name__}.{name}.{attr}")
    assert missing == []
    assert "take turns" in inspect.getdoc(duo.Client)


MODEL = {
    "name": "thin-file-test",
    "bias": -2.5,
    "threshold": 0.25,
    "bands": [-0.5, 0.0, 0.5],
    "weights": {"rent_on_time_ratio_12m": 2.0, "utility_on_time_ratio_12m": 1.5},
}


def test_private_scoring_decision_then_bands_approved_by_the_owner(node, fi, tmp_path):
    s = fi.score(MODEL, reason="loan decision")
    assert s.outcome["kind"] == "decision" and isinstance(s.outcome["approve"], bool)
    assert s.bits == 1 and s.attributes == sorted(MODEL["weights"]) and s.receipt.verify()
    assert s.bytes and s.millis > 0
    # The same model from a TOML file, revealing a band: that goes to the owner.
    path = tmp_path / "model.toml"
    path.write_text(
        'bias = -2.5\nthreshold = 0.25\nbands = [-0.5, 0.0, 0.5]\n[weights]\nrent_on_time_ratio_12m = 2.0\n'
        "utility_on_time_ratio_12m = 1.5\n"
    )
    with pytest.raises(duo.Pending) as e:
        fi.score(str(path), reason="pricing", reveal="bands:4")
    node.approve(e.value.request)
    banded = fi.score(path, request=e.value.request)
    assert banded.bits == 2 and banded.request == e.value.request
    assert banded.outcome["kind"] == "band" and 0 <= banded.outcome["band"] < 4 and banded.receipt.verify()
    # Waiting for the owner's decision, then running: the owner approves from another thread meanwhile.
    def approve_the_scoring_request():
        for _ in range(50):
            time.sleep(0.2)
            asked = [r["fi_request"] for r in node.pending() if r["backend"] == "2pc"]
            if asked:
                node.approve(asked[0])
                return

    approver = threading.Thread(target=approve_the_scoring_request)
    approver.start()
    waited = fi.score(MODEL, reason="pricing", reveal="bands:4", wait=30)
    approver.join()
    assert waited.outcome["kind"] == "band" and waited.receipt.verify()
    with pytest.raises(duo.UsageError):
        fi.score(dict(MODEL, weights={"no_such_attribute": 1.0}), reason="x")


def test_reasons_need_a_policy_rule_that_lists_them():
    # The sample policy has no rule listing "decision+reasons": the request is denied, naming why. A node of its
    # own, so that no earlier test has used the policy's scoring runs (a spent limit is denied first).
    with duo.testing.owner_node(policy=duo.testing.SAMPLE_POLICY) as node:
        fi = node.client
        with pytest.raises(duo.DuoError) as e:
            fi.score(MODEL, reason="adverse action notice", reveal="decision+reasons:2")
        assert "reasons" in str(e.value)
        with pytest.raises(duo.UsageError):
            fi.score(MODEL, reason="x", reveal="decision+reasons:5")


def test_a_logistic_model_may_give_a_probability():
    logistic = {k: v for k, v in MODEL.items() if k != "threshold"}
    logistic["probability"] = 0.7
    text = duo._model_toml(logistic)
    assert "probability = 0.7" in text and "threshold" not in text


def test_a_batch_is_one_request_with_one_answer_per_question(node, fi):
    node.set_budget(100.0, fi=False)
    node.set_budget(2.0)
    b = fi.batch(fi.expr("count(rent)"), "sum(clamp(rent.amount, 0, 300000))")
    assert b.ty["kind"] == "batch" and "2 questions asked together" in b.description
    c = fi.cost(b, epsilon=0.2)
    assert c.cost == Decimal("0.4") and [i["cost"] for i in c.items] == [Decimal("0.2")] * 2
    assert isinstance(c.items[1]["accuracy95"], Decimal)  # the sum is money: dollars
    r = fi.request(b, reason="rent history", backend="dp", epsilon=0.2)
    assert (r.state, r.cost, len(r.items)) == ("approved", Decimal("0.4"), 2)
    n, total = r.result()
    assert isinstance(n, int) and isinstance(total, Decimal)
    assert r.receipt.verify() and r.receipt.cost_nanos == 400_000_000
    with pytest.raises(duo.UsageError):
        fi.batch()
