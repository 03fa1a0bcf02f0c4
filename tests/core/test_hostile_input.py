"""Hostile input: whatever customers and integrators send, the answer is a 2xx/4xx, never a 500 or a partial write.

Property-based tests (Hypothesis) over the survey form, the JSON API, the
Delighted-compatible API and the CSV importer, plus the places customer text
is shown that the view, admin and email modules do not already check
(tests/test_views_survey.py, test_admin.py, test_views_dashboard.py and
test_services_cases.py cover the rest).

Each property builds its own rows inside the example, so the examples share
the test's transaction without depending on each other.
"""

import base64
import csv
import email
import email.policy
import io
import json
import re
import string
from urllib.parse import quote, urlencode

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from surveys.customers.services import customer_unsubscribe
from surveys.followups.services import case_alert_send
from surveys.imports import customers as imports
from surveys.imports import reader as csv_reader
from surveys.invitations.services import invitation_request, invitations_enqueue
from surveys.models import Customer, FollowUpCase, Invitation, Response, Touchpoint
from surveys.promoters.services import coupon_issue
from surveys.responses.services import response_submit
from surveys.web.dashboard import _FORMULA_STARTS

from ..factories import CustomerFactory, InvitationFactory, ResponseFactory, TouchpointFactory

pytestmark = pytest.mark.django_db

# Modest example counts: the whole module runs in well under a minute.
PROPERTY = settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(PROPERTY, max_examples=40)

CLEAN_STATUSES = {200, 201, 202, 204, 302, 400, 401, 404, 405, 409, 410, 413, 415, 422, 429}
HEADER_INJECTIONS = [
    "Jane\r\nBcc: victim@example.net",
    "Jane\nBcc: victim@example.net",
    "Jane\rBcc: victim@example.net",
    "=?utf-8?q?Jane=0D=0ABcc=3A_victim=40example=2Enet?=",
    "Jane%0d%0aBcc:%20victim@example.net",
    "Jane\u2028Bcc: victim@example.net",
    "Jane\x85Bcc: victim@example.net",
    "Jane\x00Bcc: victim@example.net",
]
EMAIL_INJECTIONS = [
    "jane@example.com\r\nBcc: victim@example.net",
    "jane@example.com\nBcc: victim@example.net",
    "jane@example.com,victim@example.net",
    "jane@example.com>, <victim@example.net",
    "Jane <jane@example.com>",
    '"jane\r\nbcc: victim@example.net"@example.com',
    "jane@example.com\x00",
    "jane@exa\u2028mple.com",
]
# Text that has broken parsers, databases and templates before.
ODD_TEXT = [
    "",
    " ",
    "\x00",
    "\x00" * 3,
    "a\x00b",
    "\ufeff",
    "\u202e\u202d reversed",
    "\u200b\u200d\u2060",
    "Z\u0351\u0352\u0353\u0354\u0355\u0356\u0357",  # combining marks
    "👩‍👩‍👧‍👦🏳️‍🌈",
    "\U0010ffff\U000e0001",
    "\ud7ff\ue000\uffff\ufffe",
    "١٠",  # Arabic-Indic ten
    "１０",  # fullwidth ten
    "<script>alert(1)</script>",
    "'; DROP TABLE surveys_response; --",
    "{{ 7|add:7 }}{% now 'Y' %}",
    "\r\n\r\n",
    "\t\v\f",
    "%00%0d%0a",
    "=cmd|' /C calc'!A0",
]


def odd_text(max_size: int = 200) -> st.SearchStrategy[str]:
    """Unicode text (never lone surrogates: they cannot reach us as UTF-8), mixed with known troublemakers."""
    return st.one_of(
        st.text(max_size=max_size),
        st.sampled_from(ODD_TEXT),
        st.builds(lambda a, b, c: a + b + c, st.text(max_size=20), st.sampled_from(ODD_TEXT), st.text(max_size=20)),
    )


