"""The customer's survey page /s/<token>/: question, answer, thank-you, closed and error pages."""

from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone
from whitenoise.middleware import WhiteNoiseFileResponse

from surveys.models import Invitation, Response
from surveys.responses.services import invitation_open

from ..factories import InvitationFactory, ResponseFactory
from ..page_parsing import elements

pytestmark = pytest.mark.django_db


def url(invitation: Invitation) -> str:
    return f"/s/{invitation.token}/"


def score_radios(html: bytes) -> list:
    return [e for e in elements(html, "input") if e.attrs.get("type") == "radio" and e.attrs.get("name") == "score"]


def checked_scores(html: bytes) -> list[str]:
    return [radio.attrs["value"] for radio in score_radios(html) if "checked" in radio.attrs]


# --- Showing the survey ------------------------------------------------------------


def test_it_shows_the_question_with_the_company_name(client, invitation):
    response = client.get(url(invitation))

    assert response.status_code == 200
    page = response.content.decode()
    assert "How likely are you to recommend Acme to a friend or colleague?" in page
    assert "{company}" not in page


def test_it_shows_the_scale_as_a_fieldset_with_a_legend(client, invitation):
    html = client.get(url(invitation)).content

    fieldsets = elements(html, "fieldset")
    legends = elements(html, "legend")
    assert len(fieldsets) == 1
    assert len(legends) == 1
    assert "recommend Acme" in legends[0].text
    assert all(radio.attrs.get("value") for radio in score_radios(html))


def test_it_shows_eleven_labelled_score_radios(client, invitation):
    html = client.get(url(invitation)).content

    radios = score_radios(html)
    assert [radio.attrs["value"] for radio in radios] == [str(score) for score in range(11)]
    labels = {label.attrs.get("for"): label.text.strip() for label in elements(html, "label")}
    for radio in radios:
        assert radio.attrs.get("id"), radio
        assert labels.get(radio.attrs["id"]) == radio.attrs["value"]


def test_it_labels_both_ends_of_the_scale(client, invitation):
    page = client.get(url(invitation)).content.decode()

    assert "Not at all likely" in page
    assert "Extremely likely" in page


def test_it_shows_the_reason_box(client, invitation):
    html = client.get(url(invitation)).content

    textareas = [e for e in elements(html, "textarea") if e.attrs.get("name") == "reason"]
    assert len(textareas) == 1
    labels = {label.attrs.get("for"): label.text for label in elements(html, "label")}
    assert "reason for your score" in labels[textareas[0].attrs["id"]]


def test_a_get_records_no_response_but_marks_the_invitation_opened(client, invitation):
    assert invitation.opened_at is None

    response = client.get(url(invitation))

    assert response.status_code == 200
    assert Response.objects.count() == 0
    invitation.refresh_from_db()
    assert invitation.opened_at is not None
    assert invitation.answered_at is None


def test_a_second_visit_keeps_the_first_opened_time(client, invitation):
    client.get(url(invitation))
    invitation.refresh_from_db()
    first_opened = invitation.opened_at

    client.get(url(invitation))

    invitation.refresh_from_db()
    assert invitation.opened_at == first_opened


def test_opening_returns_the_invitation_with_the_opened_time_the_database_keeps(invitation):


    first = invitation_open(token=invitation.token)
    again = invitation_open(token=invitation.token)

    invitation.refresh_from_db()
    assert invitation.opened_at is not None
    assert first.opened_at == again.opened_at == invitation.opened_at


def test_opening_an_answered_survey_returns_it_unopened(client, invitation):


    client.post(url(invitation), {"score": "4"})

    assert invitation_open(token=invitation.token).opened_at is None


def test_an_answer_posted_without_opening_the_page_leaves_it_unopened(client, invitation):
    # The one-click score links in the email open the page first; a bare POST (an API-like client) does not.
    client.post(url(invitation), {"score": "8"})

    invitation.refresh_from_db()
    assert invitation.answered_at is not None
    assert invitation.opened_at is None


