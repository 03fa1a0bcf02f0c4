"""The Django admin: pages open, touchpoint defaults, skips on the customer page, actions, permissions."""

import hashlib
import re

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.core import mail

from surveys.access.services import api_key_create
from surveys.customers.services import customer_unsubscribe
from surveys.invitations.services import invitation_request
from surveys.models import ApiKey, FollowUpCase, Invitation, SurveySkip, Touchpoint
from surveys.promoters.services import coupon_issue, referral_link_ensure
from surveys.responses.services import response_submit

from ..factories import CustomerFactory, InvitationFactory, ResponseFactory, TouchpointFactory
from ..page_parsing import elements, form_values

pytestmark = pytest.mark.django_db

MODELS = [
    "touchpoint",
    "customer",
    "invitation",
    "response",
    "surveyskip",
    "apikey",
    "coupon",
    "followupcase",
    "referrallink",
]


@pytest.fixture
def admin_user(db):
    return User.objects.create_superuser("boss", "boss@example.com", "pw-for-tests")


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def examples(invitation):
    """One row of every model, so change pages have something to show."""
    response = ResponseFactory(invitation=invitation, score=10, reason="Great")
    skip = SurveySkip.objects.create(customer=invitation.customer, touchpoint=invitation.touchpoint, reason="cooldown")
    api_key, _ = api_key_create(name="CRM")
    detractor = response_submit(
        invitation=InvitationFactory(touchpoint=invitation.touchpoint), score=3, reason="Slow"
    )
    return {
        "touchpoint": invitation.touchpoint,
        "customer": invitation.customer,
        "invitation": invitation,
        "response": response,
        "surveyskip": skip,
        "apikey": api_key,
        "coupon": coupon_issue(response=response),
        "followupcase": FollowUpCase.objects.get(response=detractor),
        "referrallink": referral_link_ensure(
            customer_id=response.customer_id, touchpoint=response.touchpoint, response=response
        ),
    }


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


# --- Pages open ---------------------------------------------------------------------


def test_the_admin_index_lists_every_model(admin_client):
    response = admin_client.get("/admin/")

    assert response.status_code == 200
    for model in MODELS:
        assert f"/admin/surveys/{model}/" in response.content.decode()


@pytest.mark.parametrize("model", MODELS)
def test_an_admin_can_open_the_changelist(admin_client, examples, model):
    response = admin_client.get(f"/admin/surveys/{model}/")

    assert response.status_code == 200
    assert f"/admin/surveys/{model}/{examples[model].pk}/change/" in response.content.decode()


@pytest.mark.parametrize("model", MODELS)
def test_an_admin_can_open_the_change_page(admin_client, examples, model):
    response = admin_client.get(f"/admin/surveys/{model}/{examples[model].pk}/change/")

    assert response.status_code == 200


@pytest.mark.parametrize("model", ["touchpoint", "customer", "apikey"])
def test_an_admin_can_open_the_add_page(admin_client, model):
    response = admin_client.get(f"/admin/surveys/{model}/add/")

    assert response.status_code == 200


@pytest.mark.parametrize("model", ["invitation", "response", "surveyskip", "coupon", "followupcase", "referrallink"])
def test_records_of_what_happened_cannot_be_added_by_hand(admin_client, model):
    # Invitations go through the "Send survey" action; the rest are only ever recorded by the survey loop.
    assert admin_client.get(f"/admin/surveys/{model}/add/").status_code == 403


def test_the_changelist_search_works(admin_client, examples):
    for model, query in [("customer", "jane"), ("invitation", "jane"), ("response", "Great"), ("touchpoint", "deliv")]:
        response = admin_client.get(f"/admin/surveys/{model}/", {"q": query})
        assert response.status_code == 200
        assert f"/admin/surveys/{model}/{examples[model].pk}/change/" in response.content.decode(), model


def test_the_invitation_page_shows_the_survey_link(admin_client, invitation):
    response = admin_client.get(f"/admin/surveys/invitation/{invitation.pk}/change/")

    assert f"https://surveys.example.com/s/{invitation.token}/" in response.content.decode()