# --- The survey form -------------------------------------------------------------------

VALID_SCORES = [str(score) for score in range(11)]

score_strings = st.one_of(
    st.sampled_from(VALID_SCORES),
    st.integers(min_value=-(10**6), max_value=10**6).map(str),
    st.integers(min_value=-(10**400), max_value=10**400).map(str),  # past int()'s 4300-digit limit
    st.floats().map(repr),  # 9.0, nan, inf, -0.0, 1e+300
    st.text(alphabet=st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=3),  # ٩, ², Ⅻ, ½
    st.sampled_from(["", " ", " 9", "9 ", "09", "+9", "-0", "0x9", "9.0", "1e1", "10\x00", "true", "null", "[9]",
                     "١٠", "１０", "⑩", "²", "½", "9" * 5000]),
    st.text(max_size=30),
)


def reasons() -> st.SearchStrategy[str]:
    return st.one_of(
        odd_text(300),
        # Around the 2,000-character limit, counted after stripping.
        st.builds(lambda char, n, pad: pad + char * n + pad, st.characters(codec="utf-8", exclude_characters="\x00"),
                  st.integers(1995, 2005), st.sampled_from(["", " ", "\n"])),
    )


_NOT_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _survey_is_valid(score: str, reason: str) -> bool:
    # A reason may hold tabs and line breaks; NUL and the other control characters are refused.
    stripped = reason.strip()
    return score in VALID_SCORES and len(stripped) <= 2000 and not _NOT_IN_TEXT.search(stripped)


def _answers_of(invitation: Invitation) -> list[Response]:
    return list(Response.objects.filter(invitation=invitation))


@PROPERTY
@given(score=score_strings, reason=reasons(), encoding=st.sampled_from(["multipart", "urlencoded"]))
@example(score="10", reason="x" * 2000, encoding="multipart")
@example(score="10", reason="x" * 2001, encoding="urlencoded")
@example(score="0", reason=" \n" + "é" * 2000 + "\n ", encoding="multipart")
@example(score="7", reason="fine\x00", encoding="urlencoded")
@example(score="９", reason="", encoding="multipart")
def test_the_survey_form_records_one_answer_for_valid_input_and_nothing_otherwise(
    client, customer, touchpoint, score, reason, encoding
):
    invitation = InvitationFactory(customer=customer, touchpoint=touchpoint)
    url = f"/s/{invitation.token}/"
    if encoding == "multipart":
        response = client.post(url, {"score": score, "reason": reason})
    else:
        body = urlencode({"score": score, "reason": reason})
        response = client.post(url, body, content_type="application/x-www-form-urlencoded")

    assert response.status_code in {200, 302, 400, 413, 429}, response.status_code
    answers = _answers_of(invitation)
    if _survey_is_valid(score, reason):
        assert response.status_code == 302
        assert [(a.score, a.reason) for a in answers] == [(int(score), reason.strip())]
    else:
        assert answers == []
        if response.status_code == 200:
            page = response.content.decode()
            assert 'class="invalid-feedback' in page or "Please choose a score" in page or "at most" in page


@FEW
@given(
    content_type=st.sampled_from([
        "application/json",
        "text/plain",
        "text/xml",
        "application/octet-stream",
        "multipart/form-data",  # no boundary
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=xyz",
        "application/x-www-form-urlencoded; charset=utf-16",
        "application/x-www-form-urlencoded; charset=no-such-charset",
        "",
    ]),
    body=st.one_of(
        st.binary(max_size=300),
        st.just(b"score=9&reason=great"),
        st.just(b'{"score": 9, "reason": "great"}'),
        st.just(b"--xyz\r\nContent-Disposition: form-data; name=\"score\"\r\n\r\n9\r\n--xyz--\r\n"),
        st.just(b"score=%ED%A0%80&reason=%FF%FE%00"),
    ),
)
def test_the_survey_form_never_breaks_on_a_body_of_the_wrong_type(client, customer, touchpoint, content_type, body):
    invitation = InvitationFactory(customer=customer, touchpoint=touchpoint)

    response = client.generic("POST", f"/s/{invitation.token}/", body, content_type=content_type)

    assert response.status_code in {200, 302, 400, 413, 415}, response.status_code
    answers = _answers_of(invitation)
    assert len(answers) <= 1
    if response.status_code != 302:
        assert answers == []