def test_visiting_an_answered_or_expired_survey_does_not_mark_it_opened(client):
    answered = InvitationFactory()
    client.post(url(answered), {"score": "9"})
    expired = InvitationFactory(expires_at=timezone.now() - timedelta(minutes=1))

    assert "Thank you" in client.get(url(answered)).content.decode()
    assert client.get(url(expired)).status_code == 410

    answered.refresh_from_db()
    expired.refresh_from_db()
    assert (answered.opened_at, expired.opened_at) == (None, None)


def test_the_page_opened_and_the_answer_give_the_opened_and_answered_times_in_order(client, invitation):
    client.get(url(invitation), {"score": "10"})
    client.post(url(invitation), {"score": "10"})

    invitation.refresh_from_db()
    assert invitation.sent_at is None or invitation.sent_at <= invitation.opened_at
    assert invitation.opened_at <= invitation.answered_at


@pytest.mark.parametrize("score", ["0", "7", "10"])
def test_a_get_with_a_score_link_records_nothing(client, invitation, score):
    # Mail scanners follow every one-click score link in the email.
    response = client.get(url(invitation), {"score": score})

    assert response.status_code == 200
    assert Response.objects.count() == 0
    invitation.refresh_from_db()
    assert invitation.answered_at is None


def test_a_head_request_records_nothing(client, invitation):
    response = client.head(url(invitation), {"score": "10"})

    assert response.status_code == 200
    assert Response.objects.count() == 0


def test_it_preselects_the_score_from_the_link(client, invitation):
    html = client.get(url(invitation), {"score": "7"}).content

    assert checked_scores(html) == ["7"]


def test_it_preselects_zero(client, invitation):
    html = client.get(url(invitation), {"score": "0"}).content

    assert checked_scores(html) == ["0"]


@pytest.mark.parametrize("score", ["abc", "11", "-1", "", "7.5", "²", "1e1", " 7", "+7", "007x"])
def test_it_ignores_a_bad_score_in_the_link(client, invitation, score):
    response = client.get(url(invitation), {"score": score})

    assert response.status_code == 200
    assert checked_scores(response.content) == []
    assert len(score_radios(response.content)) == 11
    assert Response.objects.count() == 0


def test_a_preselected_promoter_score_shows_the_promoter_prompt(client, customer):
    invitation = InvitationFactory(customer=customer, touchpoint__reason_prompt_promoter="What did you love most?")

    page = client.get(url(invitation), {"score": "10"}).content.decode()

    assert "What did you love most?" in page


# --- Answering -----------------------------------------------------------------------


def test_it_records_a_valid_answer_and_shows_the_thank_you_page(client, invitation):
    response = client.post(url(invitation), {"score": "8", "reason": "Quick delivery."})

    assert response.status_code == 302
    assert response["Location"] == url(invitation)
    answer = Response.objects.get()
    assert answer.invitation == invitation
    assert answer.score == 8
    assert answer.category == "passive"
    assert answer.reason == "Quick delivery."
    invitation.refresh_from_db()
    assert invitation.answered_at is not None

    thanks = client.get(response["Location"])
    assert thanks.status_code == 200
    page = thanks.content.decode()
    assert "Thank you for your answer!" in page
    assert "You gave us <strong>8</strong> out of 10." in page
    assert "Quick delivery." in page
    assert not score_radios(thanks.content)


def test_it_records_an_answer_without_a_reason(client, invitation):
    response = client.post(url(invitation), {"score": "0"})

    assert response.status_code == 302
    answer = Response.objects.get()
    assert (answer.score, answer.category, answer.reason) == (0, "detractor", "")


def test_it_records_a_reason_of_exactly_2000_characters(client, invitation):
    reason = "x" * 2000

    response = client.post(url(invitation), {"score": "10", "reason": reason})

    assert response.status_code == 302
    assert Response.objects.get().reason == reason


