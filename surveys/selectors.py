"""Reads for the survey loop: what views, the API and admin need to show."""

from django.db.models import QuerySet

from .models import Customer, Invitation, Response, Touchpoint


def invitation_for_token(*, token: str) -> Invitation | None:
    if not token or len(token) > 64:
        return None
    return Invitation.objects.select_related("customer", "touchpoint").filter(token=token).first()


def response_for_invitation(*, invitation: Invitation) -> Response | None:
    return Response.objects.filter(invitation=invitation).first()


def customer_for_unsubscribe_token(*, token: str) -> Customer | None:
    if not token or len(token) > 64:
        return None
    return Customer.objects.filter(unsubscribe_token=token).first()


def touchpoint_for_slug(*, slug: str) -> Touchpoint | None:
    return Touchpoint.objects.filter(slug=slug).first()


def touchpoints_active() -> QuerySet[Touchpoint]:
    return Touchpoint.objects.filter(is_active=True).order_by("name")
