"""Privacy (SPEC §6): export everything stored about a customer, and erase their personal data.

Erasure removes name, email, phone, external id and reason texts, keeps the
anonymised scores so the NPS history does not change, and leaves only a keyed
hash of the address on the suppression list so no email ever reaches it again.
"""

import io
import json
import smtplib
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from surveys.customers.services import address_hash, address_is_suppressed, customer_upsert
from surveys.dashboard import selectors as selectors_dashboard
from surveys.followups.services import case_note_add
from surveys.invitations.services import invitation_request, invitations_sweep
from surveys.models import (
    CaseNote,
    Coupon,
    Customer,
    FollowUpCase,
    Invitation,
    ReferralConversion,
    Response,
    SuppressedAddress,
    SurveySkip,
    WebhookDelivery,
    WebhookEndpoint,
)
from surveys.privacy.selectors import customer_export
from surveys.privacy.services import customer_erase
from surveys.promoters.services import coupon_issue, coupon_redeem, referral_convert, referral_link_ensure
from surveys.responses.services import response_submit

from ..conftest import send_invitation
from ..factories import CustomerFactory, InvitationFactory, TouchpointFactory
from ..page_parsing import elements, form_values

pytestmark = pytest.mark.django_db

EMAIL = "jane.roe@example.com"
PERSONAL = [EMAIL, "Jane Roe", "555 0101", "crm-4711", "The courier was rude", "Quick and friendly", "pro-plan-x"]


@pytest.fixture
def touchpoint(db):
    return TouchpointFactory(name="Home delivery", slug="delivery", alert_recipients="cx@acme.test")


@pytest.fixture
def manager(db):
    return User.objects.create_user("mia", "mia@acme.test", "pw-for-tests", is_staff=True)


@pytest.fixture
def jane(touchpoint, manager):
    """A customer with one of everything: answers, a coupon, a case with notes, a skip, a pending survey."""
    customer = CustomerFactory(email=EMAIL, name="Jane Roe", phone="+1 555 0101", external_id="crm-4711")
    detractor = response_submit(
        invitation=InvitationFactory(customer=customer, touchpoint=touchpoint, properties={"plan": "pro-plan-x"}),
        score=3,
        reason="The courier was rude",
    )
    promoter = response_submit(
        invitation=InvitationFactory(customer=customer, touchpoint=touchpoint), score=10, reason="Quick and friendly"
    )
    coupon = coupon_issue(response=promoter)
    case = FollowUpCase.objects.get(response=detractor)
    case_note_add(case=case, author=manager, text="Called Jane Roe on +1 555 0101, she wants a refund")
    SurveySkip.objects.create(customer=customer, touchpoint=touchpoint, reason="cooldown")
    pending = InvitationFactory(
        customer=customer, touchpoint=touchpoint, status="pending", sent_at=None, properties={"order": "pro-plan-x"}
    )
    link = referral_link_ensure(customer_id=customer.pk, touchpoint=touchpoint, response=promoter)
    referral_convert(link=link, email="friend@example.com", order_id="ORD-1")
    return {
        "customer": customer,
        "detractor": detractor,
        "promoter": promoter,
        "coupon": coupon,
        "case": case,
        "pending": pending,
    }


def dump_database() -> str:
    out = io.StringIO()
    call_command("dumpdata", stdout=out)
    return out.getvalue()


# --- customer_erase ---------------------------------------------------------------------


def test_erasure_removes_personal_data_and_keeps_the_scores(jane):
    customer = jane["customer"]

    customer_erase(customer=customer)

    customer.refresh_from_db()
    assert customer.email == f"erased-{customer.pk}@erased.invalid"
    assert (customer.name, customer.phone, customer.external_id) == ("", "", None)
    assert customer.erased_at is not None and customer.unsubscribed_at is not None
    answers = Response.objects.filter(customer=customer).order_by("score")
    assert [(a.score, a.category, a.reason) for a in answers] == [(3, "detractor", ""), (10, "promoter", "")]
    assert not Invitation.objects.filter(customer=customer).exclude(properties={}).exists()
    jane["pending"].refresh_from_db()
    assert jane["pending"].status == "cancelled"
    assert list(CaseNote.objects.filter(case=jane["case"]).values_list("text", flat=True)) == ["(erased)"]
    assert not ReferralConversion.objects.exists()
    # The coupon stays (it may still be redeemed at the till) but names nobody.
    assert Coupon.objects.filter(pk=jane["coupon"].pk).exists()


