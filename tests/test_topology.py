"""Where the servers go (paracel.topology.choose_servers), without MPI: the
last ranks on one host; spread over the hosts, last host first, otherwise."""

from paracel.topology import choose_servers


def test_one_host_serves_from_its_last_ranks():
    assert choose_servers(["a"] * 8, 2) == [6, 7]


def test_servers_are_spread_over_hosts():
    hosts = ["a"] * 4 + ["b"] * 4
    assert choose_servers(hosts, 1) == [7]
    assert choose_servers(hosts, 2) == [3, 7]
    assert choose_servers(hosts, 3) == [3, 6, 7]


def test_uneven_and_interleaved_hosts():
    assert choose_servers(["a", "b", "a", "b", "c"], 3) == [2, 3, 4]
    assert choose_servers(["a", "a", "a", "b"], 3) == [1, 2, 3]
