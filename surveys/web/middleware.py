"""Request-wide concerns: the client's address, no caching of personal data, 503 while the database is down.

DatabaseUnavailableMiddleware: the app recovers by itself once the database is
back (connections are checked before reuse, CONN_HEALTH_CHECKS); meanwhile
people get a page that says to try again, and API clients a JSON error with
Retry-After.
"""

import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

from surveys.core import client_address

logger = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 30


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        logger.error("Database unavailable: %s", exception)
        if request.path_info.startswith(("/api/", "/v1/")):
            response = JsonResponse(
                {
                    "error": "unavailable",
                    "detail": "The service is briefly unavailable; retry shortly.",
                    "status": 503,
                    "message": "Service unavailable",
                },
                status=503,
            )
        else:
            # A template with no database access: the database is what is missing.
            response = HttpResponse(render_to_string("503.html"), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response


class ClientAddressMiddleware:
    """Resolves the client's address once (`request.client_address`), honouring NPS_TRUSTED_PROXIES."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.client_address = client_address.resolve(request.META, settings.NPS_TRUSTED_PROXIES)
        return self.get_response(request)


# Pages and JSON that carry customers' personal data: no browser history, proxy or CDN may keep them.
PRIVATE_PREFIXES = ("/dashboard/", "/cases/", "/api/", "/v1/")
PRIVATE_CACHE_CONTROL = "private, no-store"


class PrivateCacheMiddleware:
    """`Cache-Control: private, no-store` on the manager pages and both JSON APIs."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path_info.startswith(PRIVATE_PREFIXES):
            response["Cache-Control"] = PRIVATE_CACHE_CONTROL
        return response