def test_a_promoter_is_told_the_coupon_is_coming_and_gets_a_share_link(client, invitation):
    response = client.post(url(invitation), {"score": "10"}, follow=True)

    page = response.content.decode()
    assert "You gave us <strong>10</strong> out of 10." in page
    assert "your coupon is on its way" in page
    share = next(e for e in elements(response.content, "input") if e.attrs.get("id") == "referral-link")
    assert share.attrs["value"].startswith("https://surveys.example.com/r/")
    assert client.get(share.attrs["value"].removeprefix("https://surveys.example.com")).status_code == 302


def test_a_promoters_answer_sends_the_coupon_email(client, invitation, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url(invitation), {"score": "9", "reason": "Fast."})

    assert [message.to for message in mail.outbox] == [["jane@example.com"]]
    assert "your coupon" in mail.outbox[0].subject


def test_a_detractors_answer_alerts_the_touchpoint_team(client, customer, django_capture_on_commit_callbacks):
    invitation = InvitationFactory(customer=customer, touchpoint__alert_recipients="lead@example.com, ops@example.com")

    with django_capture_on_commit_callbacks(execute=True):
        client.post(url(invitation), {"score": "1", "reason": "Never arrived."})

    assert [message.to for message in mail.outbox] == [["lead@example.com", "ops@example.com"]]
    assert "1/10" in mail.outbox[0].subject
    assert "Never arrived." in mail.outbox[0].body


def test_a_get_with_a_score_link_sends_no_email(client, invitation, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client.get(url(invitation), {"score": "10"})

    assert mail.outbox == []


def test_a_detractor_is_told_someone_will_look_into_it(client, invitation):
    page = client.post(url(invitation), {"score": "2"}, follow=True).content.decode()

    assert "Someone from our team will look into it." in page
    assert "coupon" not in page
    assert "/r/" not in page


def test_an_unsubscribed_promoter_is_not_promised_a_coupon(client, invitation):
    client.post(f"/u/{invitation.customer.unsubscribe_token}/")

    page = client.post(url(invitation), {"score": "9"}, follow=True).content.decode()

    assert "You gave us <strong>9</strong> out of 10." in page
    assert "coupon is on its way" not in page


@pytest.mark.parametrize(
    "data, error",
    [
        ({"score": "11"}, "Please choose a score from 0 to 10."),
        ({"score": "-1"}, "Please choose a score from 0 to 10."),
        ({"score": "abc"}, "Please choose a score from 0 to 10."),
        ({"score": "7.0"}, "Please choose a score from 0 to 10."),
        ({"score": ""}, "Please choose a score from 0 to 10."),
        ({}, "Please choose a score from 0 to 10."),
        ({"reason": "Great!"}, "Please choose a score from 0 to 10."),
        ({"score": "9", "reason": "x" * 2001}, "at most 2000 characters"),
        ({"score": "9", "reason": "Fine\x00then"}, "Null characters are not allowed."),
    ],
    ids=["eleven", "minus-one", "letters", "decimal", "empty", "missing", "missing-with-reason", "reason-2001", "nul"],
)
def test_it_rejects_a_bad_answer_and_shows_the_form_again(client, invitation, data, error):
    response = client.post(url(invitation), data)

    assert response.status_code == 200
    page = response.content.decode()
    assert error in page
    assert len(score_radios(response.content)) == 11
    assert Response.objects.count() == 0
    invitation.refresh_from_db()
    assert invitation.answered_at is None


def test_a_rejected_answer_keeps_what_the_customer_typed(client, invitation):
    response = client.post(url(invitation), {"score": "9", "reason": "Friendly driver " + "x" * 2001})

    assert checked_scores(response.content) == ["9"]
    textarea = next(e for e in elements(response.content, "textarea") if e.attrs.get("name") == "reason")
    assert "Friendly driver" in textarea.text


def test_a_rejected_answer_can_be_corrected(client, invitation):
    client.post(url(invitation), {"score": "11"})

    response = client.post(url(invitation), {"score": "6", "reason": "Late."})

    assert response.status_code == 302
    assert Response.objects.get().score == 6


def test_a_double_submit_keeps_the_first_answer(client, invitation):
    first = client.post(url(invitation), {"score": "3", "reason": "Broken box."})
    second = client.post(url(invitation), {"score": "10", "reason": "Changed my mind."}, follow=True)

    assert first.status_code == 302
    answer = Response.objects.get()
    assert (answer.score, answer.reason) == (3, "Broken box.")
    # The second click lands on the thank-you page for the first answer.
    page = second.content.decode()
    assert second.status_code == 200
    assert "You gave us <strong>3</strong> out of 10." in page
    assert "Changed my mind." not in page


def test_an_answered_invitation_shows_the_thank_you_page(client, invitation):
    ResponseFactory(invitation=invitation, score=9, reason="Lovely.")

    response = client.get(url(invitation), {"score": "2"})

    assert response.status_code == 200
    page = response.content.decode()
    assert "Thank you for your answer!" in page
    assert "You gave us <strong>9</strong> out of 10." in page
    assert not score_radios(response.content)
    assert Response.objects.get().score == 9


def test_an_answered_invitation_still_thanks_after_it_expires(client, customer, touchpoint):
    invitation = InvitationFactory(customer=customer, touchpoint=touchpoint)
    ResponseFactory(invitation=invitation, score=5)
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(days=1))

    response = client.get(url(invitation))

    assert response.status_code == 200
    assert "You gave us <strong>5</strong> out of 10." in response.content.decode()


