"""Rate limits: survey answers per token and per address, API calls per key.

Counted in the cache (Redis in production). When the cache is down, requests
go through (RATELIMIT_FAIL_OPEN): losing a customer's answer is worse than
letting a few extra requests in.
"""

import logging

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import is_ratelimited
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 60


def _over(request: HttpRequest, *, group: str, key: str, rate: str) -> bool:
    try:
        return is_ratelimited(request, group=group, key=lambda _group, _request: key, rate=rate, increment=True)
    except (RedisError, OSError) as exc:
        # django-ratelimit only fails open when the cache answers "no count"; a Redis
        # that is down raises instead, which would turn every answer into a 500.
        logger.warning("Rate-limit cache unavailable (%s): %s", group, exc)
        return not settings.RATELIMIT_FAIL_OPEN


def survey_answer_limited(request: HttpRequest, token: str) -> bool:
    address = request.META.get("REMOTE_ADDR", "")
    # Both counters advance on every answer, so neither limit can be dodged by the other.
    by_token = _over(request, group="survey-token", key=token, rate=settings.NPS_RATE_SURVEY_PER_TOKEN)
    by_address = _over(request, group="survey-ip", key=address, rate=settings.NPS_RATE_SURVEY_PER_IP)
    return by_token or by_address


def api_key_limited(request: HttpRequest, api_key) -> bool:
    return _over(request, group="api-key", key=str(api_key.pk), rate=settings.NPS_RATE_API_PER_KEY)