def test_an_oversized_survey_post_is_refused_and_records_nothing(client, invitation):
    for size in (64 * 1024, 2 * 1024 * 1024):
        response = client.post(f"/s/{invitation.token}/", {"score": "9", "reason": "x" * size})
        assert response.status_code in {200, 400, 413}
    assert _answers_of(invitation) == []


@FEW
@given(preselected=score_strings)
def test_a_survey_link_with_any_score_parameter_shows_the_page_and_records_nothing(
    client, customer, touchpoint, preselected
):
    invitation = InvitationFactory(customer=customer, touchpoint=touchpoint)

    response = client.get(f"/s/{invitation.token}/", {"score": preselected})

    assert response.status_code == 200
    assert _answers_of(invitation) == []


@FEW
@given(token=odd_text(80))
def test_any_token_in_the_survey_and_unsubscribe_urls_answers_cleanly(client, token):
    for prefix in ("/s/", "/u/"):
        get = client.get(f"{prefix}{quote(token, safe='')}/")
        post = client.post(f"{prefix}{quote(token, safe='')}/", {"score": "9"})
        assert get.status_code in {200, 301, 404}
        assert post.status_code in {200, 301, 404}
    assert not Response.objects.exists()


# --- POST /api/v1/invitations ----------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and ±Infinity too: Python's json module writes and reads them
    odd_text(60),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(odd_text(12), children, max_size=4),
    max_leaves=10,
)


def invitation_bodies() -> st.SearchStrategy:
    fields = {
        "touchpoint": st.one_of(st.just("delivery"), st.just("no-such-slug"), json_values, odd_text(70)),
        "email": st.one_of(st.just("ann@example.com"), st.emails(), st.sampled_from(EMAIL_INJECTIONS), json_values),
        "name": st.one_of(st.just("Ann Lee"), odd_text(210), st.sampled_from(HEADER_INJECTIONS), json_values),
        "external_id": st.one_of(st.just("crm-1"), odd_text(130), st.sampled_from(HEADER_INJECTIONS), json_values),
    }
    objects = st.fixed_dictionaries({}, optional=fields).flatmap(
        lambda known: st.dictionaries(odd_text(15), json_values, max_size=2).map(lambda extra: {**extra, **known})
    )
    return st.one_of(objects, objects, objects, json_values)


def _assert_api_error(response) -> dict:
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    return body


def _api_counts() -> tuple[int, int]:
    return Customer.objects.count(), Invitation.objects.count()


def _assert_invitation_answer(response, before: tuple[int, int]) -> None:
    assert response.status_code in CLEAN_STATUSES, (response.status_code, response.content[:500])
    if response.status_code >= 400:
        _assert_api_error(response)
        assert _api_counts() == before, "a refused request wrote something"
    elif response.status_code == 201:
        invitation = Invitation.objects.select_related("customer").get(pk=response.json()["id"])
        for value in (invitation.customer.name, invitation.customer.email, invitation.customer.external_id or ""):
            assert not re.search(r"[\x00-\x1f\x7f]", value), value
    else:
        assert response.json()["status"] == "skipped"
        assert response.json()["reason"] in {"unsubscribed", "inactive_touchpoint", "cooldown"}


@PROPERTY
@given(body=invitation_bodies(), idempotency_key=st.one_of(st.none(), odd_text(300)))
@example(body={"touchpoint": "delivery", "email": "ann@example.com", "name": HEADER_INJECTIONS[0]},
         idempotency_key=None)
