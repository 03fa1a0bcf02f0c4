"""The Delighted-compatible API (SPEC §5) driven by the official `delighted` Python client.

Integrations written for Delighted change only the API key and base URL, so
these tests talk to a live test server through `delighted` 4.2.0 exactly as
such an integration would. Each test makes its own `delighted.Client`: the
package's shared client caches the first key it sees.
"""

import io
import warnings
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from aiosmtpd.controller import Controller
from django.core.management import call_command
from django.utils import timezone

from surveys.access.services import api_key_create, api_key_revoke
from surveys.customers.services import address_hash, address_is_suppressed
from surveys.invitations.services import invitations_sweep
from surveys.models import (
    Coupon,
    Customer,
    FollowUpCase,
    Invitation,
    ReferralLink,
    Response,
    SuppressedAddress,
    SurveySkip,
)
from surveys.responses.services import response_submit

from ..conftest import _free_port
from ..factories import CustomerFactory, InvitationFactory, ResponseFactory, TouchpointFactory

with warnings.catch_warnings():
    # The package announces Delighted's sunset on import.
    warnings.simplefilter("ignore", FutureWarning)
    import delighted
    from delighted.errors import (
        AuthenticationError,
        GeneralAPIError,
        ResourceValidationError,
        TooManyRequestsError,
    )

pytestmark = pytest.mark.django_db(transaction=True)


class CountingAdapter(delighted.HTTPAdapter):
    """The client's own HTTP adapter, counting the requests it makes."""

    def __init__(self):
        self.urls = []

    def request(self, method, uri, headers={}, data=None, params=None):  # noqa: B006 - the client's signature
        self.urls.append(uri)
        return super().request(method, uri, headers=headers, data=data, params=params)


@pytest.fixture
def touchpoint(db):
    return TouchpointFactory(name="Web shop", slug="web", is_api_default=True, alert_recipients="cx@acme.test")


@pytest.fixture
def adapter():
    return CountingAdapter()


@pytest.fixture
def dclient(live_server, touchpoint, adapter):
    _, raw_key = api_key_create(name="Delighted migration")
    return delighted.Client(api_key=raw_key, api_base_url=live_server.url + "/v1/", http_adapter=adapter)


def now_unix() -> int:
    return int(timezone.now().timestamp())


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=dt_timezone.utc)


def unix(moment: datetime) -> int:
    return int(moment.timestamp())


def emails_to(outbox, address: str) -> list:
    return [message for message in outbox if address in message.to]


# --- People: create and schedule a survey ------------------------------------------------


def test_creating_a_person_schedules_and_sends_the_survey_now(dclient, touchpoint, mailoutbox):
    person = delighted.Person.create(client=dclient, email="ann@example.com", name="Ann Lee")

    assert isinstance(person, delighted.Person)
    customer = Customer.objects.get(email="ann@example.com")
    assert person.id == str(customer.pk)
    assert (person.email, person.name) == ("ann@example.com", "Ann Lee")
    assert abs(person.survey_scheduled_at - now_unix()) <= 5
    assert "survey_skipped" not in person
    invitation = Invitation.objects.get(customer=customer)
    assert (invitation.touchpoint, invitation.status, invitation.source) == (touchpoint, "sent", "api")
    assert [message.to for message in mailoutbox] == [["ann@example.com"]]
    assert invitation.token in mailoutbox[0].body


def test_a_delay_schedules_the_survey_for_later_and_sends_nothing_now(dclient, mailoutbox):
    before = now_unix()

    person = delighted.Person.create(client=dclient, email="ann@example.com", delay=3600)

    assert before + 3600 <= person.survey_scheduled_at <= now_unix() + 3600
    invitation = Invitation.objects.get(customer__email="ann@example.com")
    assert invitation.status == "pending"
    assert invitation.send_after > timezone.now() + timedelta(minutes=59)
    assert int(invitation.send_after.timestamp()) == person.survey_scheduled_at
    # The due time is a row swept by beat: the sweep leaves it alone until then.
    assert invitations_sweep()["enqueued"] == 0
    assert mailoutbox == []
    listed = [p for p in delighted.Person.list(client=dclient).auto_paging_iter()]
    assert listed[0].next_survey_scheduled_at == person.survey_scheduled_at


