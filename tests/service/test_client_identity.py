"""Who a request comes from: the peer, or behind trusted proxies the right-most untrusted forwarded address, read
from the one header the settings name; and ``trusted_proxies`` in its environment form."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_network

import pytest

from service.http.client_identity import ClientIdentity, parse_address
from service.settings import ServiceSettings

PROXIES = [ip_network("127.0.0.1/32"), ip_network("10.0.0.0/8")]


def headers(**values: str) -> Callable[[str], list[str]]:
    table = {name.replace("_", "-"): [value] for name, value in values.items()}
    return lambda name: table.get(name, [])


def test_untrusted_peer_is_the_client_and_its_headers_are_ignored() -> None:
    identity = ClientIdentity(PROXIES)
    assert identity.client("203.0.113.9", headers(x_forwarded_for="198.51.100.1")) == "addr:203.0.113.9"


def test_no_trusted_proxies_ignores_forwarded_headers() -> None:
    assert ClientIdentity().client("127.0.0.1", headers(x_forwarded_for="198.51.100.1")) == "addr:127.0.0.1"


def test_trusted_peer_gives_the_right_most_untrusted_hop() -> None:
    identity = ClientIdentity(PROXIES)
    forged = headers(x_forwarded_for="1.1.1.1, 198.51.100.7, 10.1.2.3")  # the client wrote 1.1.1.1 itself
    assert identity.client("127.0.0.1", forged) == "addr:198.51.100.7"


def test_several_header_lines_form_one_list() -> None:
    identity = ClientIdentity(PROXIES)
    table = {"x-forwarded-for": ["9.9.9.9", "198.51.100.8, 10.0.0.5"]}
    assert identity.client("10.0.0.6", lambda name: table.get(name, [])) == "addr:198.51.100.8"


def test_every_hop_trusted_gives_the_left_most() -> None:
    identity = ClientIdentity(PROXIES)
    assert identity.client("127.0.0.1", headers(x_forwarded_for="10.0.0.9, 10.0.0.5")) == "addr:10.0.0.9"


def test_missing_or_garbage_header_falls_back_to_the_last_trusted_hop() -> None:
    identity = ClientIdentity(PROXIES)
    assert identity.client("127.0.0.1", headers()) == "addr:127.0.0.1"
    assert identity.client("127.0.0.1", headers(x_forwarded_for="unknown, 10.0.0.5")) == "addr:10.0.0.5"


def test_rfc_7239_forwarded_when_chosen() -> None:
    identity = ClientIdentity(PROXIES, header="forwarded")
    value = 'for=1.1.1.1, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.3;by=10.0.0.4'
    assert identity.client("127.0.0.1", headers(forwarded=value)) == "addr:2001:db8:cafe::/64"
    assert identity.client("127.0.0.1", headers(x_forwarded_for="198.51.100.1")) == "addr:127.0.0.1"


def test_api_key_wins_over_any_address() -> None:
    assert ClientIdentity(PROXIES).client("127.0.0.1", headers(), key_id="k1") == "key:k1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1.2.3.4", "1.2.3.4"), ("1.2.3.4:80", "1.2.3.4"), ("[::1]:80", "::1"), ("::1", "::1"), ("nope", None)],
)
def test_parse_address(text: str, expected: str | None) -> None:
    parsed = parse_address(text)
    assert (str(parsed) if parsed is not None else None) == expected


def test_trusted_proxies_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNIREP_TRUSTED_PROXIES", "127.0.0.1/32,10.0.0.0/8, 10.1.2.3/16,::1")
    settings = ServiceSettings()
    assert [str(n) for n in settings.trusted_proxies] == ["127.0.0.1/32", "10.0.0.0/8", "10.1.0.0/16", "::1/128"]
    assert ServiceSettings(trusted_proxies="").trusted_proxies == []
    with pytest.raises(ValueError):
        ServiceSettings(trusted_proxies="not-a-network")
