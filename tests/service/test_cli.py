"""``r2ec serve`` flags: every setting is one, comma lists split as their env vars are."""

from __future__ import annotations

from service.cli import parse_settings


def test_comma_list_flags_become_the_keyring(monkeypatch):
    for name in ("R2EC_API_KEYS", "R2EC_TENANT_KEYS", "R2EC_LEGACY_USER_TENANT"):
        monkeypatch.delenv(name, raising=False)
    s = parse_settings(["--api-keys", "k1, k2", "--tenant-keys", "acme:x:y,acme:z", "--legacy-user-tenant", "acme"])
    assert s.api_keys == ["k1", "k2"] and s.tenant_keys == ["acme:x:y", "acme:z"]
    assert s.keyring == [("k1", None), ("k2", None), ("x:y", "acme"), ("z", "acme")]
    assert parse_settings([]).keyring == []
