"""Customers: upsert (the one way a customer is created or updated), email change, unsubscribe, suppression.

Addresses are compared canonically (core.validation); an erased person's record is never written to;
a suppressed address stays suppressed on whichever record it arrives.
"""


from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Value
from django.db.models.functions import Lower
from django.utils import timezone

from surveys.core import validation
from surveys.core.hashing import keyed_hash, keyed_hashes
from surveys.models import (
    Customer,
    FormerAddress,
    Invitation,
    SuppressedAddress,
)


class CustomerConflict(Exception):
    """The email and the external id given belong to two different customers."""



class CustomerErased(CustomerConflict):
    """The record is an erased person's: it is never filled with data again."""

    def __init__(self, message: str = "This person's data was erased on request; the record cannot be filled again."):
        super().__init__(message)



def customer_upsert(
    *,
    email: str,
    name: str = "",
    external_id: str | None = None,
    phone: str = "",
    locale: str = "",
) -> Customer:
    """Find the customer by email (case-insensitive), else by external id; create or update it.

    Empty values never overwrite what is stored.
    """
    customer, _ = customer_import_row(email=email, name=name, external_id=external_id, phone=phone, locale=locale)
    return customer


def customers_with_email(email: str, *, among=None):
    """The customer with this address in any case (of `among`, a queryset of customers, if given).

    Compared as LOWER(email), the expression of the unique index, so PostgreSQL uses it
    (`email__iexact` compares UPPER() and scans the whole table).
    """
    customers = Customer.objects.all() if among is None else among
    return customers.alias(email_lower=Lower("email")).filter(email_lower=Lower(Value(email)))


def customer_import_row(
    *,
    email: str,
    name: str = "",
    external_id: str | None = None,
    phone: str = "",
    locale: str = "",
) -> tuple[Customer, str]:
    """`customer_upsert`, also saying what happened: "created", "updated" or "unchanged".

    The address is compared canonically (`core.validation.canonical_email`); an
    erased person's record is never written to (`CustomerErased`).
    """
    email = validation.canonical_email(email)
    external_id = (external_id or "").strip() or None
    with transaction.atomic():
        customer = customers_with_email(email).select_for_update().first()
        if external_id:
            by_external = Customer.objects.select_for_update().filter(external_id=external_id).first()
            if customer is None:
                customer = by_external
            elif by_external is not None and by_external.pk != customer.pk:
                raise CustomerConflict(
                    f"The external id {external_id!r} belongs to another customer than {email}."
                )
        if customer is not None and customer.erased_at is not None:
            raise CustomerErased()
        old_email = customer.email if customer is not None else None
        if customer is None:
            customer = Customer(email=email)
        change = "created" if customer.pk is None else "unchanged"
        for field, value in (("email", email), ("name", name), ("external_id", external_id), ("phone", phone),
                             ("locale", locale)):
            if value and getattr(customer, field) != value:
                setattr(customer, field, value)
                if change == "unchanged":
                    change = "updated"
        if change != "unchanged":
            customer.updated_at = timezone.now()
            if old_email != customer.email and customer.unsubscribed_at is None and address_is_suppressed(email):
                # An erased person asked never to be emailed again, whatever record their address turns up on.
                customer.unsubscribed_at = customer.updated_at
            try:
                with transaction.atomic():
                    customer.save()
            except IntegrityError:
                # Another request created the same email or external id a moment ago.
                raise CustomerConflict(f"{email} was created by a concurrent request; retry.") from None
            if old_email is not None and old_email != customer.email:
                former_address_record(customer=customer, email=old_email)
    return customer, change


def customer_change_email(*, customer: Customer, email: str) -> Customer:
    """Give a customer a new address (Delighted's `email_update`, the admin).

    A suppressed address stays suppressed on whichever record it arrives: the
    customer is then unsubscribed. The address given up is remembered as a
    keyed hash, so that erasing the person later suppresses it too.
    """
    email = validation.canonical_email(email)
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        if customer.erased_at is not None:
            raise CustomerErased()
        if customer.email == email:
            return customer
        if customers_with_email(email).exclude(pk=customer.pk).exists():
            raise CustomerConflict(f"{email} already belongs to another customer.")
        now = timezone.now()
        changes = {"email": email, "updated_at": now}
        if customer.unsubscribed_at is None and address_is_suppressed(email):
            changes["unsubscribed_at"] = now
        Customer.objects.filter(pk=customer.pk).update(**changes)
        former_address_record(customer=customer, email=customer.email)
        if "unsubscribed_at" in changes:
            invitations_cancel_unsent(customer_id=customer.pk, why="The new address is on the suppression list.")
    customer.refresh_from_db()
    return customer