def test_send_false_creates_the_person_without_a_survey(dclient, mailoutbox):
    person = delighted.Person.create(client=dclient, email="ann@example.com", name="Ann", send=False)

    assert person.email == "ann@example.com"
    assert "survey_scheduled_at" not in person and "survey_skipped" not in person
    assert Customer.objects.filter(email="ann@example.com", name="Ann").exists()
    assert not Invitation.objects.exists()
    assert mailoutbox == []


def test_creating_a_person_again_updates_them_and_keeps_one_record(dclient):
    first = delighted.Person.create(client=dclient, email="ann@example.com", send=False)
    second = delighted.Person.create(
        client=dclient, email="ANN@example.com", name="Ann Lee", phone_number="+15551230000", send=False
    )

    assert second.id == first.id
    customer = Customer.objects.get()
    assert (customer.name, customer.phone) == ("Ann Lee", "+15551230000")


def test_properties_stay_with_the_invitation_and_come_back_with_the_response(dclient):
    properties = {"plan": "pro", "order_id": "A-1017", "Delighted Source": "Zapier"}
    person = delighted.Person.create(client=dclient, email="ann@example.com", properties=properties)

    assert person.properties == properties
    invitation = Invitation.objects.get(customer__email="ann@example.com")
    assert invitation.properties == properties
    response_submit(invitation=invitation, score=9, reason="Quick delivery")

    [response] = delighted.SurveyResponse.all(client=dclient)
    assert response.person == person.id
    assert response.person_properties == properties
    assert (response.score, response.comment) == (9, "Quick delivery")


def test_the_locale_property_sets_the_customers_language(dclient, mailoutbox):
    delighted.Person.create(client=dclient, email="ana@example.com", name="Ana", properties={"locale": "es"})

    assert Customer.objects.get(email="ana@example.com").locale == "es"
    [message] = mailoutbox
    assert "¿Qué probabilidad hay de que recomiende" in message.body


def test_the_touchpoint_property_picks_the_touchpoint(dclient, touchpoint):
    store = TouchpointFactory(name="In store", slug="store")

    delighted.Person.create(client=dclient, email="ann@example.com", properties={"touchpoint": "store"})
    delighted.Person.create(client=dclient, email="bob@example.com")

    assert Invitation.objects.get(customer__email="ann@example.com").touchpoint == store
    assert Invitation.objects.get(customer__email="bob@example.com").touchpoint == touchpoint


def test_an_unknown_touchpoint_property_is_a_validation_error(dclient, mailoutbox):
    with pytest.raises(ResourceValidationError) as caught:
        delighted.Person.create(client=dclient, email="ann@example.com", properties={"touchpoint": "nowhere"})

    assert caught.value.response.status_code == 422
    assert not Invitation.objects.exists()
    assert not Customer.objects.exists()  # the request is one transaction
    assert mailoutbox == []


def test_question_product_name_names_what_is_recommended(dclient, mailoutbox):
    delighted.Person.create(
        client=dclient, email="ann@example.com", properties={"question_product_name": "the Acme Rocket"}
    )

    [message] = mailoutbox
    assert "How likely are you to recommend the Acme Rocket to a friend or colleague?" in message.body
    assert "the Acme Rocket" in message.alternatives[0][0]


def test_a_person_in_cooldown_is_reported_skipped(dclient, mailoutbox):
    delighted.Person.create(client=dclient, email="ann@example.com")

    again = delighted.Person.create(client=dclient, email="ann@example.com")

    assert "survey_scheduled_at" not in again
    assert again.survey_skipped == "cooldown"
    assert Invitation.objects.count() == 1
    assert SurveySkip.objects.get().reason == "cooldown"
    assert len(mailoutbox) == 1