@example(body={"touchpoint": "delivery", "email": EMAIL_INJECTIONS[0], "name": "Ann"}, idempotency_key=None)
@example(body={"touchpoint": "delivery", "email": "ann@example.com", "external_id": "a\r\nb"}, idempotency_key=None)
@example(body={"touchpoint": "delivery", "email": "ann@example.com"}, idempotency_key="key\x00")
@example(body={"touchpoint": "delivery", "email": "ann@example.com", "name": float("inf")}, idempotency_key=None)
def test_the_invitations_api_answers_any_json_cleanly_and_writes_nothing_when_it_refuses(
    api_client, touchpoint, body, idempotency_key
):
    before = _api_counts()
    headers = {} if idempotency_key is None else {"HTTP_IDEMPOTENCY_KEY": idempotency_key}

    response = api_client.post("/api/v1/invitations", json.dumps(body), content_type="application/json", **headers)

    _assert_invitation_answer(response, before)


# JSON that is well-formed UTF-8 yet decodes to what no database column holds.
AWKWARD_JSON = [
    b'{"touchpoint": "delivery", "email": "ann@example.com", "name": "\\ud800"}',
    b'{"touchpoint": "delivery", "email": "ann@example.com", "name": "Ann \\udfff Lee"}',
    b'{"touchpoint": "delivery", "email": "ann@example.com", "external_id": "\\udbff"}',
    b'{"touchpoint": "delivery", "email": "ann@example.com", "name": "\\u0000"}',
    b'{"touchpoint": "delivery", "email": "ann@example.com", "name": NaN}',
    b'{"touchpoint": "delivery", "email": "ann@example.com", "name": -Infinity}',
    b'{"touchpoint": "delivery", "email": "ann@example.com", "name": 1e999999}',
    b'{"touchpoint": "delivery", "email": "ann@example.com", "name": ' + b"9" * 5000 + b"}",
    b'{"touchpoint": "delivery", "email": "ann@example.com", "touchpoint": "other"}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b"\xef\xbb\xbf{}",
    b"[" * 30_000 + b"]" * 30_000,
    b'{"a":' * 900 + b"1" + b"}" * 900,
    b'{"properties": ' + b"[" * 950 + b"]" * 950 + b', "person_properties": {"a": ' + b"[" * 950 + b"]" * 950 + b"}}",
    b"\xff\xfe{\x00}\x00",
]


@FEW
@given(body=st.one_of(st.binary(max_size=400), st.sampled_from(AWKWARD_JSON)))
def test_the_invitations_api_answers_malformed_bytes_with_a_json_error(api_client, touchpoint, body):
    before = _api_counts()

    response = api_client.post("/api/v1/invitations", body, content_type="application/json")

    _assert_invitation_answer(response, before)


@pytest.mark.parametrize("body", AWKWARD_JSON, ids=range(len(AWKWARD_JSON)))
def test_the_invitations_api_refuses_json_no_column_can_hold(api_client, touchpoint, body):
    before = _api_counts()

    response = api_client.post("/api/v1/invitations", body, content_type="application/json")

    _assert_invitation_answer(response, before)


@FEW
@given(
    content_type=st.one_of(
        st.sampled_from([
            "text/plain", "text/html", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
            "application/xml", "application/json; charset=latin-1", "application/problem+json", "application/jsonx",
            "image/png", "application/json\r\nX-Evil: 1",
        ]),
        st.text(alphabet=string.printable, max_size=40),
    ),
)
def test_the_invitations_api_answers_any_content_type_cleanly(api_client, touchpoint, content_type):
    before = _api_counts()
    body = json.dumps({"touchpoint": "delivery", "email": "ann@example.com"})

    response = api_client.generic("POST", "/api/v1/invitations", body, content_type=content_type)

    _assert_invitation_answer(response, before)


