"""The raw HTTP of the Delighted-compatible API under /v1/, as curl and hand-written integrations send it."""

import base64
import json
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from surveys.access.services import api_key_create, api_key_revoke
from surveys.models import Customer, Invitation, Response
from surveys.privacy.services import customer_erase

from ..factories import CustomerFactory, InvitationFactory, ResponseFactory, TouchpointFactory

pytestmark = pytest.mark.django_db


def basic(credentials: str) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(credentials.encode()).decode()}


@pytest.fixture
def touchpoint(db):
    return TouchpointFactory(name="Web shop", slug="web", is_api_default=True)


@pytest.fixture
def auth(api_key) -> dict:
    """What the official Python client sends: the key alone as the Basic user name."""
    return basic(api_key)


def post_json(client, path, body, auth):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, data, content_type="application/json", **auth)


def assert_error(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"status", "message", "errors"}
    assert body["status"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["errors"], list)
    return body


# --- Authentication ----------------------------------------------------------------------


def test_the_key_alone_as_basic_user_name_is_accepted(client, auth, touchpoint):
    response = client.get("/v1/people", **auth)

    assert response.status_code == 200
    assert response.json() == []


def test_the_key_with_a_trailing_colon_is_accepted_like_curl_sends_it(client, api_key, touchpoint):
    # curl -u KEY: https://…/v1/people.json
    response = client.get("/v1/people.json", **basic(f"{api_key}:"))

    assert response.status_code == 200


def test_a_password_after_the_colon_is_ignored(client, api_key):
    assert client.get("/v1/metrics", **basic(f"{api_key}:anything")).status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Basic " + base64.b64encode(b"lp_wrong-key").decode(),
        "Basic " + base64.b64encode(b":lp_wrong-key").decode(),
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"\xff\xfe").decode(),
        "Basic",
        "Digest abc",
    ],
)
def test_a_missing_or_wrong_key_is_401(client, api_key, header):
    headers = {"HTTP_AUTHORIZATION": header} if header else {}

    response = client.get("/v1/people", **headers)

    assert_error(response, 401)
    assert response["WWW-Authenticate"].startswith("Basic")


def test_a_bearer_token_is_refused_on_v1(client, api_key):
    # Our own /api/v1/ takes Bearer tokens; Delighted's clients always send Basic.
    response = client.get("/v1/people", HTTP_AUTHORIZATION=f"Bearer {api_key}")

    assert_error(response, 401)


def test_a_revoked_key_is_401(client):
    api_key, raw_key = api_key_create(name="Old")
    api_key_revoke(api_key=api_key)

    assert_error(client.get("/v1/metrics", **basic(raw_key)), 401)


def test_a_key_holding_a_nul_byte_is_401(client, api_key):
    for credentials in ("\x00", api_key[:11] + "\x00", api_key + "\x00"):
        assert_error(client.get("/v1/people", **basic(credentials)), 401)


def test_the_key_is_checked_before_the_body_is_read(client, touchpoint):
    response = client.post("/v1/people", "not json", content_type="application/json", **basic("lp_wrong"))

    assert_error(response, 401)
    assert not Customer.objects.exists()


# --- Paths -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".json"])
def test_every_path_works_with_and_without_json(client, auth, touchpoint, suffix):
    answer = ResponseFactory(invitation=InvitationFactory(touchpoint=touchpoint))

    for path in ("people", "survey_responses", f"survey_responses/{answer.pk}", "metrics", "unsubscribes", "bounces"):
        response = client.get(f"/v1/{path}{suffix}", **auth)
        assert response.status_code == 200, (path, response.content)
        assert response["Content-Type"] == "application/json"
    created = post_json(client, f"/v1/people{suffix}", {"email": f"ann{suffix}@example.com", "send": False}, auth)
    assert created.status_code == 200
    pending = client.delete(f"/v1/people/ann{suffix}@example.com/survey_requests/pending{suffix}", **auth)
    assert pending.status_code == 200
    erased = client.delete(f"/v1/people/email:ann{suffix}@example.com{suffix}", **auth)
    assert (erased.status_code, erased.json()) == (202, {"ok": True})


# --- People: create ----------------------------------------------------------------------


