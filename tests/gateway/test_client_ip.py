"""The client address used for rate limits: X-Forwarded-For only through trusted proxies."""

from __future__ import annotations

import pytest

from gateway.client_ip import UNKNOWN_CLIENT, client_ip, client_key

PEER = "192.0.2.10"


def test_without_trusted_proxies_the_peer_address_is_used() -> None:
    assert client_ip(PEER, [], trusted_proxies=0) == PEER


def test_a_spoofed_forwarded_for_is_ignored_without_trusted_proxies() -> None:
    assert client_ip(PEER, ["203.0.113.7"], trusted_proxies=0) == PEER
    assert client_ip(PEER, ["203.0.113.7, 198.51.100.1"], trusted_proxies=0) == PEER


def test_one_trusted_proxy_takes_the_last_entry() -> None:
    # The client wrote "6.6.6.6" itself; the proxy appended the address it saw.
    assert client_ip(PEER, ["6.6.6.6, 203.0.113.7"], trusted_proxies=1) == "203.0.113.7"


def test_two_trusted_proxies_take_the_second_entry_from_the_right() -> None:
    header = "6.6.6.6, 203.0.113.7, 10.0.0.2"
    assert client_ip(PEER, [header], trusted_proxies=2) == "203.0.113.7"


def test_repeated_headers_count_as_one_list_in_order() -> None:
    assert client_ip(PEER, ["6.6.6.6", "203.0.113.7"], trusted_proxies=1) == "203.0.113.7"


def test_fewer_entries_than_trusted_proxies_falls_back_to_the_peer() -> None:
    assert client_ip(PEER, ["203.0.113.7"], trusted_proxies=2) == PEER


def test_a_missing_header_with_a_trusted_proxy_falls_back_to_the_peer() -> None:
    assert client_ip(PEER, [], trusted_proxies=1) == PEER


@pytest.mark.parametrize(
    "header",
    [
        "",
        "   ",
        "garbage",
        "203.0.113.7, not-an-ip",
        "203.0.113.7,",
        "203.0.113.7:8080",
        "[2001:db8::1]:443",
        "999.1.1.1",
        "203.0.113.7 ; drop table",
        "unknown",
        "1" * 5000,
        "\x00",
    ],
    ids=repr,
)
def test_a_malformed_entry_falls_back_to_the_peer(header: str) -> None:
    assert client_ip(PEER, [header], trusted_proxies=1) == PEER


def test_only_the_chosen_entry_must_be_well_formed() -> None:
    # Entries left of the trusted ones are the client's own writing and do not matter.
    assert client_ip(PEER, ["garbage, 203.0.113.7"], trusted_proxies=1) == "203.0.113.7"


def test_addresses_are_normalised() -> None:
    assert client_ip(PEER, ["2001:DB8:0:0::1"], trusted_proxies=1) == "2001:db8::1"
    assert client_ip(PEER, ["::ffff:203.0.113.7"], trusted_proxies=1) == "203.0.113.7"
    assert client_ip("::ffff:192.0.2.10", [], trusted_proxies=0) == PEER


def test_an_unusable_peer_address_is_one_unknown_client() -> None:
    assert client_ip(None, [], trusted_proxies=0) == UNKNOWN_CLIENT
    assert client_ip("", ["203.0.113.7"], trusted_proxies=0) == UNKNOWN_CLIENT


def test_ipv4_clients_are_keyed_by_address() -> None:
    assert client_key("203.0.113.7") == "203.0.113.7"


def test_ipv6_clients_are_keyed_by_their_64_bit_prefix() -> None:
    first = client_key("2001:db8:1:2:aaaa::1")
    assert first == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:2:ffff::9") == first
    assert client_key("2001:db8:1:3::1") != first


def test_the_unknown_client_is_one_key() -> None:
    assert client_key(UNKNOWN_CLIENT) == UNKNOWN_CLIENT