def test_an_unsubscribed_person_is_reported_skipped_and_not_emailed(dclient, mailoutbox):
    CustomerFactory(email="ann@example.com", unsubscribed_at=timezone.now())

    person = delighted.Person.create(client=dclient, email="ann@example.com")

    assert "survey_scheduled_at" not in person
    assert person.survey_skipped == "unsubscribed"
    assert not Invitation.objects.exists()
    assert mailoutbox == []


# --- People: listing ---------------------------------------------------------------------


def test_auto_paging_iter_walks_every_page_once_in_creation_order(dclient, adapter):
    emails = [f"person{n}@example.com" for n in range(7)]
    for email in emails:
        delighted.Person.create(client=dclient, email=email, send=False)
    adapter.urls.clear()

    people = list(delighted.Person.list(client=dclient, per_page=2).auto_paging_iter())

    assert [person.email for person in people] == emails
    assert len({person.id for person in people}) == 7
    assert all(isinstance(person, delighted.Person) for person in people)
    assert len(adapter.urls) == 4  # 2 + 2 + 2 + 1


def test_a_person_added_while_paging_is_neither_skipped_nor_repeated(dclient):
    for n in range(4):
        delighted.Person.create(client=dclient, email=f"person{n}@example.com", send=False)
    pages = delighted.Person.list(client=dclient, per_page=2).auto_paging_iter()

    seen = [next(pages).email, next(pages).email]
    delighted.Person.create(client=dclient, email="late@example.com", send=False)
    seen += [person.email for person in pages]

    assert seen == [f"person{n}@example.com" for n in range(4)] + ["late@example.com"]


def test_people_list_shows_when_each_was_last_surveyed(dclient):
    delighted.Person.create(client=dclient, email="ann@example.com")
    delighted.Person.create(client=dclient, email="bob@example.com", send=False)
    response_submit(invitation=Invitation.objects.get(), score=8)

    ann, bob = delighted.Person.list(client=dclient).auto_paging_iter()

    assert abs(ann.last_sent_at - now_unix()) <= 5
    assert abs(ann.last_responded_at - now_unix()) <= 5
    assert bob.last_sent_at is None and bob.last_responded_at is None


def test_people_list_filters_by_creation_time(dclient):
    CustomerFactory(email="old@example.com", created_at=at(1))
    CustomerFactory(email="mid@example.com", created_at=at(10))
    CustomerFactory(email="new@example.com", created_at=at(20))

    people = delighted.Person.list(client=dclient, since=unix(at(5)), until=unix(at(10))).auto_paging_iter()

    assert [person.email for person in people] == ["mid@example.com"]


# --- Survey responses ----------------------------------------------------------------------


def test_a_promoter_response_created_through_the_api_earns_a_coupon(dclient, mailoutbox):
    person = delighted.Person.create(client=dclient, email="ann@example.com", send=False)

    response = delighted.SurveyResponse.create(
        client=dclient, person=person.id, score=10, comment="Love it", person_properties={"plan": "pro"}
    )

    assert isinstance(response, delighted.SurveyResponse)
    assert (response.person, response.score, response.comment) == (person.id, 10, "Love it")
    assert response.person_properties == {"plan": "pro"}
    assert abs(response.created_at - now_unix()) <= 5
    stored = Response.objects.get(pk=response.id)
    assert (stored.category, stored.reason) == ("promoter", "Love it")
    coupon = Coupon.objects.get(response=stored)
    assert ReferralLink.objects.filter(customer=stored.customer).exists()
    [coupon_email] = emails_to(mailoutbox, "ann@example.com")
    assert coupon.code in coupon_email.body
    assert not FollowUpCase.objects.exists()


