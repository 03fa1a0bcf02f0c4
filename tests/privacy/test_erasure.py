"""Erasure erases (SPEC §8.1): found by identity, nothing left in any table or mail file, never filled again.

Each test replays a defect a privacy review reproduced against a running instance.
"""

import base64
import io
import json
from email import message_from_bytes

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core import mail
from django.core.management import call_command

from surveys.customers.services import CustomerErased, customer_change_email
from surveys.invitations.services import invitations_send_batch
from surveys.models import Customer, FollowUpCase, Invitation, Response, WebhookDelivery, WebhookEndpoint
from surveys.privacy.services import customer_erase
from surveys.responses.services import response_submit

from ..factories import CustomerFactory, InvitationFactory, TouchpointFactory

pytestmark = pytest.mark.django_db

OLD_EMAIL = "jane.gdpr@example.net"
NEW_EMAIL = "jane.q@example.org"
NAME = "Jane Q. Gdprname"
PHONE = "+44 20 7946 0958"
EXTERNAL_ID = "crm-gdpr-306"
REASON = "Call me on +44 20 7946 0958 or write to jane.private@example.com, the parcel was soaked"
PERSONAL = [OLD_EMAIL, NEW_EMAIL, NAME, "Gdprname", PHONE, "7946 0958", EXTERNAL_ID, "jane.private@example.com",
            "parcel was soaked"]


def basic(raw_key: str) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{raw_key}:".encode()).decode()}


def dump_database() -> str:
    out = io.StringIO()
    call_command("dumpdata", stdout=out)
    return out.getvalue()


def left_behind(dump: str) -> dict[str, list]:
    """Each personal value still found in the dump, with the rows holding it."""
    rows = json.loads(dump)
    return {
        value: [row["model"] for row in rows if value.lower() in json.dumps(row, ensure_ascii=False).lower()]
        for value in PERSONAL
        if value.lower() in dump.lower()
    }


@pytest.fixture
def mail_folder(settings, tmp_path):
    """Mail written as .eml files, as in development without EMAIL_HOST."""
    settings.EMAIL_BACKEND = "surveys.mail.files.EmlFileBackend"
    settings.EMAIL_FILE_PATH = tmp_path / "mail"
    return tmp_path / "mail"


@pytest.fixture
def endpoint(db):
    return WebhookEndpoint.objects.create(
        name="CRM", url="https://crm.example.com/hook", events=["response.created", "case.opened", "coupon.redeemed"]
    )


@pytest.fixture
def touchpoint(db):
    return TouchpointFactory(name="Home delivery", slug="delivery", alert_recipients="cx@acme.test",
                             is_api_default=True)


@pytest.fixture
def jane(client, admin_client, api_key, touchpoint, endpoint, mail_folder, django_capture_on_commit_callbacks):
    """Jane as the review met her: through both APIs, an email change, an admin edit, answers, webhooks, mail."""
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(
            "/v1/people.json",
            {"email": OLD_EMAIL, "name": NAME, "phone_number": PHONE, "send": "false"},
            **basic(api_key),
        )
        assert created.status_code == 200, created.content
        person_id = int(created.json()["id"])
        invited = client.post(
            "/api/v1/invitations",
            {"touchpoint": "delivery", "email": OLD_EMAIL, "name": NAME, "external_id": EXTERNAL_ID},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {api_key}",
            HTTP_IDEMPOTENCY_KEY=f"invite-{OLD_EMAIL}",
        )
        assert invited.status_code == 201, invited.content
        invitation = Invitation.objects.get(pk=invited.json()["id"])
        invitations_send_batch(invitation_ids=[invitation.pk])
        detractor = response_submit(invitation=invitation, score=2, reason=REASON)
        # A webhook delivered under the old address, before she changed it.
        WebhookDelivery.objects.filter(customer_id=person_id).update(status=WebhookDelivery.Status.DELIVERED)
        changed = client.post("/v1/people.json", {"email": OLD_EMAIL, "email_update": NEW_EMAIL, "send": "false"},
                              **basic(api_key))
        assert changed.status_code == 200, changed.content
        promoter = response_submit(
            invitation=InvitationFactory(customer_id=person_id, touchpoint=touchpoint), score=10, reason=REASON
        )
    customer = Customer.objects.get(pk=person_id)
    page = admin_client.post(
        f"/admin/surveys/customer/{person_id}/change/",
        {"email": NEW_EMAIL, "name": NAME, "phone": PHONE, "external_id": EXTERNAL_ID, "locale": "en",
         "invitations-TOTAL_FORMS": "0", "invitations-INITIAL_FORMS": "0",
         "skips-TOTAL_FORMS": "0", "skips-INITIAL_FORMS": "0"},
    )
    assert page.status_code == 302, page.content.decode()[:3000]
    return {"customer": customer, "detractor": detractor, "promoter": promoter, "invitation": invitation}