# --- Touchpoints ---------------------------------------------------------------------


def test_a_touchpoint_added_with_only_a_name_and_slug_gets_the_spec_defaults(admin_client):
    # A browser submits the add form as the admin left it: name and slug typed, the rest pre-filled.
    form = form_values(admin_client.get("/admin/surveys/touchpoint/add/").content, "touchpoint_form")
    form["name"], form["slug"] = ["Store visit"], ["store-visit"]

    response = admin_client.post("/admin/surveys/touchpoint/add/", form)

    assert response.status_code == 302, response.content.decode()
    touchpoint = Touchpoint.objects.get(slug="store-visit")
    assert touchpoint.name == "Store visit"
    assert touchpoint.is_active
    assert touchpoint.cooldown_days == 90
    assert touchpoint.expiry_days == 30
    assert touchpoint.reminder_delay_days == 0
    assert touchpoint.coupon_validity_days == 30
    assert touchpoint.question == "How likely are you to recommend {company} to a friend or colleague?"
    assert touchpoint.reason_prompt == "Thank you! Can you tell us the reason for your score?"


def test_a_touchpoint_slug_must_be_unique(admin_client, touchpoint):
    form = form_values(admin_client.get("/admin/surveys/touchpoint/add/").content, "touchpoint_form")
    form["name"], form["slug"] = ["Another delivery"], [touchpoint.slug]

    response = admin_client.post("/admin/surveys/touchpoint/add/", form)

    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert Touchpoint.objects.count() == 1


# --- Customers ------------------------------------------------------------------------