def test_a_detractor_response_created_through_the_api_opens_a_follow_up_case(dclient, mailoutbox):
    person = delighted.Person.create(client=dclient, email="ann@example.com", send=False)

    response = delighted.SurveyResponse.create(client=dclient, person=person.id, score=2, comment="Late again")

    case = FollowUpCase.objects.get(response_id=response.id)
    assert (case.status, case.customer.email) == ("open", "ann@example.com")
    assert [message.to for message in mailoutbox] == [["cx@acme.test"]]
    assert not Coupon.objects.exists()


def test_a_response_created_through_the_api_can_name_the_touchpoint(dclient):
    store = TouchpointFactory(slug="store")
    person = delighted.Person.create(client=dclient, email="ann@example.com", send=False)

    response = delighted.SurveyResponse.create(
        client=dclient, person=person.id, score=8, person_properties={"touchpoint": "store"}
    )

    assert Response.objects.get(pk=response.id).touchpoint == store


def test_a_response_can_be_expanded_with_its_person_on_create(dclient):
    person = delighted.Person.create(client=dclient, email="ann@example.com", name="Ann", send=False)

    response = delighted.SurveyResponse.create(client=dclient, person=person.id, score=7, expand=["person"])

    assert isinstance(response.person, delighted.Person)
    assert (response.person.id, response.person.email, response.person.name) == (person.id, "ann@example.com", "Ann")


@pytest.fixture
def answers(touchpoint):
    """Five responses an hour apart, at two touchpoints, from three people."""
    store = TouchpointFactory(name="In store", slug="store")
    ann = CustomerFactory(email="ann@example.com", name="Ann")
    bob = CustomerFactory(email="bob@example.com", name="Bob")
    cat = CustomerFactory(email="cat@example.com", name="Cat")
    start = at(2, 9)
    rows = [(ann, touchpoint, 9), (bob, store, 3), (ann, store, 7), (bob, touchpoint, 10), (cat, touchpoint, 5)]
    made = []
    for hour, (customer, where, score) in enumerate(rows):
        moment = start + timedelta(hours=hour)
        invitation = InvitationFactory(
            customer=customer, touchpoint=where, created_at=moment, sent_at=moment, properties={"n": str(hour)}
        )
        made.append(
            ResponseFactory(
                invitation=invitation, score=score, reason=f"Reason {hour}", created_at=moment, updated_at=moment
            )
        )
    return {"responses": made, "start": start, "store": store}


def ids(items) -> list[int]:
    return [int(item.id) for item in items]


def test_survey_responses_are_listed_oldest_first_with_delighted_fields(dclient, answers):
    listed = delighted.SurveyResponse.all(client=dclient)

    assert ids(listed) == [r.pk for r in answers["responses"]]
    first = listed[0]
    assert first.person == str(answers["responses"][0].customer_id)
    assert (first.score, first.comment, first.survey_type) == (9, "Reason 0", "nps")
    assert first.created_at == unix(answers["start"])
    assert first.person_properties == {"n": "0"}
    assert first.permalink.startswith("https://surveys.example.com/admin/")


def test_survey_responses_can_be_listed_newest_first(dclient, answers):
    listed = delighted.SurveyResponse.all(client=dclient, order="desc")

    assert ids(listed) == [r.pk for r in reversed(answers["responses"])]


def test_survey_responses_are_filtered_by_since_and_until_inclusive(dclient, answers):
    start = answers["start"]

    listed = delighted.SurveyResponse.all(
        client=dclient, since=unix(start + timedelta(hours=1)), until=start + timedelta(hours=3)
    )

    assert ids(listed) == [r.pk for r in answers["responses"][1:4]]


def test_survey_responses_are_paged_with_per_page_and_page(dclient, answers):
    pages = [delighted.SurveyResponse.all(client=dclient, per_page=2, page=page) for page in (1, 2, 3, 4)]

    assert [ids(page) for page in pages] == [
        [r.pk for r in answers["responses"][0:2]],
        [r.pk for r in answers["responses"][2:4]],
        [answers["responses"][4].pk],
        [],
    ]