@pytest.mark.parametrize("size", [64 * 1024 + 1, 2 * 1024 * 1024])
def test_the_invitations_api_refuses_an_oversized_body(api_client, touchpoint, size):
    body = json.dumps({"touchpoint": "delivery", "email": "ann@example.com", "name": "x" * size})

    response = api_client.post("/api/v1/invitations", body, content_type="application/json")

    assert response.status_code == 413
    assert _assert_api_error(response)["error"] == "body_too_large"
    assert not Customer.objects.exists()


@pytest.mark.parametrize("name", HEADER_INJECTIONS)
def test_a_header_injection_in_the_name_never_reaches_a_mail_header(api_client, touchpoint, name):
    response = api_client.post(
        "/api/v1/invitations",
        {"touchpoint": "delivery", "email": "ann@example.com", "name": name},
        content_type="application/json",
    )

    if response.status_code == 201:
        # Accepted only because nothing in it can break a header line; what goes out proves it.
        invitations_enqueue([response.json()["id"]])
        [message] = mail.outbox
        sent = email.message_from_bytes(message.message().as_bytes(), policy=email.policy.default)
        assert message.recipients() == ["ann@example.com"]
        assert [address.addr_spec for address in sent["To"].addresses] == ["ann@example.com"]
        assert sent["Bcc"] is None and sent["Cc"] is None
        assert set(sent.keys()) <= {
            "Content-Type", "MIME-Version", "Subject", "From", "To", "Date", "Message-ID", "List-Unsubscribe",
            "List-Unsubscribe-Post", "Auto-Submitted", "X-Auto-Response-Suppress", "Precedence", "Reply-To",
        }, sent.keys()
    else:
        assert response.status_code == 400
        assert _assert_api_error(response)["error"] == "invalid_request"
        assert not Customer.objects.exists()


# --- The Delighted-compatible API: /v1/people and /v1/survey_responses -------------------


def _basic(raw_key: str) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{raw_key}:".encode()).decode()}


def _assert_delighted_answer(response, *, before: tuple, after: tuple) -> None:
    assert response.status_code in CLEAN_STATUSES, (response.status_code, response.content[:500])
    if response.status_code >= 400:
        body = response.json()
        assert body["status"] == response.status_code and isinstance(body["message"], str), body
        assert after == before, "a refused request wrote something"


def _api_default_touchpoint() -> Touchpoint:
    return Touchpoint.objects.filter(is_api_default=True).first() or TouchpointFactory(is_api_default=True)


def _delighted_counts() -> tuple[int, int, int]:
    return Customer.objects.count(), Invitation.objects.count(), Response.objects.count()


people_bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "email": st.one_of(st.emails(), st.sampled_from(EMAIL_INJECTIONS), json_values),
            "email_update": st.one_of(st.emails(), json_values),
            "name": st.one_of(odd_text(210), st.sampled_from(HEADER_INJECTIONS), json_values),
            "phone_number": st.one_of(odd_text(45), json_values),
            "delay": st.one_of(st.integers(), st.floats(), json_values),
            "send": json_values,
            "properties": st.one_of(
                st.dictionaries(
                    st.sampled_from(["touchpoint", "locale", "question_product_name", "plan"]) | odd_text(10),
                    json_values, max_size=4,
                ),
                json_values,
            ),
        },
    ),
    json_values,
)


@PROPERTY
@given(body=people_bodies)
@example(body={"email": "ann@example.com", "delay": float("inf")})
@example(body={"email": "ann@example.com", "properties": {"plan": float("nan")}})
@example(body={"email": "ann@example.com", "properties": {"touchpoint": "no-such-slug"}})
def test_delighted_people_answers_any_json_cleanly(client, api_key, body):
    _api_default_touchpoint()
    before = _delighted_counts()

    response = client.post("/v1/people.json", json.dumps(body), content_type="application/json", **_basic(api_key))

    _assert_delighted_answer(response, before=before, after=_delighted_counts())


