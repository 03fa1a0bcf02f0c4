"""Services for customers and invitations: survey policy, upsert, unsubscribe, sending, the sweep."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from surveys.core.sweeps import SendFailed
from surveys.customers.services import CustomerConflict, customer_unsubscribe, customer_upsert
from surveys.invitations.services import invitation_request, invitation_retry, invitations_sweep
from surveys.models import Customer, Invitation, SurveySkip

from ..conftest import send_invitation
from ..factories import CustomerFactory, InvitationFactory, TouchpointFactory


def _pending(**kwargs) -> Invitation:
    return InvitationFactory(status=Invitation.Status.PENDING, sent_at=None, **kwargs)


def _reload(obj):
    obj.refresh_from_db()
    return obj


# --- invitation_request: policy ---------------------------------------------------


@pytest.mark.django_db
def test_it_creates_an_invitation_and_sends_it_once_committed(customer, touchpoint, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        outcome = invitation_request(touchpoint=touchpoint, customer=customer)
        assert mail.outbox == []

    assert not outcome.skipped
    invitation = _reload(outcome.invitation)
    assert invitation.status == Invitation.Status.SENT
    assert invitation.expires_at - invitation.created_at == timedelta(days=touchpoint.expiry_days)
    assert [m.to for m in mail.outbox] == [["jane@example.com"]]
    assert not SurveySkip.objects.exists()


@pytest.mark.django_db
def test_it_skips_an_unsubscribed_customer(customer, touchpoint):
    customer_unsubscribe(customer=customer)

    outcome = invitation_request(touchpoint=touchpoint, customer=customer)

    assert outcome.skipped
    assert outcome.skip_reason == "unsubscribed"
    assert not Invitation.objects.exists()


@pytest.mark.django_db
def test_it_skips_an_inactive_touchpoint(customer):
    touchpoint = TouchpointFactory(is_active=False)

    outcome = invitation_request(touchpoint=touchpoint, customer=customer)

    assert outcome.skip_reason == "inactive_touchpoint"
    assert not Invitation.objects.exists()


@pytest.mark.django_db
def test_it_skips_a_customer_surveyed_within_the_cooldown(customer, touchpoint):
    InvitationFactory(customer=customer, touchpoint=touchpoint, created_at=timezone.now() - timedelta(days=89))

    outcome = invitation_request(touchpoint=touchpoint, customer=customer)

    assert outcome.skip_reason == "cooldown"
    assert Invitation.objects.count() == 1


@pytest.mark.django_db
def test_it_checks_unsubscribed_before_inactive_touchpoint(customer):
    touchpoint = TouchpointFactory(is_active=False)
    InvitationFactory(customer=customer, touchpoint=touchpoint)
    customer_unsubscribe(customer=customer)

    outcome = invitation_request(touchpoint=touchpoint, customer=customer)

    assert outcome.skip_reason == "unsubscribed"


@pytest.mark.django_db
def test_it_checks_inactive_touchpoint_before_cooldown(customer):
    touchpoint = TouchpointFactory(is_active=False)
    InvitationFactory(customer=customer, touchpoint=touchpoint)

    outcome = invitation_request(touchpoint=touchpoint, customer=customer)

    assert outcome.skip_reason == "inactive_touchpoint"


@pytest.mark.django_db
def test_cooldown_spans_all_touchpoints(customer, touchpoint):
    store_visit = TouchpointFactory(slug="store-visit")
    InvitationFactory(customer=customer, touchpoint=store_visit, created_at=timezone.now() - timedelta(days=5))

    outcome = invitation_request(touchpoint=touchpoint, customer=customer)

    assert outcome.skip_reason == "cooldown"
    assert not customer.invitations.filter(touchpoint=touchpoint).exists()


@pytest.mark.django_db
def test_it_surveys_again_once_the_cooldown_has_passed(customer, touchpoint):
    InvitationFactory(customer=customer, touchpoint=touchpoint, created_at=timezone.now() - timedelta(days=91))

    outcome = invitation_request(touchpoint=touchpoint, customer=customer)

    assert not outcome.skipped
    assert customer.invitations.count() == 2


@pytest.mark.django_db
def test_a_cooldown_of_zero_days_disables_it(customer):
    touchpoint = TouchpointFactory(cooldown_days=0)
    InvitationFactory(customer=customer, touchpoint=touchpoint)

    outcome = invitation_request(touchpoint=touchpoint, customer=customer)

    assert not outcome.skipped
    assert customer.invitations.count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Invitation.Status.FAILED, Invitation.Status.CANCELLED])
def test_failed_and_cancelled_invitations_do_not_count_toward_the_cooldown(customer, touchpoint, status):
    InvitationFactory(customer=customer, touchpoint=touchpoint, status=status, sent_at=None)

    outcome = invitation_request(touchpoint=touchpoint, customer=customer)

    assert not outcome.skipped
    assert outcome.invitation.status == Invitation.Status.PENDING


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Invitation.Status.PENDING, Invitation.Status.SENDING, Invitation.Status.SENT])
def test_unsent_and_sent_invitations_count_toward_the_cooldown(customer, touchpoint, status):
    InvitationFactory(customer=customer, touchpoint=touchpoint, status=status)

    outcome = invitation_request(touchpoint=touchpoint, customer=customer)

    assert outcome.skip_reason == "cooldown"


@pytest.mark.django_db
def test_each_skip_is_recorded_with_its_reason(customer, touchpoint):
    inactive = TouchpointFactory(slug="inactive", is_active=False)
    InvitationFactory(customer=customer, touchpoint=touchpoint)
    other = CustomerFactory(email="gone@example.com")
    customer_unsubscribe(customer=other)

    invitation_request(touchpoint=touchpoint, customer=customer, source=Invitation.Source.IMPORT)
    invitation_request(touchpoint=inactive, customer=customer)
    invitation_request(touchpoint=touchpoint, customer=other)
    invitation_request(touchpoint=touchpoint, customer=other)

    skips = set(SurveySkip.objects.values_list("customer__email", "touchpoint__slug", "reason", "source"))
    assert skips == {
        ("jane@example.com", "delivery", "cooldown", "import"),
        ("jane@example.com", "inactive", "inactive_touchpoint", "api"),
        ("gone@example.com", "delivery", "unsubscribed", "api"),
    }
    assert SurveySkip.objects.filter(customer=other).count() == 2


@pytest.mark.django_db
def test_an_invitation_for_later_is_not_sent_now(customer, touchpoint, django_capture_on_commit_callbacks):
    later = timezone.now() + timedelta(hours=2)

    with django_capture_on_commit_callbacks(execute=True):
        outcome = invitation_request(touchpoint=touchpoint, customer=customer, send_after=later)

    invitation = _reload(outcome.invitation)
    assert invitation.status == Invitation.Status.PENDING
    assert invitation.expires_at == later + timedelta(days=touchpoint.expiry_days)
    assert mail.outbox == []


# --- customer_upsert ---------------------------------------------------------------


@pytest.mark.django_db
def test_it_creates_a_new_customer():
    customer = customer_upsert(email=" new@example.com ", name="New Person", external_id="crm-9")

    assert Customer.objects.get(pk=customer.pk).email == "new@example.com"
    assert customer.name == "New Person"
    assert customer.external_id == "crm-9"


@pytest.mark.django_db
def test_it_matches_the_email_case_insensitively(customer):
    found = customer_upsert(email="JANE@Example.COM", name="Jane Smith")

    assert found.pk == customer.pk
    assert Customer.objects.count() == 1
    assert _reload(customer).name == "Jane Smith"


@pytest.mark.django_db
def test_it_updates_the_customer_found_by_external_id():
    customer = CustomerFactory(email="old@example.com", external_id="crm-1", name="Old Name")

    found = customer_upsert(email="new@example.com", external_id="crm-1", name="New Name")

    assert found.pk == customer.pk
    assert Customer.objects.count() == 1
    customer = _reload(customer)
    assert (customer.email, customer.name) == ("new@example.com", "New Name")


@pytest.mark.django_db
def test_it_refuses_an_external_id_that_belongs_to_another_customer(customer):
    CustomerFactory(email="other@example.com", external_id="crm-2")

    with pytest.raises(CustomerConflict):
        customer_upsert(email="jane@example.com", external_id="crm-2", name="Changed")

    assert _reload(customer).name == "Jane Doe"
    assert _reload(customer).external_id is None


@pytest.mark.django_db
def test_empty_values_do_not_overwrite_stored_ones():
    customer = CustomerFactory(
        email="jane@example.com", name="Jane Doe", external_id="crm-3", phone="+4512345678", locale="da"
    )

    customer_upsert(email="jane@example.com", name="", external_id="  ", phone="", locale="")

    customer = _reload(customer)
    assert (customer.name, customer.external_id, customer.phone, customer.locale) == (
        "Jane Doe",
        "crm-3",
        "+4512345678",
        "da",
    )


# --- customer_unsubscribe ----------------------------------------------------------


@pytest.mark.django_db
def test_unsubscribing_cancels_pending_invitations(customer, touchpoint):
    pending = _pending(customer=customer, touchpoint=touchpoint)
    sent = InvitationFactory(customer=customer, touchpoint=touchpoint)
    someone_else = _pending(touchpoint=touchpoint)

    assert customer_unsubscribe(customer=customer) is True

    assert _reload(customer).unsubscribed_at is not None
    assert _reload(pending).status == Invitation.Status.CANCELLED
    assert _reload(sent).status == Invitation.Status.SENT
    assert _reload(someone_else).status == Invitation.Status.PENDING


@pytest.mark.django_db
def test_unsubscribing_twice_is_harmless(customer):
    customer_unsubscribe(customer=customer)
    first = _reload(customer).unsubscribed_at

    assert customer_unsubscribe(customer=customer) is False

    assert _reload(customer).unsubscribed_at == first


@pytest.mark.django_db
def test_a_cancelled_invitation_is_not_sent_after_unsubscribing(customer, touchpoint):
    pending = _pending(customer=customer, touchpoint=touchpoint)
    customer_unsubscribe(customer=customer)

    assert send_invitation(pending.pk) == "not-claimed"

    assert mail.outbox == []


# --- sending one invitation ---------------------------------------------------------------


@pytest.mark.django_db
def test_it_sends_an_invitation_exactly_once(customer, touchpoint):
    invitation = _pending(customer=customer, touchpoint=touchpoint)

    assert send_invitation(invitation.pk) == "sent"
    assert send_invitation(invitation.pk) == "not-claimed"

    assert len(mail.outbox) == 1
    invitation = _reload(invitation)
    assert invitation.status == Invitation.Status.SENT
    assert invitation.sent_at is not None
    assert invitation.send_attempts == 1


@pytest.mark.django_db
def test_it_cancels_instead_of_emailing_an_unsubscribed_customer(customer, touchpoint):
    invitation = _pending(customer=customer, touchpoint=touchpoint)
    # Unsubscribed after the invitation was queued, bypassing the cancel in customer_unsubscribe.
    Customer.objects.filter(pk=customer.pk).update(unsubscribed_at=timezone.now())

    assert send_invitation(invitation.pk) == "cancelled"

    assert mail.outbox == []
    assert _reload(invitation).status == Invitation.Status.CANCELLED


@pytest.mark.django_db
def test_it_cancels_an_invitation_that_expired_before_it_was_sent(customer, touchpoint):
    invitation = _pending(customer=customer, touchpoint=touchpoint, expires_at=timezone.now() - timedelta(minutes=1))

    assert send_invitation(invitation.pk) == "cancelled"

    assert mail.outbox == []
    invitation = _reload(invitation)
    assert invitation.status == Invitation.Status.CANCELLED
    assert "xpired" in invitation.last_error


@pytest.mark.django_db
def test_an_smtp_refusal_puts_the_invitation_back_to_pending(smtp_settings, customer, touchpoint):
    invitation = _pending(customer=customer, touchpoint=touchpoint)
    smtp_settings.handler.fail_next = 1

    with pytest.raises(SendFailed):
        send_invitation(invitation.pk)

    invitation = _reload(invitation)
    assert invitation.status == Invitation.Status.PENDING
    assert "451" in invitation.last_error
    assert invitation.sent_at is None
    assert smtp_settings.handler.messages == []

    # The next attempt goes through and clears the error.
    assert send_invitation(invitation.pk) == "sent"
    invitation = _reload(invitation)
    assert (invitation.status, invitation.last_error, invitation.send_attempts) == (Invitation.Status.SENT, "", 2)
    assert [rcpt for _, rcpt, _ in smtp_settings.handler.messages] == [["jane@example.com"]]


@pytest.mark.django_db
def test_an_unreachable_smtp_server_puts_the_invitation_back_to_pending(settings, customer, touchpoint):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = 9  # discard; nothing listens here
    settings.EMAIL_TIMEOUT = 2
    invitation = _pending(customer=customer, touchpoint=touchpoint)

    with pytest.raises(SendFailed):
        send_invitation(invitation.pk)

    invitation = _reload(invitation)
    assert invitation.status == Invitation.Status.PENDING
    assert invitation.last_error


# --- invitations_sweep -------------------------------------------------------------


@pytest.mark.django_db
def test_the_sweep_sends_pending_invitations_older_than_the_grace_period(customer, touchpoint):
    lost = _pending(customer=customer, touchpoint=touchpoint, send_after=timezone.now() - timedelta(minutes=5))

    result = invitations_sweep()

    assert result["enqueued"] == 1
    assert _reload(lost).status == Invitation.Status.SENT
    assert [m.to for m in mail.outbox] == [["jane@example.com"]]


@pytest.mark.django_db
def test_the_sweep_leaves_just_created_invitations_to_their_own_task(customer, touchpoint):
    fresh = _pending(customer=customer, touchpoint=touchpoint, send_after=timezone.now())

    result = invitations_sweep()

    assert result["enqueued"] == 0
    assert _reload(fresh).status == Invitation.Status.PENDING
    assert mail.outbox == []


@pytest.mark.django_db
def test_the_sweep_ignores_invitations_due_in_the_future(customer, touchpoint):
    later = _pending(customer=customer, touchpoint=touchpoint, send_after=timezone.now() + timedelta(hours=1))

    invitations_sweep()

    assert _reload(later).status == Invitation.Status.PENDING
    assert mail.outbox == []


@pytest.mark.django_db
def test_the_sweep_reclaims_invitations_stuck_in_sending(customer, touchpoint):
    long_ago = timezone.now() - timedelta(minutes=11)
    stuck = InvitationFactory(
        customer=customer,
        touchpoint=touchpoint,
        status=Invitation.Status.SENDING,
        sent_at=None,
        claimed_at=long_ago,
        send_after=long_ago,
        send_attempts=1,
    )

    result = invitations_sweep()

    assert result["reclaimed"] == 1
    stuck = _reload(stuck)
    assert stuck.status == Invitation.Status.SENT
    assert stuck.send_attempts == 2
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_the_sweep_leaves_an_invitation_that_is_being_sent_now(customer, touchpoint):
    moments_ago = timezone.now() - timedelta(minutes=2)
    in_flight = InvitationFactory(
        customer=customer,
        touchpoint=touchpoint,
        status=Invitation.Status.SENDING,
        sent_at=None,
        claimed_at=moments_ago,
        send_after=moments_ago,
    )

    result = invitations_sweep()

    assert result == {"reclaimed": 0, "enqueued": 0}
    assert _reload(in_flight).status == Invitation.Status.SENDING
    assert mail.outbox == []


@pytest.mark.django_db
def test_the_sweep_leaves_sent_failed_and_cancelled_invitations_alone(touchpoint):
    long_ago = timezone.now() - timedelta(days=1)
    for status in (Invitation.Status.SENT, Invitation.Status.FAILED, Invitation.Status.CANCELLED):
        InvitationFactory(touchpoint=touchpoint, status=status, send_after=long_ago, claimed_at=long_ago)

    assert invitations_sweep() == {"reclaimed": 0, "enqueued": 0}

    assert mail.outbox == []


# --- invitation_retry ----------------------------------------------------------------


@pytest.mark.django_db
def test_retrying_a_failed_invitation_sends_it(customer, touchpoint, django_capture_on_commit_callbacks):
    failed = InvitationFactory(
        customer=customer,
        touchpoint=touchpoint,
        status=Invitation.Status.FAILED,
        sent_at=None,
        send_attempts=6,
        last_error="SMTPDataError: (451, b'try later')",
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert invitation_retry(invitation=failed) is True

    failed = _reload(failed)
    assert failed.status == Invitation.Status.SENT
    assert failed.send_attempts == 1
    assert [m.to for m in mail.outbox] == [["jane@example.com"]]


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Invitation.Status.SENT, Invitation.Status.CANCELLED, Invitation.Status.PENDING])
def test_retrying_only_applies_to_failed_invitations(customer, touchpoint, status, django_capture_on_commit_callbacks):
    invitation = InvitationFactory(customer=customer, touchpoint=touchpoint, status=status)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert invitation_retry(invitation=invitation) is False

    assert callbacks == []
    assert _reload(invitation).status == status
    assert mail.outbox == []