def test_survey_responses_are_filtered_by_person_email_and_trend(dclient, answers):
    responses = answers["responses"]

    by_email = delighted.SurveyResponse.all(client=dclient, person_email="ANN@example.com")
    by_slug = delighted.SurveyResponse.all(client=dclient, trend="store")
    by_id = delighted.SurveyResponse.all(client=dclient, trend=str(answers["store"].pk))

    assert ids(by_email) == [responses[0].pk, responses[2].pk]
    assert ids(by_slug) == ids(by_id) == [responses[1].pk, responses[2].pk]


def test_survey_responses_can_be_expanded_with_their_person(dclient, answers):
    listed = delighted.SurveyResponse.all(client=dclient, expand=["person"], per_page=2)

    assert all(isinstance(item.person, delighted.Person) for item in listed)
    assert [(item.person.email, item.person.name) for item in listed] == [
        ("ann@example.com", "Ann"),
        ("bob@example.com", "Bob"),
    ]
    assert listed[0].person.last_responded_at is not None


def test_a_survey_response_is_retrieved_by_id_with_or_without_its_person(dclient, answers):
    wanted = answers["responses"][1]

    plain = delighted.SurveyResponse.retrieve(str(wanted.pk), client=dclient)
    expanded = delighted.SurveyResponse.retrieve(str(wanted.pk), client=dclient, expand=["person"])

    assert (plain.id, plain.score, plain.comment, plain.person) == (str(wanted.pk), 3, "Reason 1", str(wanted.customer_id))
    assert plain.updated_at is None
    assert expanded.person.email == "bob@example.com"


def test_a_retrieved_survey_response_is_updated_with_save(dclient, answers):
    wanted = answers["responses"][0]
    response = delighted.SurveyResponse.retrieve(str(wanted.pk), client=dclient)

    response.score = 3
    response.comment = "Changed my mind"
    saved = response.save(client=dclient)

    assert (saved.id, saved.score, saved.comment) == (str(wanted.pk), 3, "Changed my mind")
    assert abs(saved.updated_at - now_unix()) <= 5
    wanted.refresh_from_db()
    assert (wanted.score, wanted.category, wanted.reason) == (3, "detractor", "Changed my mind")
    assert wanted.created_at == answers["start"]  # the history keeps its date
    again = delighted.SurveyResponse.all(client=dclient, updated_since=now_unix() - 60)
    assert ids(again) == [wanted.pk]


def test_an_expanded_survey_response_can_be_saved_too(dclient, answers):
    wanted = answers["responses"][2]
    response = delighted.SurveyResponse.retrieve(str(wanted.pk), client=dclient, expand=["person"])

    response.score = 10
    saved = response.save(client=dclient)

    assert saved.score == 10
    wanted.refresh_from_db()
    assert (wanted.score, wanted.category) == (10, "promoter")


# --- Metrics ---------------------------------------------------------------------------


@pytest.fixture
def scored(touchpoint):
    """Eight answers on two days: 10, 8, 0, 0 | 8, 8, 8, 8 (1 promoter, 5 passives, 2 detractors)."""
    for day, scores in ((3, [10, 8, 0, 0]), (6, [8, 8, 8, 8])):
        for score in scores:
            ResponseFactory(
                invitation=InvitationFactory(touchpoint=touchpoint), score=score, created_at=at(day)
            )


def test_metrics_for_all_time_match_the_hand_computed_figures(dclient, scored):
    metrics = delighted.Metrics.retrieve(client=dclient)

    # NPS = (1 − 2) / 8 = −12.5 %, rounded half away from zero; shares 12.5 / 62.5 / 25 %.
    assert dict(metrics) == {
        "nps": -13,
        "promoter_count": 1,
        "promoter_percent": 13,
        "passive_count": 5,
        "passive_percent": 63,
        "detractor_count": 2,
        "detractor_percent": 25,
        "response_count": 8,
    }