def test_it_escapes_the_customers_reason_on_the_thank_you_page(client, invitation):
    client.post(url(invitation), {"score": "4", "reason": "<script>alert(1)</script> & <b>bold</b>"})

    page = client.get(url(invitation)).content.decode()

    assert "<script>alert(1)</script>" not in page
    assert "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert Response.objects.get().reason == "<script>alert(1)</script> & <b>bold</b>"


def test_it_escapes_what_the_customer_typed_when_the_form_comes_back(client, invitation):
    response = client.post(url(invitation), {"score": "12", "reason": "</textarea><script>alert(1)</script>"})

    page = response.content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;/textarea&gt;&lt;script&gt;" in page


# --- Unknown, closed ---------------------------------------------------------------


@pytest.mark.parametrize("token", ["no-such-token", "x" * 65, "%00"])
def test_an_unknown_token_shows_a_friendly_404_page(client, db, token):
    response = client.get(f"/s/{token}/")

    assert response.status_code == 404
    page = response.content.decode()
    assert "This survey link is not valid" in page
    assert "Traceback" not in page


def test_a_post_to_an_unknown_token_records_nothing(client, invitation):
    response = client.post("/s/no-such-token/", {"score": "10"})

    assert response.status_code == 404
    assert Response.objects.count() == 0


def test_an_expired_survey_shows_the_closed_page(client, customer, touchpoint):
    invitation = InvitationFactory(
        customer=customer, touchpoint=touchpoint, expires_at=timezone.now() - timedelta(minutes=1)
    )

    response = client.get(url(invitation), {"score": "10"})

    assert response.status_code == 410
    assert "This survey has closed" in response.content.decode()
    assert not score_radios(response.content)
    assert Response.objects.count() == 0


def test_an_answer_to_an_expired_survey_is_not_recorded(client, customer, touchpoint):
    invitation = InvitationFactory(
        customer=customer, touchpoint=touchpoint, expires_at=timezone.now() - timedelta(minutes=1)
    )

    response = client.post(url(invitation), {"score": "10", "reason": "Late but keen."})

    assert response.status_code == 410
    assert "This survey has closed" in response.content.decode()
    assert Response.objects.count() == 0
    invitation.refresh_from_db()
    assert invitation.answered_at is None


def test_other_methods_are_refused(client, invitation):
    response = client.put(url(invitation), "score=10", content_type="application/x-www-form-urlencoded")

    assert response.status_code == 405
    assert Response.objects.count() == 0


# --- No CSRF token, no cookie: the token in the URL is the credential --------------


def test_a_customer_answers_without_cookies_with_csrf_checks_on(invitation):
    # As a mail client's in-app browser that refuses cookies: the form alone is enough.
    client = Client(enforce_csrf_checks=True)

    response = client.post(url(invitation), {"score": "10", "reason": "Lovely"})

    assert response.status_code == 302
    assert Response.objects.get().reason == "Lovely"