@pytest.fixture
def crm_webhook(db):
    return WebhookEndpoint.objects.create(
        name="CRM", url="https://crm.example.com/hook", events=["response.created", "case.opened", "coupon.redeemed"]
    )


def test_after_erasure_nothing_in_the_database_holds_the_personal_data(crm_webhook, jane, admin_client):
    # Some of the webhook log was sent, some not; an admin once edited her record.
    WebhookDelivery.objects.filter(event="case.opened").update(status=WebhookDelivery.Status.DELIVERED)
    coupon_redeem(code=jane["coupon"].code)
    page = admin_client.get(f"/admin/surveys/customer/{jane['customer'].pk}/change/")
    edited = {key: values[0] for key, values in form_values(page.content, "customer_form").items() if values}
    edited["name"] = "Jane Roe"
    edited["locale"] = "de"
    assert admin_client.post(f"/admin/surveys/customer/{jane['customer'].pk}/change/", edited).status_code == 302
    assert EMAIL in dump_database()

    customer_erase(customer=jane["customer"])

    dump = dump_database()

    for secret in PERSONAL:
        assert secret not in dump, [r for r in json.loads(dump) if secret in json.dumps(r)]


def test_erasure_keeps_the_address_only_as_a_keyed_hash(jane):
    customer_erase(customer=jane["customer"])

    suppressed = SuppressedAddress.objects.get()
    assert suppressed.address_hash == address_hash(EMAIL)
    assert EMAIL not in suppressed.address_hash and len(suppressed.address_hash) == 64
    assert address_is_suppressed("  Jane.Roe@EXAMPLE.com ")
    assert not address_is_suppressed("someone.else@example.com")


def test_the_nps_history_does_not_change_when_a_customer_is_erased(jane):
    today = timezone.localdate()
    before = selectors_dashboard.headline(start=today, end=today, touchpoint=None)

    customer_erase(customer=jane["customer"])

    after = selectors_dashboard.headline(start=today, end=today, touchpoint=None)
    assert after["counts"].scores == before["counts"].scores
    assert after["nps"] == before["nps"]


def test_an_erased_address_that_comes_back_starts_unsubscribed(jane, touchpoint):
    customer_erase(customer=jane["customer"])

    again = customer_upsert(email="JANE.ROE@example.com", name="Jane")
    outcome = invitation_request(touchpoint=touchpoint, customer=again)

    assert again.pk != jane["customer"].pk
    assert again.unsubscribed_at is not None
    assert outcome.skipped and outcome.skip_reason == "unsubscribed"
    assert SurveySkip.objects.filter(customer=again, reason="unsubscribed").exists()
    assert not Invitation.objects.filter(customer=again).exists()
    assert mail.outbox == []


def test_erasing_twice_changes_nothing_more(jane):
    customer_erase(customer=jane["customer"])
    erased_at = Customer.objects.get(pk=jane["customer"].pk).erased_at

    customer_erase(customer=jane["customer"])

    assert Customer.objects.get(pk=jane["customer"].pk).erased_at == erased_at
    assert SuppressedAddress.objects.count() == 1


def test_erasure_removes_the_person_from_webhook_payloads(jane, touchpoint):
    WebhookEndpoint.objects.create(name="CRM", url="https://crm.example.com/hook", events=["response.created"])
    response_submit(
        invitation=InvitationFactory(customer=jane["customer"], touchpoint=touchpoint), score=8, reason="Quick and friendly"
    )
    WebhookDelivery.objects.update(status=WebhookDelivery.Status.DELIVERED, delivered_at=timezone.now())
    response_submit(
        invitation=InvitationFactory(customer=jane["customer"], touchpoint=touchpoint), score=7, reason="The courier was rude"
    )
    assert WebhookDelivery.objects.count() == 2

    customer_erase(customer=jane["customer"])

    # The pending one is never sent; the log of the delivered one no longer names her.
    assert not WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING).exists()
    for delivery in WebhookDelivery.objects.all():
        text = json.dumps(delivery.payload)
        assert EMAIL not in text and "Jane Roe" not in text and "Quick and friendly" not in text