def test_metrics_for_a_date_range_count_only_that_range(dclient, scored):
    metrics = delighted.Metrics.retrieve(client=dclient, since=unix(at(2)), until=unix(at(4)))

    assert (metrics.nps, metrics.response_count) == (-25, 4)
    assert (metrics.promoter_count, metrics.passive_count, metrics.detractor_count) == (1, 1, 2)
    assert (metrics.promoter_percent, metrics.passive_percent, metrics.detractor_percent) == (25, 25, 50)


def test_metrics_with_no_answers_are_zero(dclient, scored):
    metrics = delighted.Metrics.retrieve(client=dclient, since=unix(at(20)))

    assert dict(metrics) == {
        "nps": 0,
        "promoter_count": 0,
        "promoter_percent": 0,
        "passive_count": 0,
        "passive_percent": 0,
        "detractor_count": 0,
        "detractor_percent": 0,
        "response_count": 0,
    }


def test_metrics_can_be_limited_to_one_trend(dclient, scored):
    store = TouchpointFactory(slug="store")
    ResponseFactory(invitation=InvitationFactory(touchpoint=store), score=10, created_at=at(3))

    by_slug = delighted.Metrics.retrieve(client=dclient, trend="store")
    by_id = delighted.Metrics.retrieve(client=dclient, trend=str(store.pk))  # Delighted's trends are ids

    assert (by_slug.nps, by_slug.response_count, by_slug.promoter_percent) == (100, 1, 100)
    assert dict(by_id) == dict(by_slug)


# --- Unsubscribes and bounces ---------------------------------------------------------------


def test_an_unsubscribed_person_gets_no_survey_and_is_listed(dclient, mailoutbox):
    delighted.Person.create(client=dclient, email="bob@example.com", send=False)

    assert delighted.Unsubscribe.create(client=dclient, person_email="ann@example.com") == {"ok": True}
    person = delighted.Person.create(client=dclient, email="ann@example.com")

    assert person.survey_skipped == "unsubscribed"
    assert mailoutbox == []
    [unsubscribe] = delighted.Unsubscribe.all(client=dclient)
    customer = Customer.objects.get(email="ann@example.com")
    assert (unsubscribe.person_id, unsubscribe.email) == (str(customer.pk), "ann@example.com")
    assert unsubscribe.unsubscribed_at == int(customer.unsubscribed_at.timestamp())


def test_unsubscribing_cancels_a_scheduled_survey(dclient, mailoutbox):
    delighted.Person.create(client=dclient, email="ann@example.com", delay=600)

    delighted.Unsubscribe.create(client=dclient, person_email="ann@example.com")

    assert Invitation.objects.get().status == "cancelled"
    assert invitations_sweep()["enqueued"] == 0
    assert mailoutbox == []


class RefusingHandler:
    """An SMTP server that refuses one recipient the way a mailbox that does not exist is refused."""

    def __init__(self, refused: str):
        self.refused = refused
        self.messages = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == self.refused:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


@pytest.fixture
def refusing_smtp(settings):
    handler = RefusingHandler(refused="gone@example.com")
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", controller.port, False
    try:
        yield handler
    finally:
        controller.stop()


def test_a_refused_address_is_listed_as_a_bounce(dclient, refusing_smtp):
    delighted.Person.create(client=dclient, email="fine@example.com")
    delighted.Person.create(client=dclient, email="gone@example.com", name="Gone")

    assert refusing_smtp.messages == [["fine@example.com"]]
    gone = Customer.objects.get(email="gone@example.com")
    assert gone.bounced_at is not None
    assert Invitation.objects.get(customer=gone).status == "failed"
    [bounce] = delighted.Bounce.all(client=dclient)
    assert (bounce.person_id, bounce.email, bounce.name) == (str(gone.pk), "gone@example.com", "Gone")
    assert bounce.bounced_at == int(gone.bounced_at.timestamp())
    assert delighted.Bounce.all(client=dclient, since=bounce.bounced_at + 1) == []


