"""Django admin, one module per domain; every write goes through the domain's services."""

from . import access, customers, followups, invitations, promoters, responses, touchpoints, webhooks  # noqa: F401