def test_a_json_post_creates_a_person_with_delighteds_fields(client, auth, touchpoint):
    response = post_json(
        client, "/v1/people", {"email": "ann@example.com", "name": "Ann", "phone_number": "+4930123", "delay": 60}, auth
    )

    assert response.status_code == 200
    body = response.json()
    customer = Customer.objects.get()
    assert body["id"] == str(customer.pk)
    assert (body["email"], body["name"], body["phone_number"]) == ("ann@example.com", "Ann", "+4930123")
    assert body["created_at"] == int(customer.created_at.timestamp())
    assert body["survey_scheduled_at"] == int(Invitation.objects.get().send_after.timestamp())


def test_a_form_encoded_post_creates_a_person_with_properties(client, auth, touchpoint):
    response = client.post(
        "/v1/people",
        {"email": "ann@example.com", "name": "Ann", "properties[plan]": "pro", "properties[order]": "A-7", "send": "false"},
        **auth,
    )

    assert response.status_code == 200, response.content
    assert response.json()["properties"] == {"plan": "pro", "order": "A-7"}
    assert "survey_scheduled_at" not in response.json()
    assert not Invitation.objects.exists()


def test_form_encoded_properties_stay_on_the_invitation(client, auth, touchpoint):
    client.post("/v1/people", {"email": "ann@example.com", "properties[plan]": "pro", "delay": "30"}, **auth)

    assert Invitation.objects.get().properties == {"plan": "pro"}


def test_email_update_gives_the_person_a_new_address(client, auth, touchpoint):
    CustomerFactory(email="old@example.com")

    response = post_json(
        client, "/v1/people", {"email": "old@example.com", "email_update": "new@example.com", "send": False}, auth
    )

    assert response.json()["email"] == "new@example.com"
    assert list(Customer.objects.values_list("email", flat=True)) == ["new@example.com"]


def test_email_update_to_an_address_taken_by_someone_else_is_422(client, auth, touchpoint):
    CustomerFactory(email="old@example.com")
    CustomerFactory(email="taken@example.com")

    response = post_json(
        client, "/v1/people", {"email": "old@example.com", "email_update": "taken@example.com", "send": False}, auth
    )

    assert_error(response, 422)


def test_a_person_without_any_touchpoint_to_survey_about_is_422(client, auth):
    assert_error(post_json(client, "/v1/people", {"email": "ann@example.com"}, auth), 422)


# --- People: list and the Link header ----------------------------------------------------


def test_people_are_paged_with_an_absolute_link_header_and_a_cursor(client, auth):
    people = [CustomerFactory(email=f"p{n}@example.com") for n in range(5)]

    first = client.get("/v1/people", {"per_page": 2}, **auth)

    assert [p["email"] for p in first.json()] == ["p0@example.com", "p1@example.com"]
    match = re.fullmatch(r'<([^>]+)>; rel="next"', first["Link"])
    assert match, first["Link"]
    next_url = urlsplit(match.group(1))
    assert (next_url.scheme, next_url.netloc, next_url.path) == ("http", "testserver", "/v1/people")
    query = parse_qs(next_url.query)
    assert query["per_page"] == ["2"] and query["page_info"][0]

    second = client.get(f"{next_url.path}?{next_url.query}", **auth)
    third_url = urlsplit(re.fullmatch(r'<([^>]+)>; rel="next"', second["Link"]).group(1))
    third = client.get(f"{third_url.path}?{third_url.query}", **auth)

    assert [p["email"] for p in second.json()] == ["p2@example.com", "p3@example.com"]
    assert [p["id"] for p in third.json()] == [str(people[4].pk)]
    assert not third.has_header("Link")


def test_the_link_header_keeps_the_other_filters(client, auth):
    for n in range(3):
        CustomerFactory(email=f"p{n}@example.com")
    since = int(Customer.objects.order_by("pk").first().created_at.timestamp()) - 10

    first = client.get("/v1/people.json", {"per_page": 1, "since": since}, **auth)

    query = parse_qs(urlsplit(re.fullmatch(r'<([^>]+)>; rel="next"', first["Link"]).group(1)).query)
    assert query["since"] == [str(since)]
    assert urlsplit(re.fullmatch(r'<([^>]+)>; rel="next"', first["Link"]).group(1)).path == "/v1/people.json"


def test_a_cursor_that_was_not_given_out_is_422(client, auth):
    for cursor in ("!!!", "bm90LWEtbnVtYmVy", "%00"):
        assert_error(client.get(f"/v1/people?page_info={cursor}", **auth), 422)