# --- Erasure and pending survey requests ------------------------------------------------------


def _dump_database() -> str:
    out = io.StringIO()
    call_command("dumpdata", stdout=out)
    return out.getvalue()


def test_deleting_a_person_by_email_erases_them_and_keeps_the_nps(dclient, mailoutbox):
    ann = delighted.Person.create(
        client=dclient, email="ann@example.com", name="Ann Lee", phone_number="+15551230000",
        properties={"plan": "pro", "city": "Springfield"},
    )
    response_submit(invitation=Invitation.objects.get(customer_id=ann.id), score=3, reason="Ann's secret")
    delighted.SurveyResponse.create(client=dclient, person=ann.id, score=10, comment="Ann again")
    bob = delighted.Person.create(client=dclient, email="bob@example.com", send=False)
    delighted.SurveyResponse.create(client=dclient, person=bob.id, score=9)
    metrics_before = dict(delighted.Metrics.retrieve(client=dclient))
    mailoutbox.clear()

    assert delighted.Person.delete(client=dclient, email="ann@example.com") == {"ok": True}

    assert [p.email for p in delighted.Person.list(client=dclient).auto_paging_iter()] == ["bob@example.com"]
    assert list(Response.objects.filter(customer_id=ann.id).values_list("reason", flat=True)) == ["", ""]
    assert sorted(Response.objects.filter(customer_id=ann.id).values_list("score", flat=True)) == [3, 10]
    assert dict(delighted.Metrics.retrieve(client=dclient)) == metrics_before
    assert [r.person for r in delighted.SurveyResponse.all(client=dclient)] == [bob.id]
    # Nothing in the database still holds the address, the name, the phone or the texts.
    dump = _dump_database()
    for secret in ("ann@example.com", "Ann Lee", "5551230000", "Ann's secret", "Ann again", "Springfield"):
        assert secret not in dump
    assert SuppressedAddress.objects.get().address_hash == address_hash("ann@example.com")

    again = delighted.Person.create(client=dclient, email="Ann@Example.com")

    assert again.survey_skipped == "unsubscribed"
    assert mailoutbox == []


def test_deleting_a_person_by_id_erases_them(dclient):
    ann = delighted.Person.create(client=dclient, email="ann@example.com", send=False)

    assert delighted.Person.delete(client=dclient, id=ann.id) == {"ok": True}

    customer = Customer.objects.get(pk=ann.id)
    assert customer.erased_at is not None and customer.email != "ann@example.com"
    assert list(delighted.Person.list(client=dclient).auto_paging_iter()) == []


def test_deleting_a_person_by_phone_number_erases_them(dclient):
    delighted.Person.create(client=dclient, email="ann@example.com", phone_number="+15551230000", send=False)

    assert delighted.Person.delete(client=dclient, phone_number="+15551230000") == {"ok": True}

    customer = Customer.objects.get()
    assert (customer.erased_at is not None, customer.phone, customer.name) == (True, "", "")
    assert address_is_suppressed("ann@example.com")


def test_deleting_an_unknown_person_is_404_and_erasing_again_is_harmless(dclient):
    ann = delighted.Person.create(client=dclient, email="ann@example.com", send=False)
    delighted.Person.delete(client=dclient, id=ann.id)

    # Erasing again, by id or by the address that was erased, answers as the first time and changes nothing.
    for identifier in ({"id": ann.id}, {"email": "ann@example.com"}):
        assert delighted.Person.delete(client=dclient, **identifier) == {"ok": True}
    erased = Customer.objects.get(pk=ann.id)
    assert (erased.email, erased.erased_at is not None) == (f"erased-{ann.id}@erased.invalid", True)
    with pytest.raises(GeneralAPIError) as caught:
        delighted.Person.delete(client=dclient, email="nobody@example.com")
    assert caught.value.response.status_code == 404


