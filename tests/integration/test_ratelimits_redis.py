"""Rate limits counted in a real Redis, as in production (CACHE_URL)."""

import os
import secrets

import pytest
import redis

from surveys.access import ratelimits
from surveys.models import Response

pytestmark = pytest.mark.django_db


@pytest.fixture
def redis_counters(integration_services, settings):
    """CACHE_URL on the suite's Redis, with a key prefix of this test's own; its keys are deleted afterwards."""
    url = os.environ["CELERY_BROKER_URL"]
    prefix = f"lp-test-{secrets.token_hex(6)}"
    settings.CACHE_URL = url
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "KEY_PREFIX": prefix}}
    client = redis.Redis.from_url(url)
    yield client, prefix
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def test_answers_over_the_token_limit_get_a_429_counted_in_redis(client, invitation, redis_counters, settings):
    redis_client, prefix = redis_counters
    settings.NPS_RATE_SURVEY_PER_TOKEN = "3/h"
    for _ in range(3):
        assert client.post(f"/s/{invitation.token}/", {"score": "11"}).status_code == 200  # invalid, re-shown

    response = client.post(f"/s/{invitation.token}/", {"score": "9"})

    assert response.status_code == 429
    assert not Response.objects.exists()
    keys = [key.decode() for key in redis_client.scan_iter(f"{prefix}:rl:survey-token:*")]
    assert len(keys) == 1
    assert int(redis_client.get(keys[0])) == 4
    assert 0 < redis_client.ttl(keys[0]) <= 3601  # the counter goes away with its window
    assert invitation.token not in keys[0]  # tokens are hashed, never stored in the clear


def test_the_address_limit_counts_across_surveys_in_redis(client, redis_counters, settings):
    from tests.factories import InvitationFactory

    settings.NPS_RATE_SURVEY_PER_IP = "2/h"
    invitations = InvitationFactory.create_batch(3)

    statuses = [client.post(f"/s/{item.token}/", {"score": "8"}).status_code for item in invitations]

    assert statuses == [302, 302, 429]
    assert Response.objects.count() == 2


def test_answers_go_through_when_the_rate_limit_redis_is_down(client, invitation, settings, caplog):
    from tests.factories import InvitationFactory

    settings.CACHE_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.NPS_RATE_SURVEY_PER_IP = "1/h"

    other = InvitationFactory(customer=invitation.customer)

    statuses = [client.post(f"/s/{item.token}/", {"score": "9"}).status_code for item in (invitation, other)]

    assert statuses == [302, 302]
    assert Response.objects.filter(score=9).count() == 2
    assert "Rate-limit counters unavailable" in caplog.text


@pytest.mark.parametrize("rate", ["10", "ten/m", "10/w", "/m"])
def test_a_malformed_rate_is_refused_with_its_name(rate):
    with pytest.raises(Exception, match="count per period"):
        ratelimits.parse_rate(rate)


def test_rates_read_as_count_per_period():
    assert ratelimits.parse_rate("10/m") == (10, 60)
    assert ratelimits.parse_rate("100/5m") == (100, 300)
    assert ratelimits.parse_rate("5/h") == (5, 3600)