def test_people_can_be_looked_up_by_email(client, auth):
    CustomerFactory(email="ann@example.com")
    CustomerFactory(email="bob@example.com")

    response = client.get("/v1/people", {"email": "BOB@example.com"}, **auth)

    assert [p["email"] for p in response.json()] == ["bob@example.com"]


# --- Wrong methods -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("put", "/v1/people", "GET, POST"),
        ("delete", "/v1/people.json", "GET, POST"),
        ("get", "/v1/people/1", "DELETE"),
        ("post", "/v1/people/email:ann@example.com", "DELETE"),
        ("get", "/v1/people/ann@example.com/survey_requests/pending", "DELETE"),
        ("delete", "/v1/survey_responses", "GET, POST"),
        ("post", "/v1/survey_responses/1", "GET, PUT"),
        ("delete", "/v1/survey_responses/1.json", "GET, PUT"),
        ("post", "/v1/metrics", "GET"),
        ("delete", "/v1/unsubscribes", "GET, POST"),
        ("post", "/v1/bounces", "GET"),
    ],
)
def test_a_wrong_method_is_405_with_allow(client, auth, method, path, allowed):
    response = getattr(client, method)(path, **auth)

    assert_error(response, 405)
    assert response["Allow"] == allowed


# --- Validation errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email"},
        {"email": ""},
        {"name": "No email"},
        {"email": ["ann@example.com"]},
        {"email": "ann@example.com", "email_update": "nope"},
        {"email": "ann@example.com", "delay": "soon"},
        {"email": "ann@example.com", "delay": -5},
        {"email": "ann@example.com", "properties": "plan=pro"},
        {"email": "ann@example.com", "properties": {"blob": "x" * 20000}},
        {"email": "ann@example.com", "name": "Ann\r\nBcc: victim@example.com"},
        {"email": "ann@example.com", "name": "x" * 201},
    ],
)
def test_an_invalid_person_is_422(client, auth, touchpoint, body):
    assert_error(post_json(client, "/v1/people", body, auth), 422)
    assert not Invitation.objects.exists()


@pytest.mark.parametrize("raw", ['{"email": "ann@example.com"', "{'email': 1}", b"\xff\xfe{}", "[1, 2]", '"ann"', "17"])
def test_malformed_or_non_object_json_is_422(client, auth, touchpoint, raw):
    assert_error(post_json(client, "/v1/people", raw, auth), 422)
    assert_error(post_json(client, "/v1/survey_responses", raw, auth), 422)


@pytest.mark.parametrize("since", ["yesterday", "2024-01-01", "-1", "1.5", "99999999999999999999"])
def test_a_bad_since_is_422(client, auth, since):
    for path in ("/v1/people", "/v1/survey_responses", "/v1/metrics", "/v1/unsubscribes", "/v1/bounces"):
        assert_error(client.get(path, {"since": since}, **auth), 422)


@pytest.mark.parametrize(
    "body",
    [
        {"score": 9},
        {"person": "abc", "score": 9},
        {"person": 1, "score": 11},
        {"person": 1, "score": -1},
        {"person": 1, "score": "nine"},
        {"person": 1, "score": 8.5},
        {"person": 1, "score": True},
        {"person": 1},
        {"person": 1, "score": 9, "comment": ["x"]},
        {"person": 1, "score": 9, "comment": "x" * 2001},
        {"person": 1, "score": 9, "person_properties": ["x"]},
        {"person": 999999, "score": 9},
    ],
)
def test_an_invalid_survey_response_is_422(client, auth, touchpoint, body):
    CustomerFactory(pk=1)

    assert_error(post_json(client, "/v1/survey_responses", body, auth), 422)
    assert not Response.objects.exists()


def test_an_invalid_order_is_422(client, auth):
    assert_error(client.get("/v1/survey_responses", {"order": "created_at; DROP TABLE x"}, **auth), 422)


def test_a_survey_response_put_with_a_bad_score_is_422(client, auth, touchpoint):
    answer = ResponseFactory(invitation=InvitationFactory(touchpoint=touchpoint), score=9)

    response = client.put(f"/v1/survey_responses/{answer.pk}", json.dumps({"score": 12}), content_type="application/json", **auth)

    assert_error(response, 422)
    answer.refresh_from_db()
    assert answer.score == 9