def test_the_survey_page_sets_no_cookie(invitation):
    client = Client(enforce_csrf_checks=True)

    page = client.get(url(invitation), {"score": "9"})
    answered = client.post(url(invitation), {"score": "9"})
    thanks = client.get(url(invitation))

    assert [page.cookies, answered.cookies, thanks.cookies] == [{}, {}, {}]
    assert not client.cookies
    assert b"csrfmiddlewaretoken" not in page.content


def test_a_forged_post_needs_the_customers_token_and_without_it_records_nothing(invitation):
    client = Client(enforce_csrf_checks=True)

    response = client.post(f"/s/{invitation.token[:-2]}xx/", {"score": "0", "reason": "forged"})

    assert response.status_code == 404
    assert Response.objects.count() == 0


def test_the_survey_page_is_never_cached(client, invitation):
    response = client.get(url(invitation))

    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


# --- Static assets ---------------------------------------------------------------


def test_the_stylesheet_is_served_by_whitenoise(client):
    response = client.get("/static/vendor/bootstrap/bootstrap.min.css")

    assert response.status_code == 200
    assert isinstance(response, WhiteNoiseFileResponse)
    assert response["Content-Type"].startswith("text/css")
    assert b"Bootstrap" in b"".join(response.streaming_content)


def test_every_asset_the_survey_page_links_to_is_served_locally(client, invitation):
    html = client.get(url(invitation)).content

    references = [e.attrs["href"] for e in elements(html, "link") if "href" in e.attrs]
    references += [e.attrs["src"] for e in elements(html, None) if "src" in e.attrs]
    assert references, "the page links no stylesheet at all"
    for reference in references:
        assert reference.startswith("/") and not reference.startswith("//"), reference
        assert "http" not in reference.lower(), reference
        assert client.get(reference).status_code == 200, reference


# --- The page rendered once per wording (see views._survey_page) ---------------------


def form_action(html: bytes) -> str:
    return next(e for e in elements(html, "form")).attrs["action"]


def test_customers_of_one_touchpoint_each_get_their_own_link(touchpoint):
    first, second = InvitationFactory.create_batch(2, touchpoint=touchpoint)

    first_page = Client().get(url(first)).content
    second_page = Client().get(url(second)).content

    assert form_action(first_page) == url(first)
    assert form_action(second_page) == url(second)
    assert second.token.encode() not in first_page and first.token.encode() not in second_page
    answered = Client().post(form_action(first_page), {"score": "9"})
    assert answered.status_code == 302
    assert Response.objects.get().invitation == first


def test_a_question_edited_in_admin_shows_on_the_next_visit(client, invitation):
    client.get(url(invitation))
    invitation.touchpoint.question = "Would you recommend our <b>night</b> deliveries?"
    invitation.touchpoint.name = "Night deliveries"
    invitation.touchpoint.save()

    html = client.get(url(invitation)).content.decode()

    assert "Would you recommend our &lt;b&gt;night&lt;/b&gt; deliveries?" in html
    assert "Night deliveries" in html


def test_the_preselected_score_is_not_carried_over_to_the_next_customer(touchpoint):
    first, second = InvitationFactory.create_batch(2, touchpoint=touchpoint)

    preselected = Client().get(url(first), {"score": "3"}).content
    plain = Client().get(url(second)).content

    assert checked_scores(preselected) == ["3"]
    assert checked_scores(plain) == []