@FEW
@given(query=st.dictionaries(
    st.sampled_from(["per_page", "page_info", "since", "until", "email", "phone_number", "page"]) | odd_text(10),
    odd_text(40), max_size=4,
))
def test_delighted_people_list_answers_any_query_cleanly(client, api_key, query):
    before = _delighted_counts()

    response = client.get("/v1/people.json", query, **_basic(api_key))

    _assert_delighted_answer(response, before=before, after=_delighted_counts())


@PROPERTY
@given(data=st.data())
@example(data=None)
def test_delighted_survey_responses_answers_any_json_cleanly(client, api_key, data):
    touchpoint = _api_default_touchpoint()
    person = CustomerFactory()
    if data is None:  # explicit awkward cases
        bodies = [
            {"person": person.pk, "score": float("inf")},
            {"person": person.pk, "score": float("-inf")},
            {"person": float("inf"), "score": 9},
            {"person": person.pk, "score": 9, "person_properties": {"x": float("nan")}},
            {"person": person.pk, "score": 9, "person_properties": {"touchpoint": touchpoint.slug}},
            {"person": person.pk, "score": 1e300},
            {"person": 2**64, "score": 9},
        ]
    else:
        bodies = [data.draw(st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "person": st.one_of(st.just(person.pk), st.just(str(person.pk)), json_values),
                    "score": st.one_of(st.integers(-3, 13), st.sampled_from(VALID_SCORES), json_values),
                    "comment": st.one_of(odd_text(300), reasons(), json_values),
                    "person_properties": st.one_of(st.dictionaries(odd_text(10), json_values, max_size=3), json_values),
                    "expand": st.one_of(st.just(["person"]), json_values),
                },
            ),
            json_values,
        ))]
    for body in bodies:
        before = _delighted_counts()
        response = client.post(
            "/v1/survey_responses.json", json.dumps(body), content_type="application/json", **_basic(api_key)
        )
        _assert_delighted_answer(response, before=before, after=_delighted_counts())
        if response.status_code == 201:
            answer = Response.objects.get(pk=int(response.json()["id"]))
            assert 0 <= answer.score <= 10 and len(answer.reason) <= 2000 and "\x00" not in answer.reason


@FEW
@given(body=st.one_of(st.binary(max_size=300), st.sampled_from(AWKWARD_JSON)),
       path=st.sampled_from(["/v1/people.json", "/v1/survey_responses.json", "/v1/unsubscribes.json"]))
def test_delighted_answers_malformed_bytes_cleanly(client, api_key, body, path):
    _api_default_touchpoint()
    before = _delighted_counts()

    response = client.post(path, body, content_type="application/json", **_basic(api_key))

    _assert_delighted_answer(response, before=before, after=_delighted_counts())


# --- The CSV importer ---------------------------------------------------------------------

HEADER = "email,name,external_id,phone,locale"


def _import(data: bytes):
    errors: list[str] = []
    try:
        summary = imports.customers_import(binary=io.BytesIO(data), touchpoint=None, on_error=errors.append)
    except imports.ImportFileError as exc:
        assert str(exc).startswith("line 1: "), str(exc)
        return None, errors
    return summary, errors


def _records(data: bytes) -> dict[int, list[str]]:
    """The records as the importer numbers them (line of the record's end; the header is line 1)."""
    text = csv_reader.open_text(io.BytesIO(data))
    header = text.readline()
    reader = csv.reader(text, delimiter=";" if header.count(";") > header.count(",") else ",")
    records = {}
    try:
        while True:
            line = reader.line_num + 2  # where the record starts
            values = next(reader)
            if any(value.strip() for value in values):
                records[line] = values
    except (StopIteration, csv.Error):
        pass
    return records


