"""API keys: only a hash is stored; authentication accepts live keys only."""

import pytest

from surveys.access.services import api_key_authenticate, api_key_create, api_key_revoke
from surveys.models import ApiKey


@pytest.mark.django_db
def test_it_stores_only_a_hash_of_the_key():
    api_key, raw_key = api_key_create(name="Helpdesk")

    assert raw_key.startswith("lp_")
    assert len(raw_key) > 40
    stored = ApiKey.objects.filter(pk=api_key.pk).values().get()
    assert stored["name"] == "Helpdesk"
    assert all(raw_key not in str(value) for value in stored.values())
    # The visible prefix tells keys apart but is far too short to be used as the key.
    assert raw_key.startswith(stored["prefix"]) and len(stored["prefix"]) < len(raw_key) // 2


@pytest.mark.django_db
def test_each_key_is_different():
    _, first = api_key_create(name="One")
    _, second = api_key_create(name="Two")

    assert first != second
    assert api_key_authenticate(raw_key=first).name == "One"
    assert api_key_authenticate(raw_key=second).name == "Two"


@pytest.mark.django_db
def test_it_authenticates_a_valid_key():
    api_key, raw_key = api_key_create(name="Helpdesk")

    assert api_key_authenticate(raw_key=raw_key) == api_key

    api_key.refresh_from_db()
    assert api_key.last_used_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "mangle",
    [
        lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"),  # same prefix, wrong secret
        lambda key: key[:11],  # the visible prefix alone
        lambda key: key + "x",
        lambda key: key.upper(),
        lambda key: "",
        lambda key: key + "x" * 500,
    ],
)
def test_it_rejects_a_wrong_key(mangle):
    _, raw_key = api_key_create(name="Helpdesk")

    assert api_key_authenticate(raw_key=mangle(raw_key)) is None


@pytest.mark.django_db
def test_it_rejects_a_revoked_key():
    api_key, raw_key = api_key_create(name="Helpdesk")

    api_key_revoke(api_key=api_key)

    assert api_key_authenticate(raw_key=raw_key) is None
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
