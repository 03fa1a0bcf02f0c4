"""Keyed hashes: what lets us recognise an address or a visitor again without keeping it.

The key is `NPS_HASH_KEY`, or one derived from `SECRET_KEY` when that is not set.
A hash made with `SECRET_KEY` before it was rotated still matches as long as the
old key stays in `SECRET_KEY_FALLBACKS`, so rotating the secret does not forget
the suppression list.
"""

import hashlib
import hmac

from django.conf import settings


def _keys() -> list[bytes]:
    """The key new hashes are made with, then every key an earlier hash may have been made with."""
    keys = []
    if settings.NPS_HASH_KEY:
        keys.append(settings.NPS_HASH_KEY)
    keys.append(settings.SECRET_KEY)
    keys.extend(getattr(settings, "SECRET_KEY_FALLBACKS", []) or [])
    unique = []
    for key in keys:
        if key and key not in unique:
            unique.append(key)
    return [key.encode() for key in unique]


def keyed_hash(value: str) -> str:
    """The hash of `value` under the current key."""
    return hmac.new(_keys()[0], value.encode(), hashlib.sha256).hexdigest()


def keyed_hashes(value: str) -> list[str]:
    """The hashes `value` may have been stored under: the current key's first, then the older keys'."""
    return [hmac.new(key, value.encode(), hashlib.sha256).hexdigest() for key in _keys()]