def test_a_survey_response_put_changes_score_and_comment(client, auth, touchpoint):
    answer = ResponseFactory(invitation=InvitationFactory(touchpoint=touchpoint), score=9, reason="Nice")

    response = client.put(
        f"/v1/survey_responses/{answer.pk}.json", json.dumps({"score": 6, "comment": "Meh"}),
        content_type="application/json", **auth,
    )

    assert response.status_code == 200
    assert (response.json()["score"], response.json()["comment"]) == (6, "Meh")
    answer.refresh_from_db()
    assert (answer.score, answer.category, answer.reason) == (6, "detractor", "Meh")


def test_an_unsubscribe_needs_a_valid_person_email(client, auth):
    assert_error(post_json(client, "/v1/unsubscribes", {}, auth), 422)
    assert_error(post_json(client, "/v1/unsubscribes", {"person_email": "nope"}, auth), 422)


def test_an_oversized_body_is_refused(client, auth, touchpoint):
    response = post_json(client, "/v1/people", {"email": "ann@example.com", "name": "x" * 70000}, auth)

    assert_error(response, 413)


# --- Unknown ids -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/people/999999",
        "/v1/people/email:nobody@example.com",
        "/v1/people/phone_number:+15550000000",
        "/v1/people/nobody@example.com",
        "/v1/people/email:",
        "/v1/people/nobody@example.com/survey_requests/pending",
    ],
)
def test_deleting_an_unknown_person_is_404(client, auth, path):
    CustomerFactory(email="ann@example.com")

    assert_error(client.delete(path, **auth), 404)
    assert Customer.objects.get().erased_at is None


def test_an_unknown_survey_response_is_404(client, auth):
    assert_error(client.get("/v1/survey_responses/999999", **auth), 404)
    assert_error(
        client.put("/v1/survey_responses/999999.json", "{}", content_type="application/json", **auth), 404
    )
    assert_error(client.get("/v1/survey_responses/999999999999999999", **auth), 404)


def test_an_erased_persons_response_is_404(client, auth, touchpoint):
    answer = ResponseFactory(invitation=InvitationFactory(touchpoint=touchpoint))
    customer_erase(customer=answer.customer)

    assert_error(client.get(f"/v1/survey_responses/{answer.pk}", **auth), 404)


# --- Hostile input never answers 500 ------------------------------------------------------------


@pytest.fixture
def world(touchpoint):
    moment = timezone.now()
    answer = ResponseFactory(
        invitation=InvitationFactory(touchpoint=touchpoint), score=10, reason="Great", created_at=moment, updated_at=moment
    )
    return {"response": answer, "customer": answer.customer}


HOSTILE_QUERIES = [
    {"since": "\x00"},
    {"per_page": "1000000000"},
    {"per_page": "-1"},
    {"per_page": "0"},
    {"page": "-3"},
    {"page": "0"},
    {"page": "99999999999999999999999999"},
    {"page": "abc"},
    {"trend": "' OR 1=1 --"},
    {"trend": "1 OR 1=1"},
    {"trend": "\x00"},
    {"trend": "9" * 40},
    {"trend": "²"},  # a digit to str.isdigit, not to int()
    {"trend": "１２"},
    {"person_email": "' OR ''='"},
    {"person_email": "a\x00@example.com"},
    {"person_id": "99999999999999999999999999"},
    {"person_id": "\x00"},
    {"email": "\x00"},
    {"phone_number": "\x00"},
    {"order": "\x00"},
    {"expand[]": "\x00"},
    {"page_info": "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODk"},  # a cursor of 39 digits
    {"updated_since": "1e10"},
]


@pytest.mark.parametrize("query", HOSTILE_QUERIES, ids=lambda q: repr(q)[:40])
def test_hostile_queries_never_answer_500(client, auth, world, query):
    for path in ("/v1/people", "/v1/survey_responses", "/v1/metrics", "/v1/unsubscribes", "/v1/bounces"):
        response = client.get(path, query, **auth)
        assert response.status_code in (200, 422), (path, query, response.status_code, response.content)
        assert response["Content-Type"] == "application/json"


def test_trend_injection_matches_nothing(client, auth, world):
    responses = client.get("/v1/survey_responses", {"trend": "' OR 1=1 --"}, **auth)
    metrics = client.get("/v1/metrics", {"trend": "' OR 1=1 --"}, **auth)

    assert responses.json() == []
    assert metrics.json()["response_count"] == 0


