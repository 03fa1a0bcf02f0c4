"""The client's address: the connection's, or the one the trusted proxies in front of us saw.

Behind N reverse proxies (`NPS_TRUSTED_PROXIES`), each appends the address it
was connected from to `X-Forwarded-For`, so the client is the N-th entry from
the right; anything left of it was written by the client and proves nothing.
With no proxy the header is ignored altogether. Resolved once per request by
`ClientAddressMiddleware`; the rate limits, the login lockout (django-axes)
and referral visits all read it from here.
"""

import ipaddress

from django.conf import settings


def _valid(address: str) -> str | None:
    address = address.strip()
    if address.startswith("[") and "]" in address:
        address = address[1 : address.index("]")]  # "[2001:db8::1]:443"
    elif address.count(":") == 1:
        address = address.split(":", 1)[0]  # "203.0.113.7:51234"
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def resolve(meta: dict, trusted_proxies: int) -> str:
    """The client address for a request's META, given how many proxies stand in front of the app."""
    remote = meta.get("REMOTE_ADDR", "") or ""
    if trusted_proxies <= 0:
        return remote
    hops = [hop for hop in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    if not hops:
        return remote  # not through the proxies at all
    # The N-th from the right; a shorter chain is as far as anyone we trust could see.
    candidate = hops[-trusted_proxies] if len(hops) >= trusted_proxies else hops[0]
    return _valid(candidate) or remote


def client_address(request) -> str:
    """The address of the client that sent `request` (as resolved by the middleware, or now)."""
    address = getattr(request, "client_address", None)
    if address is None:
        address = resolve(request.META, settings.NPS_TRUSTED_PROXIES)
    return address