def customer_edit(*, customer: Customer, email: str, name: str, phone: str, external_id: str | None, locale: str) -> Customer:
    """An admin's edit of a customer's details: the same rules as every other way in (SPEC §8.7)."""
    with transaction.atomic():
        current = Customer.objects.select_for_update().get(pk=customer.pk)
        if current.erased_at is not None:
            raise CustomerErased()
        if validation.canonical_email(email) != current.email:
            customer_change_email(customer=current, email=email)
        external_id = (external_id or "").strip() or None
        if external_id and Customer.objects.filter(external_id=external_id).exclude(pk=current.pk).exists():
            raise CustomerConflict(f"The external id {external_id!r} belongs to another customer.")
        Customer.objects.filter(pk=current.pk).update(
            name=name, phone=phone, external_id=external_id, locale=locale or current.locale, updated_at=timezone.now()
        )
    customer.refresh_from_db()
    return customer


def former_address_record(*, customer: Customer, email: str) -> None:
    """Remember, as a keyed hash only, an address the customer gave up."""
    if email and not email.endswith("@" + validation.ERASED_DOMAIN):
        FormerAddress.objects.get_or_create(customer_id=customer.pk, address_hash=address_hash(email))


def invitations_cancel_unsent(*, customer_id: int, why: str) -> int:
    return Invitation.objects.filter(customer_id=customer_id, status=Invitation.Status.PENDING).update(
        status=Invitation.Status.CANCELLED, last_error=why
    )


def customer_unsubscribe(*, customer: Customer) -> bool:
    """Unsubscribe the customer from every email. Returns False if they already were."""
    now = timezone.now()
    updated = Customer.objects.filter(pk=customer.pk, unsubscribed_at__isnull=True).update(
        unsubscribed_at=now, updated_at=now
    )
    if updated:
        invitations_cancel_unsent(customer_id=customer.pk, why="Customer unsubscribed before sending.")
    return bool(updated)



SUPPRESSED = "The address is on the suppression list (its person was erased on request)."


def _address_forms(email: str) -> list[str]:
    """The canonical address, and the plain lower-case form hashes were made of before addresses were canonical."""
    legacy = email.strip().lower()
    try:
        canonical = validation.canonical_email(email)
    except ValidationError:
        return [legacy]
    return list(dict.fromkeys([canonical, legacy]))


def address_hash(email: str) -> str:
    """A keyed hash of an address (canonical form, current key): lets us refuse it later without keeping it."""
    return keyed_hash("suppress|" + _address_forms(email)[0])


def addresses_suppressed(emails: list[str]) -> set[str]:
    """Those of `emails` on the suppression list, in any spelling and under any key still honoured."""
    candidates: dict[str, str] = {}
    for email in set(emails):
        for form in _address_forms(email):
            for digest in keyed_hashes("suppress|" + form):
                candidates[digest] = email
    if not candidates:
        return set()
    found = SuppressedAddress.objects.filter(address_hash__in=list(candidates)).values_list("address_hash", flat=True)
    return {candidates[digest] for digest in found}


def address_is_suppressed(email: str) -> bool:
    return bool(addresses_suppressed([email]))


def customer_suppress(*, customer_id: int) -> None:
    """The customer's address turned out to be suppressed: unsubscribe them and cancel what waits to be sent."""
    now = timezone.now()
    Customer.objects.filter(pk=customer_id, unsubscribed_at__isnull=True).update(unsubscribed_at=now, updated_at=now)
    invitations_cancel_unsent(customer_id=customer_id, why=SUPPRESSED)



def customer_set_last_sent(*, customer: Customer, moment) -> None:
    """Record a survey sent elsewhere (Delighted's `last_sent_at`), so the cooldown counts it."""
    Customer.objects.filter(pk=customer.pk).update(last_sent_at=moment, updated_at=timezone.now())
    customer.last_sent_at = moment