def test_a_huge_page_is_empty_not_an_error(client, auth, world):
    response = client.get("/v1/survey_responses", {"page": "99999999999999999999"}, **auth)

    assert (response.status_code, response.json()) == (200, [])


HOSTILE_BODIES = [
    {"email": "ann\x00@example.com"},
    {"email": "ann@example.com", "name": "Ann\x00"},
    {"email": "ann@example.com", "phone_number": "\x00"},
    {"email": "ann@example.com", "properties": {"plan": "pro\x00"}},
    {"email": "ann@example.com", "properties": {"pl\x00an": "pro"}},
    {"email": "ann@example.com", "properties": {"touchpoint": "\x00"}},
    {"email": "ann@example.com", "properties": {"touchpoint": ["web"]}},
    {"email": "ann@example.com", "properties": {"locale": {"x": 1}}, "send": False},
    {"email": "ann@example.com", "properties": {"question_product_name": "<script>alert(1)</script>"}},
    {"email": "ann@example.com", "delay": 10**30},
    {"email": "ann@example.com", "delay": 1e308},
    {"email": "ann@example.com", "send": {"no": 1}},
    {"email": "ann@example.com", "last_sent_at": "\x00"},
    {"email": "a" * 300 + "@example.com"},
    {"email": "ann@example.com", "email_update": "b\x00@example.com"},
]


@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=lambda b: repr(b)[:50])
def test_hostile_people_bodies_never_answer_500(client, auth, touchpoint, body):
    response = post_json(client, "/v1/people", body, auth)

    assert response.status_code in (200, 422), response.content
    assert response["Content-Type"] == "application/json"


HOSTILE_RESPONSE_BODIES = [
    {"person": "\x00", "score": 9},
    {"person": 10**30, "score": 9},
    {"person": "PERSON", "score": 9, "comment": "Nice\x00"},
    {"person": "PERSON", "score": 9, "person_properties": {"plan": "\x00"}},
    {"person": "PERSON", "score": 9, "person_properties": {"touchpoint": "\x00"}},
    {"person": "PERSON", "score": 10**30},
    {"person": "PERSON", "score": "9\x00"},
    {"person": "PERSON", "score": 9, "expand": "\x00"},
    {"person": "PERSON", "score": 9, "expand": 5},
    {"person": "PERSON", "score": 9, "expand": None},
]


@pytest.mark.parametrize("body", HOSTILE_RESPONSE_BODIES, ids=lambda b: repr(b)[:50])
def test_hostile_survey_response_bodies_never_answer_500(client, auth, world, body):
    body = {key: str(world["customer"].pk) if value == "PERSON" else value for key, value in body.items()}

    created = post_json(client, "/v1/survey_responses", body, auth)
    updated = client.put(
        f"/v1/survey_responses/{world['response'].pk}", json.dumps(body), content_type="application/json", **auth
    )

    assert created.status_code in (201, 422), created.content
    assert updated.status_code in (200, 422), updated.content


@pytest.mark.parametrize(
    "path",
    [
        "/v1/people/%00",
        "/v1/people/email:%00",
        "/v1/people/phone_number:%00",
        "/v1/people/email:a%00b@example.com",
        "/v1/people/99999999999999999999999999",
        "/v1/people/%C2%B2",  # "²": a digit to str.isdigit, not to int()
        "/v1/people/%00/survey_requests/pending",
        "/v1/people/' OR 1=1 --",
    ],
)
def test_hostile_person_paths_never_answer_500(client, auth, world, path):
    response = client.delete(path, **auth)

    assert_error(response, 404)
    assert Customer.objects.get().erased_at is None


@pytest.mark.parametrize(
    "raw",
    [
        '{"email": "ann@example.com", "name": "\\ud800"}',
        '{"email": "ann@example.com", "properties": {"plan": "\\udfff"}}',
        '{"email": "ann@example.com", "delay": NaN}',
        '{"email": "ann@example.com", "delay": 1e999}',
        '{"email": "ann@example.com", "properties": ' + "[" * 5000 + "]" * 5000 + "}",
    ],
    ids=["lone-surrogate", "lone-surrogate-property", "nan", "infinity", "deep-nesting"],
)
def test_json_no_column_can_hold_is_422_not_500(client, auth, touchpoint, raw):
    assert_error(post_json(client, "/v1/people", raw, auth), 422)
    assert not Customer.objects.exists()


