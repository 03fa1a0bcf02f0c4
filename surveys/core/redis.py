"""The process's Redis client on CACHE_URL, for what needs Redis itself rather than Django's cache
API: the rate-limit counters and the follow-up set (several commands in one round trip)."""

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=4)
def _client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)


def client() -> redis.Redis | None:
    """None without CACHE_URL (development, tests): callers fall back to what works without Redis."""
    return _client_for(settings.CACHE_URL) if settings.CACHE_URL else None


def key(name: str) -> str:
    """`name` under this deployment's prefix (CACHE_KEY_PREFIX), as Django's cache prefixes its own keys."""
    return f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:{name}"
