"""Rate limits: survey answers per token and per address, API calls per key.

Fixed-window counters: "10/m" allows ten hits per clock minute. With Redis
(CACHE_URL, production) every counter a request advances goes to Redis in one
pipelined round trip, on a client this module keeps for the process; through
django-ratelimit and Django's cache API the survey answer's two counters cost
four round trips and a new client each, a fifth of the answer's time
(bench/http.py). Without CACHE_URL (development, tests) the counts live in
Django's cache of the process.

When Redis is down, requests go through (RATELIMIT_FAIL_OPEN): losing a
customer's answer is worse than letting a few extra requests in.
"""

import hashlib
import logging
import re
import time
from functools import lru_cache

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from redis.exceptions import RedisError

from surveys.core import redis as redis_store
from surveys.core.client_address import client_address

logger = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 60
_RATE = re.compile(r"(\d+)/(\d*)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@lru_cache(maxsize=32)
def parse_rate(rate: str) -> tuple[int, int]:
    """'10/m' → (10, 60); '100/5m' → (100, 300)."""
    match = _RATE.fullmatch(rate.strip())
    if not match:
        raise ImproperlyConfigured(f"Rate {rate!r}: expected a count per period, such as 10/m or 100/5m.")
    count, multiple, unit = match.groups()
    return int(count), int(multiple or 1) * _UNIT_SECONDS[unit]


def _hits(counters: list[tuple[str, str, str]]) -> list[bool]:
    """Advance each (group, key, rate) counter by one; for each, whether it is now over its rate."""
    now = int(time.time())
    windows = []
    for group, key, rate in counters:
        limit, period = parse_rate(rate)
        # Hashed: keys can be addresses or tokens, which have no business in Redis in the clear.
        digest = hashlib.blake2b(key.encode(), digest_size=12).hexdigest()
        windows.append((redis_store.key(f"rl:{group}:{period}:{now // period}:{digest}"), limit, period))
    client = redis_store.client()
    if client is not None:
        pipeline = client.pipeline(transaction=False)
        for name, _limit, period in windows:
            pipeline.incr(name)
            pipeline.expire(name, period + 1)
        counts = pipeline.execute()[0::2]
    else:
        counts = []
        for name, _limit, period in windows:
            cache.add(name, 0, period + 1)
            counts.append(cache.incr(name))
    return [count > limit for count, (_name, limit, _period) in zip(counts, windows)]


def _limited(counters: list[tuple[str, str, str]]) -> bool:
    try:
        return any(_hits(counters))
    except (RedisError, OSError, ValueError) as exc:
        # ValueError: the local cache lost the key between add and incr. Either way, no count.
        logger.warning("Rate-limit counters unavailable (%s): %s", ", ".join(c[0] for c in counters), exc)
        return not settings.RATELIMIT_FAIL_OPEN


def survey_answer_limited(request: HttpRequest, token: str, *, valid: bool = True) -> bool:
    """Whether this answer to the survey `token` is over a limit.

    Every post counts for its token. Only a valid answer counts for the client's address too:
    a form sent back with an error (a customer fixing a typo) does not use up the budget that
    everyone behind the same address shares.
    """
    counters = [("survey-token", token, settings.NPS_RATE_SURVEY_PER_TOKEN)]
    if valid:
        counters.append(("survey-ip", client_address(request), settings.NPS_RATE_SURVEY_PER_IP))
    # The counters advance together, so neither limit can be dodged by the other.
    return _limited(counters)


def referral_visit_limited(request: HttpRequest) -> bool:
    return _limited([("referral-ip", client_address(request), settings.NPS_RATE_REFERRAL_PER_IP)])


def api_key_limited(request: HttpRequest, api_key) -> bool:
    return _limited([("api-key", str(api_key.pk), settings.NPS_RATE_API_PER_KEY)])