def test_after_erasure_no_row_and_no_mail_file_holds_anything_of_the_person(client, api_key, jane, mail_folder):
    before = dump_database()
    assert set(left_behind(before)) >= {OLD_EMAIL, NEW_EMAIL, NAME, PHONE, EXTERNAL_ID}
    assert LogEntry.objects.filter(object_repr__contains=NAME).exists()
    assert WebhookDelivery.objects.filter(payload__data__customer__email=OLD_EMAIL).exists()
    assert any(mail_folder.glob("*.eml"))

    erased = client.delete(f"/v1/people/{jane['customer'].pk}.json", **basic(api_key))

    assert erased.status_code == 202
    assert left_behind(dump_database()) == {}
    remaining = [path.read_text(errors="replace") for path in mail_folder.glob("*.eml")]
    assert not [text for text in remaining if any(value in text for value in PERSONAL)]
    # The scores stay, anonymised: NPS history does not change.
    assert sorted(Response.objects.values_list("score", "reason")) == [(2, ""), (10, "")]


def test_the_admin_history_of_another_customer_whose_address_contains_the_erased_one_stays(admin_user):
    bo = CustomerFactory(email="bo@example.org", name="Bo")
    jimbo = CustomerFactory(email="jimbo@example.org", name="Jimbo")
    content_type = ContentType.objects.get_for_model(Customer)
    for customer in (bo, jimbo):
        LogEntry.objects.log_actions(user_id=admin_user.pk, queryset=[customer], action_flag=CHANGE,
                                     change_message="Changed name.", single_object=True)

    customer_erase(customer=bo)

    entries = dict(LogEntry.objects.filter(content_type=content_type).values_list("object_id", "object_repr"))
    assert entries == {str(bo.pk): "(erased)", str(jimbo.pk): "Jimbo <jimbo@example.org>"}


def test_the_idempotency_record_of_a_request_about_the_person_goes(client, api_key, jane):
    from surveys.models import IdempotencyRecord

    assert IdempotencyRecord.objects.filter(key=f"invite-{OLD_EMAIL}").exists()

    customer_erase(customer=jane["customer"])

    assert not IdempotencyRecord.objects.exists()


def test_an_erased_record_cannot_be_filled_again(client, api_key, jane):
    person_id = jane["customer"].pk
    client.delete(f"/v1/people/{person_id}.json", **basic(api_key))
    placeholder = f"erased-{person_id}@erased.invalid"

    refilled = client.post("/v1/people.json", {"email": placeholder, "name": "Jane Restored", "send": "false"},
                           **basic(api_key))
    by_api = client.post("/api/v1/invitations", {"touchpoint": "delivery", "email": placeholder, "name": "Jane R."},
                         content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api_key}")

    assert refilled.status_code == 422
    assert "erased" in refilled.json()["message"]
    assert by_api.status_code == 400
    customer = Customer.objects.get(pk=person_id)
    assert (customer.email, customer.name, customer.erased_at is not None) == (placeholder, "", True)
    with pytest.raises(CustomerErased):
        customer_change_email(customer=customer, email="jane.again@example.org")


def test_erasing_again_scrubs_whatever_arrived_since(client, api_key, jane):
    person_id = jane["customer"].pk
    assert client.delete(f"/v1/people/{person_id}.json", **basic(api_key)).status_code == 202
    # Something wrote to her rows after the erasure (a late import, a direct database edit).
    Response.objects.filter(customer_id=person_id).update(reason="Late text about jane.private@example.com")

    again = client.delete(f"/v1/people/{person_id}.json", **basic(api_key))

    assert again.status_code == 202
    assert set(Response.objects.filter(customer_id=person_id).values_list("reason", flat=True)) == {""}
    assert left_behind(dump_database()) == {}


def test_the_open_links_of_an_erased_person_close(client, jane, touchpoint, django_capture_on_commit_callbacks):
    waiting = InvitationFactory(customer=jane["customer"], touchpoint=touchpoint)
    url = f"/s/{waiting.token}/"
    assert client.get(url).status_code == 200
    customer_erase(customer=jane["customer"])
    mail.outbox.clear()
    deliveries = WebhookDelivery.objects.count()

    with django_capture_on_commit_callbacks(execute=True):
        shown = client.get(url)
        posted = client.post(url, {"score": "1", "reason": "Reach me at jane.private@example.com or 020 7946 0958"})

    assert (shown.status_code, posted.status_code) == (410, 410)
    assert "closed" in shown.content.decode()
    waiting.refresh_from_db()
    assert waiting.status == Invitation.Status.CANCELLED
    assert not Response.objects.filter(invitation=waiting).exists()
    assert not FollowUpCase.objects.filter(response__invitation=waiting).exists()
    assert mail.outbox == []
    assert WebhookDelivery.objects.count() == deliveries


def test_mail_files_of_other_people_stay(mail_folder, touchpoint):
    jane = CustomerFactory(email="jane@example.com")
    john = CustomerFactory(email="john@example.com")
    invitations = [InvitationFactory(customer=c, touchpoint=touchpoint, status="pending", sent_at=None)
                   for c in (jane, john)]
    invitations_send_batch(invitation_ids=[i.pk for i in invitations])
    assert len(list(mail_folder.glob("*.eml"))) == 2

    from surveys.mail import files as mail_backends

    assert mail_backends.eml_files_erase(customer_id=jane.pk) == 1

    [left] = mail_folder.glob("*.eml")
    assert message_from_bytes(left.read_bytes())["To"] == "john@example.com"
