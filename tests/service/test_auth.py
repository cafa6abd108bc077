"""Bearer keys: which tenant a key belongs to, and the 401s."""

from __future__ import annotations

import pytest

from service.auth import check_bearer, tenant_of
from service.errors import ApiError

KEYS = ["acme:old", "acme:new", "bare"]


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
