"""Bearer keys: which tenant a key belongs to, and the 401s."""

from __future__ import annotations

import pytest

from service.auth import check_bearer, tenant_of
from service.errors import ApiError

KEYS = [("old", "acme"), ("new", "acme"), ("bare", None)]


def test_the_keys_of_a_named_tenant_share_it_and_a_bare_key_is_its_own():
    assert check_bearer(KEYS, "Bearer old") == check_bearer(KEYS, "bearer new") == "n:acme"
    bare = check_bearer(KEYS, "Bearer bare")
    assert bare == tenant_of("bare") and bare.startswith("k:") and "bare" not in bare
    assert check_bearer([], "") is None  # auth off


@pytest.mark.parametrize("header", ["", "Bearer", "Basic old", "Bearer acme:old", "Bearer nope", "Bearer ol"])
def test_anything_else_is_unauthorized(header):
    with pytest.raises(ApiError) as err:
        check_bearer(KEYS, header)
    assert err.value.type.value == "unauthorized"


def test_settings_build_the_keyring_and_refuse_what_is_ambiguous():
    from service.settings import Settings

    s = Settings(api_keys="k1, a:b", tenant_keys="acme:x:y, acme:z")
    assert s.keyring == [("k1", None), ("a:b", None), ("x:y", "acme"), ("z", "acme")]  # bare keys keep any ':'
    assert (
        check_bearer(s.keyring, "Bearer a:b") == tenant_of("a:b") and check_bearer(s.keyring, "Bearer x:y") == "n:acme"
    )
    for bad in (
        dict(tenant_keys="bad name:key"),
        dict(tenant_keys="acme:"),
        dict(tenant_keys="nokey"),
        dict(api_keys="k", tenant_keys="acme:k"),  # one key, two tenants
        dict(tenant_keys="acme:k", legacy_user_tenant="globex"),  # adopted by a tenant no key has
        dict(legacy_user_tenant="acme"),
        dict(local_users_max=0),
    ):
        with pytest.raises(ValueError):
            Settings(**bad)