def test_the_customer_page_says_why_no_survey_was_sent(admin_client, customer, touchpoint):
    customer_unsubscribe(customer=customer)
    invitation_request(touchpoint=touchpoint, customer=customer)

    response = admin_client.get(f"/admin/surveys/customer/{customer.pk}/change/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "surveys not sent (and why)" in page.lower()
    assert "Customer unsubscribed" in page
    assert "Home delivery" in page


def test_the_customer_page_lists_each_kind_of_skip(admin_client, customer, touchpoint):
    closed = TouchpointFactory(name="Closed shop", is_active=False)
    invitation_request(touchpoint=touchpoint, customer=customer)
    invitation_request(touchpoint=touchpoint, customer=customer)
    invitation_request(touchpoint=closed, customer=customer)

    page = admin_client.get(f"/admin/surveys/customer/{customer.pk}/change/").content.decode()

    assert "Surveyed recently (cooldown)" in page
    assert "Touchpoint inactive" in page
    assert "Closed shop" in page


def test_the_customer_page_lists_the_customers_invitations(admin_client, invitation):
    page = admin_client.get(f"/admin/surveys/customer/{invitation.customer.pk}/change/").content.decode()

    assert f"/admin/surveys/invitation/{invitation.pk}/change/" in page


def test_customer_text_is_escaped_in_the_admin(admin_client, touchpoint):
    customer = CustomerFactory(name="<script>alert(1)</script>", email="evil@example.com")
    InvitationFactory(customer=customer, touchpoint=touchpoint)
    ResponseFactory(
        invitation=InvitationFactory(customer=customer, touchpoint=touchpoint),
        score=1,
        reason="<img src=x onerror=alert(2)>",
    )

    for page_url in [
        "/admin/surveys/customer/",
        f"/admin/surveys/customer/{customer.pk}/change/",
        "/admin/surveys/invitation/",
        "/admin/surveys/response/",
    ]:
        page = admin_client.get(page_url).content.decode()
        assert "<script>alert(1)</script>" not in page, page_url
        assert "<img src=x" not in page, page_url
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in admin_client.get("/admin/surveys/customer/").content.decode()


# --- "Send survey" action ----------------------------------------------------------------


def test_send_survey_first_asks_for_the_touchpoint(admin_client, customer, touchpoint):
    TouchpointFactory(name="Closed shop", is_active=False)

    response = admin_client.post(
        "/admin/surveys/customer/", {"action": "send_survey", "_selected_action": [customer.pk]}
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert "Send a survey to 1 customer" in page
    assert "jane@example.com" in page
    choices = [option.text.strip() for option in elements(response.content, "option") if option.attrs.get("value")]
    assert choices == ["Home delivery"]
    assert not Invitation.objects.exists()
    assert mail.outbox == []


def test_send_survey_emails_each_customer_and_reports_the_skipped_ones(
    admin_client, customer, touchpoint, django_capture_on_commit_callbacks
):
    second = CustomerFactory(email="sam@example.com", name="Sam")
    gone = CustomerFactory(email="gone@example.com", name="Gone")
    customer_unsubscribe(customer=gone)
    selected = [customer.pk, second.pk, gone.pk]

    chooser = admin_client.post("/admin/surveys/customer/", {"action": "send_survey", "_selected_action": selected})
    form = form_values(chooser.content)
    assert sorted(int(pk) for pk in form["_selected_action"]) == sorted(selected)
    form["touchpoint"] = [str(touchpoint.pk)]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/surveys/customer/", form)

    assert response.status_code == 302
    assert sorted(message.to[0] for message in mail.outbox) == ["jane@example.com", "sam@example.com"]
    assert Invitation.objects.filter(status=Invitation.Status.SENT, source=Invitation.Source.ADMIN).count() == 2
    assert not Invitation.objects.filter(customer=gone).exists()
    notes = messages_of(response)
    assert any("2 survey(s)" in note and "Home delivery" in note for note in notes), notes
    assert any("Customer unsubscribed" in note and "gone@example.com" in note for note in notes), notes
    assert SurveySkip.objects.get().customer == gone
    shown = admin_client.get(response["Location"]).content.decode()
    assert "gone@example.com" in shown


def test_send_survey_refuses_an_unknown_touchpoint(admin_client, customer, touchpoint):
    response = admin_client.post(
        "/admin/surveys/customer/",
        {"action": "send_survey", "_selected_action": [customer.pk], "touchpoint": "999999"},
    )

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Invitation.objects.exists()


# --- API keys --------------------------------------------------------------------------


def test_adding_an_api_key_shows_the_key_once_and_stores_only_its_hash(admin_client, client, touchpoint):
    response = admin_client.post(
        "/admin/surveys/apikey/add/", {"name": "Helpdesk", "scopes": ["invitations", "coupons"]}, follow=True
    )

    assert response.status_code == 200
    shown = re.findall(r"<code>(lp_[A-Za-z0-9_-]+)</code>", response.content.decode())
    assert len(shown) == 1
    raw_key = shown[0]
    api_key = ApiKey.objects.get()
    assert (api_key.name, api_key.scopes) == ("Helpdesk", ["invitations", "coupons"])
    assert api_key.key_hash == hashlib.sha256(raw_key.encode()).hexdigest()
    stored = [str(value) for value in ApiKey.objects.values().get().values()]
    assert not any(raw_key in value for value in stored)
    again = admin_client.get(f"/admin/surveys/apikey/{api_key.pk}/change/").content.decode()
    assert raw_key not in again
    assert raw_key not in admin_client.get("/admin/surveys/apikey/").content.decode()

    works = client.post(
        "/api/v1/invitations",
        {"touchpoint": touchpoint.slug, "email": "new@example.com"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw_key}",
    )
    assert works.status_code == 201


def test_renaming_an_api_key_keeps_it_working(admin_client, client, touchpoint):
    api_key, raw_key = api_key_create(name="Old name")

    response = admin_client.post(
        f"/admin/surveys/apikey/{api_key.pk}/change/", {"name": "New name", "scopes": ["invitations", "read"]}
    )

    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.name == "New name"
    works = client.post(
        "/api/v1/invitations",
        {"touchpoint": touchpoint.slug, "email": "new@example.com"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw_key}",
    )
    assert works.status_code == 201


def test_a_revoked_api_key_stops_working(admin_client, client, touchpoint):
    api_key, raw_key = api_key_create(name="CRM")

    admin_client.post("/admin/surveys/apikey/", {"action": "revoke", "_selected_action": [api_key.pk]})

    refused = client.post(
        "/api/v1/invitations",
        {"touchpoint": touchpoint.slug, "email": "new@example.com"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw_key}",
    )
    assert refused.status_code == 401


# --- Invitations -------------------------------------------------------------------------


def test_retry_requeues_a_failed_invitation_and_emails_it(admin_client, invitation, django_capture_on_commit_callbacks):
    Invitation.objects.filter(pk=invitation.pk).update(
        status=Invitation.Status.FAILED, sent_at=None, send_attempts=6, last_error="SMTPServerDisconnected"
    )

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/surveys/invitation/", {"action": "retry_sending", "_selected_action": [invitation.pk]}
        )

    assert response.status_code == 302
    assert "1 failed invitation(s) queued again." in messages_of(response)
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.SENT
    assert invitation.last_error == ""
    assert [message.to for message in mail.outbox] == [["jane@example.com"]]


def test_retry_leaves_an_invitation_that_did_not_fail_alone(
    admin_client, invitation, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/surveys/invitation/", {"action": "retry_sending", "_selected_action": [invitation.pk]}
        )

    assert "0 failed invitation(s) queued again." in messages_of(response)
    assert mail.outbox == []
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.SENT


def test_responses_cannot_be_edited_in_the_admin(admin_client, examples):
    answer = examples["response"]

    admin_client.post(f"/admin/surveys/response/{answer.pk}/change/", {"score": "0", "reason": "forged"})

    answer.refresh_from_db()
    assert (answer.score, answer.reason) == (10, "Great")


# --- Permissions ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/", *[f"/admin/surveys/{model}/" for model in MODELS]])
def test_anonymous_visitors_are_sent_to_the_admin_login(client, db, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith(f"/admin/login/?next={path}")


@pytest.mark.parametrize("path", ["/admin/", "/admin/surveys/customer/", "/admin/surveys/apikey/add/"])
def test_a_logged_in_user_who_is_not_staff_gets_the_login_page(client, path):
    user = User.objects.create_user("customer-user", "cu@example.com", "pw-for-tests")
    client.force_login(user)

    response = client.get(path, follow=True)

    assert response.redirect_chain[0][0].startswith("/admin/login/")
    assert response.status_code == 200
    assert "You are authenticated as customer-user" in response.content.decode()


def test_a_user_who_is_not_staff_cannot_run_actions(client, customer, touchpoint):
    user = User.objects.create_user("customer-user", "cu@example.com", "pw-for-tests")
    client.force_login(user)

    response = client.post(
        "/admin/surveys/customer/",
        {"action": "send_survey", "_selected_action": [customer.pk], "touchpoint": touchpoint.pk},
    )

    assert response.status_code == 302
    assert not Invitation.objects.exists()


@pytest.fixture
def staff_client(client):
    user = User.objects.create_user("clerk", "clerk@example.com", "pw-for-tests", is_staff=True)
    client.force_login(user)
    client.user = user
    return client


@pytest.mark.parametrize("model", MODELS)
def test_staff_without_permissions_cannot_open_changelists(staff_client, examples, model):
    assert staff_client.get(f"/admin/surveys/{model}/").status_code == 403
    assert staff_client.get(f"/admin/surveys/{model}/{examples[model].pk}/change/").status_code == 403


def test_staff_without_permissions_see_no_models(staff_client):
    page = staff_client.get("/admin/").content.decode()

    for model in MODELS:
        assert f"/admin/surveys/{model}/" not in page


def test_staff_with_view_permission_cannot_send_surveys(staff_client, customer, touchpoint):
    staff_client.user.user_permissions.add(Permission.objects.get(codename="view_customer"))

    assert staff_client.get("/admin/surveys/customer/").status_code == 200
    response = staff_client.post(
        "/admin/surveys/customer/",
        {"action": "send_survey", "_selected_action": [customer.pk], "touchpoint": touchpoint.pk},
    )

    assert not Invitation.objects.exists()
    assert response.status_code in (200, 302)


def test_staff_without_permissions_cannot_add_api_keys(staff_client):
    response = staff_client.post("/admin/surveys/apikey/add/", {"name": "Sneaky"})

    assert response.status_code == 403
    assert not ApiKey.objects.exists()