def test_delete_pending_cancels_scheduled_surveys(dclient, mailoutbox):
    delighted.Person.create(client=dclient, email="ann+shop@example.com", delay=600)
    delighted.Person.create(client=dclient, email="bob@example.com", delay=600)

    assert delighted.SurveyRequest.delete_pending(client=dclient, person_email="ann+shop@example.com") == {"ok": True}

    assert Invitation.objects.get(customer__email="ann+shop@example.com").status == "cancelled"
    assert Invitation.objects.get(customer__email="bob@example.com").status == "pending"
    Invitation.objects.update(send_after=timezone.now() - timedelta(minutes=5))
    invitations_sweep()
    assert [message.to for message in mailoutbox] == [["bob@example.com"]]


def test_delete_pending_for_an_unknown_person_is_404(dclient):
    with pytest.raises(GeneralAPIError) as caught:
        delighted.SurveyRequest.delete_pending(client=dclient, person_email="nobody@example.com")

    assert caught.value.response.status_code == 404


# --- Errors ------------------------------------------------------------------------------


def test_a_wrong_key_raises_authentication_error(live_server, touchpoint):
    wrong = delighted.Client(api_key="lp_not-a-real-key", api_base_url=live_server.url + "/v1/")

    with pytest.raises(AuthenticationError) as caught:
        delighted.Person.create(client=wrong, email="ann@example.com")
    with pytest.raises(AuthenticationError):
        delighted.Metrics.retrieve(client=wrong)

    assert caught.value.response.status_code == 401
    assert not Customer.objects.exists()


def test_a_revoked_key_raises_authentication_error(live_server, touchpoint):
    api_key, raw_key = api_key_create(name="Old")
    api_key_revoke(api_key=api_key)
    revoked = delighted.Client(api_key=raw_key, api_base_url=live_server.url + "/v1/")

    with pytest.raises(AuthenticationError):
        delighted.SurveyResponse.all(client=revoked)


def test_a_score_out_of_range_raises_resource_validation_error(dclient):
    person = delighted.Person.create(client=dclient, email="ann@example.com", send=False)

    with pytest.raises(ResourceValidationError) as caught:
        delighted.SurveyResponse.create(client=dclient, person=person.id, score=11)

    assert caught.value.response.status_code == 422
    assert not Response.objects.exists()


def test_updating_to_a_score_out_of_range_raises_resource_validation_error(dclient, answers):
    response = delighted.SurveyResponse.retrieve(str(answers["responses"][0].pk), client=dclient)
    response.score = -1

    with pytest.raises(ResourceValidationError):
        response.save(client=dclient)

    assert Response.objects.get(pk=answers["responses"][0].pk).score == 9


def test_an_invalid_email_raises_resource_validation_error(dclient):
    with pytest.raises(ResourceValidationError):
        delighted.Person.create(client=dclient, email="not an email")


def test_an_unknown_survey_response_is_a_404(dclient):
    with pytest.raises(GeneralAPIError) as caught:
        delighted.SurveyResponse.retrieve("987654", client=dclient)

    assert caught.value.response.status_code == 404
    assert caught.value.response.headers["Content-Type"] == "application/json"


def test_a_key_over_its_rate_limit_raises_too_many_requests_with_retry_after(dclient, settings):
    settings.NPS_RATE_API_PER_KEY = "2/m"
    delighted.Metrics.retrieve(client=dclient)
    delighted.Metrics.retrieve(client=dclient)

    with pytest.raises(TooManyRequestsError) as caught:
        delighted.Person.create(client=dclient, email="ann@example.com")

    assert caught.value.response.status_code == 429
    assert caught.value.retry_after == 60
    assert not Customer.objects.exists()
