"""One real owner node for the suite (duo.testing.owner_node): sample data on loopback, this policy."""

import pytest

from duo.testing import owner_node

#: Catalogue attributes in plaintext and DP releases costing at most 0.5 are approved by the policy; row-level
#: releases are denied; the owner decides the rest.
POLICY = """
default = "ask"

[[rule]]
name = "no-rows"
row_level = true
action = "deny"
reason = "row-level data never leaves this node"

[[rule]]
name = "catalogue"
catalogue = ["*"]
backend = ["plaintext"]
action = "approve"

[[rule]]
name = "private-decision"
backend = ["2pc"]
reveal = ["decision"]
action = "approve"

[[rule]]
name = "small-dp"
backend = ["dp"]
max_cost = "0.5"
action = "approve"
"""


@pytest.fixture(scope="session")
def node():
    with owner_node(policy=POLICY) as n:
        yield n


@pytest.fixture()
def fi(node):
    return node.client