def test_the_nul_byte_in_a_json_string_escape_is_refused_not_stored(client, auth, touchpoint):
    raw = '{"email": "ann@example.com", "name": "Ann\\u0000Lee"}'

    assert_error(post_json(client, "/v1/people", raw, auth), 422)
    assert not Customer.objects.exists()


def test_answers_carry_unix_timestamps(client, auth, world):
    [item] = client.get("/v1/survey_responses", **auth).json()

    assert item["created_at"] == int(world["response"].created_at.timestamp())
    assert abs(item["created_at"] - timezone.now().timestamp()) < 60
    assert item["updated_at"] is None


def test_survey_responses_can_be_ordered_by_last_update(client, auth, touchpoint):
    moment = timezone.now() - timedelta(days=1)
    first, second = (
        ResponseFactory(invitation=InvitationFactory(touchpoint=touchpoint), created_at=moment, updated_at=moment)
        for _ in range(2)
    )
    client.put(f"/v1/survey_responses/{first.pk}", json.dumps({"score": 4}), content_type="application/json", **auth)

    newest_update_first = client.get("/v1/survey_responses", {"order": "desc:updated_at"}, **auth).json()
    oldest_update_first = client.get("/v1/survey_responses", {"order": "asc:updated_at"}, **auth).json()

    assert [item["id"] for item in newest_update_first] == [str(first.pk), str(second.pk)]
    assert [item["id"] for item in oldest_update_first] == [str(second.pk), str(first.pk)]


@pytest.mark.django_db
def test_a_form_encoded_put_updates_the_survey_response(client, auth):
    response = ResponseFactory(score=9)

    answer = client.put(
        f"/v1/survey_responses/{response.pk}.json",
        "score=4&comment=Slow+delivery",
        content_type="application/x-www-form-urlencoded",
        **auth,
    )

    assert answer.status_code == 200
    assert (answer.json()["score"], answer.json()["comment"]) == (4, "Slow delivery")
    response.refresh_from_db()
    assert (response.score, response.category, response.reason) == (4, "detractor", "Slow delivery")


@pytest.mark.django_db
def test_last_sent_at_counts_for_the_cooldown(client, auth, touchpoint):
    touchpoint.cooldown_days = 90
    touchpoint.save()
    week_ago = int((timezone.now() - timedelta(days=7)).timestamp())

    answer = post_json(
        client, "/v1/people.json", {"email": "sent.elsewhere@example.com", "last_sent_at": week_ago}, auth
    )

    assert answer.status_code == 200
    body = answer.json()
    assert "survey_scheduled_at" not in body and body["survey_skipped"] == "cooldown"
    assert not Invitation.objects.filter(customer__email="sent.elsewhere@example.com").exists()
    listed = client.get("/v1/people.json", {"email": "sent.elsewhere@example.com"}, **auth).json()
    assert listed[0]["last_sent_at"] == week_ago


def test_without_a_marked_default_the_only_touchpoint_is_used_and_with_several_one_must_be_named(
    client, api_key, touchpoint
):
    from surveys.models import Invitation, Touchpoint

    auth = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()}
    Touchpoint.objects.update(is_api_default=False)
    only = Touchpoint.objects.get()

    first = client.post("/v1/people.json", {"email": "ann@example.com"}, **auth)
    TouchpointFactory(name="In store", slug="store")
    second = client.post("/v1/people.json", {"email": "bob@example.com"}, **auth)

    assert first.status_code == 200
    assert Invitation.objects.get(customer__email="ann@example.com").touchpoint == only
    assert second.status_code == 422
    assert "properties[touchpoint]" in second.json()["message"]
    assert not Invitation.objects.filter(customer__email="bob@example.com").exists()


def test_survey_responses_are_found_by_any_spelling_of_the_persons_address(client, api_key, touchpoint):
    zoe = CustomerFactory(email="zoe@xn--exmple-cua.org")
    ResponseFactory(invitation=InvitationFactory(customer=zoe, touchpoint=touchpoint), score=9)
    ResponseFactory(invitation=InvitationFactory(touchpoint=touchpoint), score=3)
    auth = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()}

    found = client.get("/v1/survey_responses.json", {"person_email": " Zoe@Exämple.ORG"}, **auth)

    assert found.status_code == 200
    assert [item["person"] for item in found.json()] == [str(zoe.pk)]