def test_erasure_removes_the_address_from_recorded_send_errors(jane, touchpoint, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise smtplib.SMTPRecipientsRefused({EMAIL: (550, b"5.1.1 No such user")})

    monkeypatch.setattr("django.core.mail.backends.locmem.EmailBackend.send_messages", refuse)
    invitation = InvitationFactory(customer=jane["customer"], touchpoint=touchpoint, status="pending", sent_at=None)
    send_invitation(invitation.pk)
    invitation.refresh_from_db()
    assert invitation.status == "failed" and EMAIL in invitation.last_error

    customer_erase(customer=jane["customer"])

    invitation.refresh_from_db()
    assert EMAIL not in invitation.last_error


# --- Export --------------------------------------------------------------------------------


def test_the_export_holds_everything_stored_about_the_customer(jane):
    export = customer_export(customer=jane["customer"])

    assert export["customer"]["email"] == EMAIL
    assert (export["customer"]["name"], export["customer"]["external_id"]) == ("Jane Roe", "crm-4711")
    assert len(export["invitations"]) == 3
    assert {"plan": "pro-plan-x"} in [i["properties"] for i in export["invitations"]]
    assert sorted((r["score"], r["reason"]) for r in export["responses"]) == [
        (3, "The courier was rude"),
        (10, "Quick and friendly"),
    ]
    assert [c["code"] for c in export["coupons"]] == [jane["coupon"].code]
    [case] = export["follow_up_cases"]
    assert "refund" in case["notes"][0]["text"]
    assert export["surveys_not_sent"] == [
        {"touchpoint": "delivery", "reason": "cooldown", "at": SurveySkip.objects.get().created_at.isoformat()}
    ]
    assert export["referral_link"]["conversions"] == 1
    json.dumps(export)  # a plain JSON document


# --- Admin actions ------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("boss", "boss@acme.test", "pw-for-tests"))
    return client


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def run_action(client, action: str, customers, **extra):
    return client.post(
        "/admin/surveys/customer/", {"action": action, "_selected_action": [c.pk for c in customers], **extra}
    )


def test_the_export_action_downloads_a_json_file(admin_client, jane):
    response = run_action(admin_client, "export_data", [jane["customer"]])

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"] == f'attachment; filename="customer-{jane["customer"].pk}.json"'
    document = json.loads(response.content)
    assert document["customer"]["email"] == EMAIL
    assert {"invitations", "responses", "coupons", "follow_up_cases", "surveys_not_sent"} <= set(document)
    assert len(document["responses"]) == 2
    assert document["coupons"][0]["code"] == jane["coupon"].code
    assert document["follow_up_cases"][0]["id"] == jane["case"].pk
    assert document["surveys_not_sent"][0]["reason"] == "cooldown"


def test_the_export_action_needs_exactly_one_customer(admin_client, jane):
    other = CustomerFactory()

    response = run_action(admin_client, "export_data", [jane["customer"], other])

    assert response.status_code == 302
    assert not response.has_header("Content-Disposition")
    assert messages_of(response) == ["Choose exactly one customer to export."]


def test_the_export_keeps_non_ascii_text_readable(admin_client, touchpoint):
    customer = CustomerFactory(email="jose@example.com", name="José Ñúñez")

    response = run_action(admin_client, "export_data", [customer])

    assert "José Ñúñez" in response.content.decode("utf-8")


def test_erasure_asks_for_confirmation_first(admin_client, jane):
    other = CustomerFactory(email="other@example.com")

    page = run_action(admin_client, "erase_personal_data", [jane["customer"], other])

    assert page.status_code == 200
    text = page.content.decode()
    assert "Yes, erase" in text and EMAIL in text and "other@example.com" in text
    assert not Customer.objects.filter(erased_at__isnull=False).exists()
    submitted = form_values(page.content)
    assert submitted["action"] == ["erase_personal_data"]
    assert submitted["confirm"] == ["yes"]
    assert sorted(submitted["_selected_action"]) == sorted([str(jane["customer"].pk), str(other.pk)])


def test_confirming_erases_the_selected_customers(admin_client, jane):
    other = CustomerFactory(email="other@example.com")
    bystander = CustomerFactory(email="bystander@example.com")
    page = run_action(admin_client, "erase_personal_data", [jane["customer"], other])

    response = admin_client.post("/admin/surveys/customer/", form_values(page.content))

    assert response.status_code == 302
    assert set(Customer.objects.filter(erased_at__isnull=False).values_list("pk", flat=True)) == {
        jane["customer"].pk,
        other.pk,
    }
    assert Customer.objects.get(pk=bystander.pk).email == "bystander@example.com"
    assert messages_of(response)[0].startswith("Erased 2 customer(s)")
    assert address_is_suppressed(EMAIL) and address_is_suppressed("other@example.com")


def test_the_confirmation_page_can_be_cancelled(admin_client, jane):
    page = run_action(admin_client, "erase_personal_data", [jane["customer"]])

    [cancel] = [a for a in elements(page.content, "a") if "cancel" in a.attrs.get("class", "")]

    assert admin_client.get("/admin/surveys/customer/" + cancel.attrs["href"].lstrip(".")).status_code == 200
    assert Customer.objects.get(pk=jane["customer"].pk).erased_at is None


@pytest.fixture
def staff_client(client, manager):
    client.force_login(manager)
    client.user = manager
    return client


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


def test_staff_without_delete_permission_cannot_erase(staff_client, jane):
    grant(staff_client.user, "view_customer", "change_customer")

    page = run_action(staff_client, "erase_personal_data", [jane["customer"]])
    confirmed = run_action(staff_client, "erase_personal_data", [jane["customer"]], confirm="yes")

    assert "Yes, erase" not in page.content.decode()
    assert confirmed.status_code in (200, 302)
    assert Customer.objects.get(pk=jane["customer"].pk).erased_at is None
    assert not SuppressedAddress.objects.exists()
    changelist = staff_client.get("/admin/surveys/customer/").content.decode()
    assert 'value="erase_personal_data"' not in changelist
    assert 'value="export_data"' in changelist


def test_staff_with_delete_permission_can_erase(staff_client, jane):
    grant(staff_client.user, "view_customer", "delete_customer")

    run_action(staff_client, "erase_personal_data", [jane["customer"]], confirm="yes")

    assert Customer.objects.get(pk=jane["customer"].pk).erased_at is not None


def test_staff_without_view_permission_cannot_export(staff_client, jane):
    response = run_action(staff_client, "export_data", [jane["customer"]])

    assert response.status_code == 403


def test_anonymous_visitors_can_neither_export_nor_erase(client, jane):
    exported = run_action(client, "export_data", [jane["customer"]])
    erased = run_action(client, "erase_personal_data", [jane["customer"]], confirm="yes")

    assert exported.status_code == erased.status_code == 302
    assert "/admin/login/" in exported["Location"]
    assert b"jane" not in exported.content
    assert Customer.objects.get(pk=jane["customer"].pk).erased_at is None


def test_an_erased_customers_export_holds_nothing_personal(admin_client, jane):
    customer_erase(customer=jane["customer"])

    response = run_action(admin_client, "export_data", [jane["customer"]])

    text = response.content.decode()
    for secret in PERSONAL:
        assert secret not in text


def test_a_pending_survey_is_never_sent_after_erasure(jane):
    # A pending invitation left from before erasure is never sent, even once due.
    Invitation.objects.filter(pk=jane["pending"].pk).update(send_after=timezone.now() - timedelta(hours=1))

    customer_erase(customer=jane["customer"])
    invitations_sweep()
    send_invitation(jane["pending"].pk)

    assert mail.outbox == []
