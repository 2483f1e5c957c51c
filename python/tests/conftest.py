"""One real owner node for the suite (duo.testing.owner_node): sample data on loopback, this policy."""

import pytest

from duo.testing import SAMPLE_POLICY, owner_node

#: The sample policy of duo.testing (row-level denied; catalogue, private decisions and small DP approved).
POLICY = SAMPLE_POLICY


@pytest.fixture(scope="session")
def node():
    with owner_node(policy=POLICY) as n:
        yield n


@pytest.fixture()
def fi(node):
    return node.client
