"""An FI analyst's session with the Python SDK, start to end, against a real owner node on this machine.

It starts an owner node with sample data (duo.testing.owner_node, which runs the `duo` program), pairs with
it, explores the catalogue, previews the privacy cost of a few questions, asks them with differential privacy
(the owner's policy approves small DP releases), shows each answer with its 95% error bar, and scores the
applicant privately (2PC); with matplotlib
installed it also plots them (to fi_analyst.png, or the path given as the first argument).

Run: python examples/fi_analyst.py [PLOT.png]   (after `pip install ./python` and `cargo build`)
"""

import sys

import duo
from duo.testing import SAMPLE_POLICY, owner_node



def main(plot_path: str = "fi_analyst.png") -> None:
    with owner_node(policy=SAMPLE_POLICY, principal="Acme Bank") as node:
        node.duo("owner", "budget", "set", "--epsilon", "10")  # the owner's overall DP budget
        fi = node.client
        print(f"paired with {fi.owner} as {fi.principal!r}")
        for d in fi.datasets():
            print(f"  dataset {d['name']}: {', '.join(c['name'] for c in d['columns'])}")
        for a in fi.catalogue()[:3]:
            print(f"  attribute {a['name']}: {a['description'][:70]}...")

        rent = fi.dataset("rent")
        tx = fi.dataset("transactions")
        questions = {
            "mean rent ($)": rent.amount.clamp(0, 300_000).mean(),
            "monthly income, mean ($)": tx.filter(tx.category == "income").amount.clamp(0, 1_000_000).mean(),
            "transactions, count": tx.count(),
        }
        total = sum(fi.cost(p, epsilon=0.4).cost for p in questions.values())
        print(f"previewed cost: epsilon {total} for {len(questions)} questions (nothing charged)")

        answers = {}
        for label, p in questions.items():
            req = fi.request(p, reason="affordability assessment", backend="dp", epsilon=0.4)
            value = req.result(wait=10)
            err = float(req.accuracy95)  # in the answer's unit: dollars for money, like the answer
            answers[label] = (float(value), err)
            assert req.receipt.verify()
            print(f"  {label}: {value:.2f} ± {err:.2f} (95%), receipt verified; {p!r}")
        rot = fi.request(fi.attr.rent_on_time_ratio_12m(), reason="affordability assessment")
        print(f"  rent paid on time, last 12 months: {rot.result():.0%} (exact, approved by policy)")
        model = {"bias": -2.5, "threshold": 0.25,
                 "weights": {"rent_on_time_ratio_12m": 2.0, "utility_on_time_ratio_12m": 1.5}}
        s = fi.score(model, reason="loan decision")  # 2PC: the model stays here, the owner's values there
        print(f"  private scoring: approve={s.outcome['approve']} ({s.bits:.0f} bit revealed, "
              f"{s.bytes['sent'] + s.bytes['received']} bytes, {s.millis:.0f} ms), receipt verified: {s.receipt.verify()}")
        print(f"{len(fi.receipts(verify=True))} receipts kept, chain and signatures verified")
        try:
            table = fi.requests().to_pandas()  # one row per request, money in dollars
            print(table[["id", "state", "backend", "answer", "accuracy95", "cost", "decided_by"]].to_string())
        except ImportError:
            print("(install pandas to see the requests as a table)")

        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("(install matplotlib to plot the answers)")
            return
        labels = list(answers)
        fig, axes = plt.subplots(1, len(labels), figsize=(4 * len(labels), 3))
        for ax, label in zip(axes, labels):
            v, e = answers[label]
            ax.bar([0], [v], yerr=[e or 0], capsize=8)
            ax.set_title(label)
            ax.set_xticks([])
        fig.tight_layout()
        fig.savefig(plot_path, dpi=100)
        print(f"plotted to {plot_path}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