def test_the_survey_lookup_runs_on_a_new_database_connection_too(client, invitation):
    """Statements are prepared per database connection: a new one prepares them again, it does not fail."""
    from django.db import connection, connections

    from surveys.core import db as statements

    from ..conftest import require_postgresql

    require_postgresql()  # statements are prepared on PostgreSQL only
    assert client.get(url(invitation)).status_code == 200  # the lookup is now prepared on this connection
    sql = "SELECT token FROM surveys_invitation WHERE token = %s"
    other = connections.create_connection("default")  # what a worker gets after a reconnect
    try:
        rows = []
        for wrapper in (connection, other, connection, other):
            with wrapper.cursor() as cursor:
                statements.execute(cursor, wrapper, sql, [invitation.token])
                rows.append(cursor.fetchone())
    finally:
        other.close()

    # The other connection cannot see this test's uncommitted rows; it ran the statement all the same.
    assert rows == [(invitation.token,), None, (invitation.token,), None]


def test_a_statement_prepared_long_ago_is_planned_again_for_the_tables_as_they_are_now(client, invitation, monkeypatch):
    """A plan made on empty tables must not be kept while they fill up (statements.REPLAN_AFTER_SECONDS)."""
    from django.db import connection

    from surveys.core import db as statements

    from ..conftest import require_postgresql

    require_postgresql()
    sql = "SELECT count(*) FROM surveys_invitation WHERE token = %s"

    def prepared_at():
        with connection.cursor() as cursor:
            cursor.execute("SELECT prepare_time FROM pg_prepared_statements WHERE statement LIKE %s", ["%count(*)%"])
            return [row[0] for row in cursor.fetchall()]

    def run():
        with connection.cursor() as cursor:
            statements.execute(cursor, connection, sql, [invitation.token])
            return cursor.fetchone()[0]

    assert run() == 1
    first = prepared_at()
    assert run() == 1 and prepared_at() == first  # reused while young
    monkeypatch.setattr(statements, "REPLAN_AFTER_SECONDS", 0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.01)")
    assert run() == 1
    again = prepared_at()
    assert len(again) == 1 and again != first


def test_an_answer_on_the_survey_page_queues_the_webhooks_of_active_endpoints_only(client, touchpoint):
    from surveys.models import WebhookDelivery, WebhookEndpoint

    listening = WebhookEndpoint.objects.create(
        name="CRM", url="https://crm.example.com/hook", secret="s" * 32, events=["response.created", "case.opened"]
    )
    WebhookEndpoint.objects.create(
        name="Old", url="https://old.example.com/hook", secret="s" * 32, events=["response.created"], is_active=False
    )
    detractor, promoter = InvitationFactory.create_batch(2, touchpoint=touchpoint)

    client.post(url(detractor), {"score": "2", "reason": "Late"})
    client.post(url(promoter), {"score": "10"})

    queued = sorted((d.endpoint_id, d.event, d.payload["data"]["score"]) for d in WebhookDelivery.objects.all())
    assert queued == sorted([
        (listening.pk, "response.created", 2), (listening.pk, "case.opened", 2), (listening.pk, "response.created", 10),
    ])


def test_an_answer_queues_no_webhook_when_no_endpoint_is_active(client, invitation):
    from surveys.models import WebhookDelivery, WebhookEndpoint

    WebhookEndpoint.objects.create(
        name="Old", url="https://old.example.com/hook", secret="s" * 32, events=["response.created"], is_active=False
    )

    assert client.post(url(invitation), {"score": "3"}).status_code == 302
    assert WebhookDelivery.objects.count() == 0
    assert Response.objects.get().case.status == "open"


def test_two_customers_wordings_never_mix_in_the_forms_fields(touchpoint):
    """The survey form's fields are copied shallowly per form (forms._CopiedShallowly): labels stay each form's own."""
    from surveys.web.forms import SurveyResponseForm

    first = SurveyResponseForm({"score": "3"}, question="First question?", reason_prompt="First why?")
    second = SurveyResponseForm({"score": "12"}, question="Second question?", reason_prompt="Second why?")

    assert (first.fields["score"].label, second.fields["score"].label) == ("First question?", "Second question?")
    assert (first.fields["reason"].label, second.fields["reason"].label) == ("First why?", "Second why?")
    assert SurveyResponseForm.base_fields["score"].label is None
    assert first.is_valid() and first.cleaned_data["score"] == 3
    assert not second.is_valid() and "score" in second.errors
    assert first.is_valid()  # the other form's error did not leak into this one
