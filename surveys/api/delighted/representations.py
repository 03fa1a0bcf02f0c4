"""People and survey responses as Delighted's API shows them: its field names, Unix timestamps.
"""


from django.db.models import Max, Q
from django.urls import reverse
from django.utils import timezone

from surveys.mail import messages as emails
from surveys.models import Customer, Invitation, Response


def unix(moment) -> int | None:
    return None if moment is None else int(moment.timestamp())


def person(customer: Customer, *, summary: dict | None = None) -> dict:
    summary = summary or {}
    return {
        "id": str(customer.pk),
        "email": customer.email,
        "name": customer.name or None,
        "created_at": unix(customer.created_at),
        "phone_number": customer.phone or None,
        "last_sent_at": unix(max(filter(None, [summary.get("last_sent_at"), customer.last_sent_at]), default=None)),
        "last_responded_at": unix(summary.get("last_responded_at")),
        "next_survey_scheduled_at": unix(summary.get("next_survey_scheduled_at")),
    }


def people_summaries(customer_ids: list[int]) -> dict[int, dict]:
    """Last sent, last answered and next scheduled survey for many people: two aggregate queries."""
    summaries: dict[int, dict] = {pk: {} for pk in customer_ids}
    now = timezone.now()
    for row in (
        Invitation.objects.filter(customer_id__in=customer_ids)
        .values("customer_id")
        .annotate(
            last_sent_at=Max("sent_at"),
            next_survey_scheduled_at=Max("send_after", filter=Q(status=Invitation.Status.PENDING, send_after__gt=now)),
        )
    ):
        summaries[row["customer_id"]].update(row)
    for row in Response.objects.filter(customer_id__in=customer_ids).values("customer_id").annotate(
        last_responded_at=Max("created_at")
    ):
        summaries[row["customer_id"]].update(row)
    return summaries


def survey_response(response: Response, *, expand_person: bool) -> dict:
    customer = response.customer
    return {
        "id": str(response.pk),
        "person": person(customer, summary=people_summaries([customer.pk])[customer.pk])
        if expand_person
        else str(customer.pk),
        "survey_type": "nps",
        "score": response.score,
        "comment": response.reason or None,
        "permalink": emails.absolute_url(reverse("admin:surveys_response_change", args=[response.pk])),
        "created_at": unix(response.created_at),
        "updated_at": unix(response.updated_at) if response.updated_at > response.created_at else None,
        "person_properties": response.invitation.properties or {},
        "notes": [],
        "tags": [],
        "additional_answers": [],
    }