def _assert_every_row_imported_or_reported(data: bytes) -> None:
    Customer.objects.all().delete()
    summary, errors = _import(data)
    if summary is None:
        assert Customer.objects.count() == 0
        return
    reported = {int(re.match(r"line (\d+): ", message).group(1)) for message in errors}
    assert all(re.fullmatch(r"line \d+: .+", message, re.DOTALL) for message in errors), errors
    assert summary.errors == len(errors)
    # Every row either went in or was reported, once.
    assert summary.created + summary.updated + summary.unchanged == summary.rows - len(reported & set(_records(data)))

    records = _records(data)
    imported_emails = set()
    for line, values in records.items():
        if line not in reported:
            email = values[0].strip()
            imported_emails.add(email.lower())
            customer = Customer.objects.get(email__iexact=email)
            assert customer.name == (values[1].strip() if len(values) > 1 else "")
    assert Customer.objects.count() == len(imported_emails)
    for line in reported & set(records):
        email = records[line][0].strip()
        if email.lower() not in imported_emails and "\x00" not in email and not imports._NOT_UTF8.search(email):
            # A reported row never half-imports its customer.
            assert not Customer.objects.filter(email__iexact=email).exists(), (line, email)


rows = st.lists(
    st.lists(
        st.one_of(
            odd_text(40),
            st.emails(),
            st.sampled_from(EMAIL_INJECTIONS + HEADER_INJECTIONS + ["en", "es", "de", "EN", "xx", "crm-1", "crm-1"]),
            st.builds(lambda n: "x" * n, st.integers(100, 300)),
        ),
        min_size=0,
        max_size=7,
    ),
    max_size=12,
)


@PROPERTY
@given(rows=rows, line_ending=st.sampled_from(["\n", "\r\n", "\r"]), bom=st.booleans())
@example(rows=[["a@example.com", "Ann"], ["A@EXAMPLE.COM", "Dup"], ["b@example.com", "Bob\x00"]],
         line_ending="\n", bom=True)
@example(rows=[["a@example.com", "Ann", "crm-1"], ["b@example.com", "Bob", "crm-1"]], line_ending="\r\n", bom=False)
@example(rows=[["a@example.com", "Ann\u2028Lee"], ["b@example.com", 'Bob "quoted"\nnext line']],
         line_ending="\n", bom=False)
