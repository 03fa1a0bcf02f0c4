"""Erasure (SPEC §6, §8.1): a person's data found by identity and removed; their addresses suppressed.
"""


from django.db import transaction
from django.utils import timezone

from surveys.core import validation
from surveys.customers.services import address_hash
from surveys.mail import files as mail_files
from surveys.models import (
    CaseNote,
    Coupon,
    Customer,
    FollowUpCase,
    IdempotencyRecord,
    Invitation,
    ReferralConversion,
    ReferralLink,
    Response,
    SuppressedAddress,
    SurveySkip,
    WebhookDelivery,
)


# Every model whose rows belong to one customer: erasure renames their entries in the admin's history.
def _customer_owned_objects(customer: Customer) -> list[tuple[type, list]]:
    return [
        (Customer, [customer.pk]),
        (Invitation, list(Invitation.objects.filter(customer=customer).values_list("pk", flat=True))),
        (Response, list(Response.objects.filter(customer=customer).values_list("pk", flat=True))),
        (Coupon, list(Coupon.objects.filter(customer=customer).values_list("pk", flat=True))),
        (FollowUpCase, list(FollowUpCase.objects.filter(customer=customer).values_list("pk", flat=True))),
        (CaseNote, list(CaseNote.objects.filter(case__customer=customer).values_list("pk", flat=True))),
        (ReferralLink, list(ReferralLink.objects.filter(customer=customer).values_list("pk", flat=True))),
        (SurveySkip, list(SurveySkip.objects.filter(customer=customer).values_list("pk", flat=True))),
        (WebhookDelivery, list(WebhookDelivery.objects.filter(customer=customer).values_list("pk", flat=True))),
    ]


def _admin_history_erase(customer: Customer) -> int:
    """The admin's history names the rows it changed ("Jane Roe <jane@…>"): rename this person's, by object."""
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    changed = 0
    for model, pks in _customer_owned_objects(customer):
        content_type = ContentType.objects.get_for_model(model)
        for first in range(0, len(pks), 1000):
            object_ids = [str(pk) for pk in pks[first : first + 1000]]
            changed += LogEntry.objects.filter(content_type=content_type, object_id__in=object_ids).update(
                object_repr="(erased)", change_message=""
            )
    return changed


@transaction.atomic
def customer_erase(*, customer: Customer) -> None:
    """Erase a person (SPEC §6, §8.1): personal data and reason texts go, anonymised scores stay.

    Everything is found by identity (the customer's id, and the content type and
    object id of what belongs to them), never by matching text, so nothing of
    another person is touched and an address they used before is no escape.
    Their every address survives only as a keyed hash on the suppression list,
    so no email of any kind reaches it again. Running it again is harmless and
    scrubs whatever arrived since.
    """
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    now = timezone.now()
    hashes = {former.address_hash for former in customer.former_addresses.all()}
    if not customer.email.endswith("@" + validation.ERASED_DOMAIN):
        hashes.add(address_hash(customer.email))
    for digest in hashes:
        SuppressedAddress.objects.get_or_create(address_hash=digest)
    customer.former_addresses.all().delete()
    Customer.objects.filter(pk=customer.pk).update(
        email=f"erased-{customer.pk}@{validation.ERASED_DOMAIN}",
        name="",
        phone="",
        external_id=None,
        unsubscribed_at=customer.unsubscribed_at or now,
        erased_at=customer.erased_at or now,
        updated_at=now,
    )
    Response.objects.filter(customer=customer).exclude(reason="").update(reason="", updated_at=now)
    # Their links close (SPEC §8.3): whatever was not answered takes no answer any more.
    Invitation.objects.filter(
        customer=customer, answered_at__isnull=True,
        status__in=[Invitation.Status.PENDING, Invitation.Status.SENDING, Invitation.Status.SENT],
    ).update(status=Invitation.Status.CANCELLED)
    # A refused send's recorded error quotes the address; properties come from the integrator.
    Invitation.objects.filter(customer=customer).exclude(properties={}, last_error="").update(
        properties={}, last_error=""
    )
    Coupon.objects.filter(customer=customer).exclude(last_error="").update(last_error="")
    CaseNote.objects.filter(case__customer=customer).exclude(text="(erased)").update(text="(erased)")
    ReferralConversion.objects.filter(link__customer=customer).delete()
    # Undelivered webhook payloads carry the person's data: they are not sent. The log of those
    # already sent keeps its status and times, not the person.
    deliveries = WebhookDelivery.objects.filter(customer=customer)
    deliveries.filter(status=WebhookDelivery.Status.PENDING).delete()
    deliveries.exclude(payload={"erased": True}).update(payload={"erased": True}, last_error="")
    IdempotencyRecord.objects.filter(customer=customer).delete()
    _admin_history_erase(customer)
    # Development mail files (var/mail/*.eml) written to or about them. At once rather than on commit:
    # should the erasure roll back, the cost is a developer's copies of some emails.
    mail_files.eml_files_erase(customer_id=customer.pk)