def test_the_importer_imports_or_reports_every_row_of_any_text(rows, line_ending, bom):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=line_ending)
    writer.writerow(HEADER.split(","))
    writer.writerows(rows)
    data = (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode("utf-8")

    _assert_every_row_imported_or_reported(data)


@PROPERTY
@given(data=st.one_of(
    st.binary(max_size=400),
    st.binary(max_size=300).map(lambda tail: (HEADER + "\n").encode() + tail),
    st.binary(max_size=300).map(lambda tail: b"email;name\r\nann@example.com;" + tail),
))
@example(data=HEADER.encode() + b"\nann@example.com,Ann\xff\xfe\nbob@example.com,Bob\n")
@example(data=HEADER.encode() + b"\nann@example.com,\xed\xa0\x80\n")
@example(data=HEADER.encode() + b'\nann@example.com,"' + b"x" * 200_000 + b'"\nbob@example.com,Bob\n')
@example(data=b"\x00\x00\x00")
@example(data=b"email,name,email\n")
@example(data="email,name\n".encode("utf-16"))
def test_the_importer_raises_only_import_file_error_on_any_bytes(data):
    _assert_every_row_imported_or_reported(data)


# --- Customer text is escaped where it is shown (gaps the other modules leave) -------------

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def test_the_promoter_thank_you_page_escapes_the_reason(client, touchpoint):
    invitation = InvitationFactory(touchpoint=touchpoint, customer=CustomerFactory(name=SCRIPT))

    page = client.post(f"/s/{invitation.token}/", {"score": "10", "reason": SCRIPT}, follow=True).content.decode()

    assert SCRIPT not in page
    assert Response.objects.get(invitation=invitation).reason == SCRIPT


def test_the_admin_changelists_of_cases_coupons_referrals_and_skips_escape_customer_text(admin_client):
    touchpoint = TouchpointFactory(alert_recipients="lead@example.com")
    detractor = CustomerFactory(name=SCRIPT, email="mallory@example.com")
    promoter = CustomerFactory(name=SCRIPT, email="trudy@example.com")
    case_response = response_submit(
        invitation=InvitationFactory(touchpoint=touchpoint, customer=detractor), score=1, reason=SCRIPT
    )
    promoter_response = response_submit(
        invitation=InvitationFactory(touchpoint=touchpoint, customer=promoter), score=10, reason=SCRIPT
    )
    coupon = coupon_issue(response=promoter_response)
    customer_unsubscribe(customer=promoter)
    invitation_request(touchpoint=touchpoint, customer=promoter)  # recorded as a skip
    case = case_response.case

    pages = [
        "/admin/surveys/followupcase/",
        f"/admin/surveys/followupcase/{case.pk}/change/",
        "/admin/surveys/coupon/",
        f"/admin/surveys/coupon/{coupon.pk}/change/",
        "/admin/surveys/referrallink/",
        "/admin/surveys/surveyskip/",
        f"/admin/surveys/response/{case_response.pk}/change/",
        "/admin/surveys/response/?q=script",
    ]
    for page_url in pages:
        response = admin_client.get(page_url)
        assert response.status_code == 200, page_url
        assert SCRIPT not in response.content.decode(), page_url
    assert ESCAPED in admin_client.get("/admin/surveys/followupcase/").content.decode()


def test_the_case_alert_email_escapes_the_customers_name_and_email_in_its_html_part(touchpoint):
    touchpoint.alert_recipients = "lead@example.com"
    touchpoint.save()
    customer = CustomerFactory(name=f'{SCRIPT} "Bob" <b>', email="bob+<x>@example.com")
    response = ResponseFactory(invitation__touchpoint=touchpoint, invitation__customer=customer, score=2, reason="ok")
    case = FollowUpCase.objects.create(
        response=response, customer=customer, touchpoint=touchpoint, opened_at=response.created_at,
        due_at=response.created_at,
    )

    assert case_alert_send(case_id=case.pk) == "sent"

    [message] = mail.outbox
    html = next(content for content, mimetype in message.alternatives if mimetype == "text/html")
    assert SCRIPT not in html and "<b>" not in html
    assert ESCAPED in html
    assert "\n" not in message.subject and "\r" not in message.subject
    assert SCRIPT in message.body  # the plain-text part shows it as typed


@FEW
@given(name=odd_text(60), reason=odd_text(200))
@example(name="=HYPERLINK(\"http://evil.example\")", reason="\n=1+1")
@example(name="\u3000=1+1", reason="\t@SUM(A1)")
def test_the_csv_export_neutralises_formulas_in_any_customer_text(client, django_user_model, name, reason):
    name, reason = name.replace("\x00", ""), reason.replace("\x00", "").strip()[:2000]
    manager = django_user_model.objects.filter(username="morgan").first()
    if manager is None:
        manager = django_user_model.objects.create_user("morgan", "morgan@example.com", "a-long-password")
        manager.groups.add(Group.objects.get(name="Managers"))
    client.force_login(manager)
    Response.objects.all().delete()
    ResponseFactory(invitation__customer=CustomerFactory(name=name), score=3, reason=reason)

    response = client.get("/dashboard/export.csv?range=7")

    assert response.status_code == 200
    [header, row] = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8"), newline="")))
    cells = dict(zip(header, row, strict=True))
    for column, typed in (("customer_name", name), ("reason", reason)):
        shown = cells[column]
        assert not shown.startswith(_FORMULA_STARTS), (column, shown)
        assert shown == ("'" + typed if typed.startswith(_FORMULA_STARTS) else typed)
