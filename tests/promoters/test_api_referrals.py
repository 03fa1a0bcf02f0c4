"""Referrals: the share link /r/<code>/ counts visits; the API records conversions the company reports."""

import pytest
from django.db import connection

from surveys.models import ReferralConversion, ReferralLink, ReferralVisit
from surveys.promoters.services import referral_link_ensure

from ..factories import ResponseFactory

LANDING = "https://shop.example.com/welcome"
IP = "203.0.113.77"
UA = "Mozilla/5.0 (X11; Linux x86_64) ReferralTestBrowser/1.0"


@pytest.fixture
def link(db):
    response = ResponseFactory(score=10)
    return referral_link_ensure(customer_id=response.customer_id, touchpoint=response.touchpoint,
                                         response=response)


@pytest.fixture
def landing(settings):
    settings.NPS_REFERRAL_LANDING_URL = LANDING
    return LANDING


def convert(client, code, data=None, body=None):
    payload = body if body is not None else data
    return client.post(f"/api/v1/referrals/{code}/convert", payload, content_type="application/json")


def assert_error(response, status, error):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"] == error
    assert isinstance(body["detail"], str) and body["detail"]


# --- POST /api/v1/referrals/<code>/convert ------------------------------------------


def test_a_first_conversion_is_created(api_client, link):
    response = convert(api_client, link.code, {"email": "friend@example.com"})

    assert response.status_code == 201, response.content
    assert response.json()["code"] == link.code
    assert link.conversions.count() == 1


def test_the_same_email_again_is_the_same_conversion(api_client, link):
    convert(api_client, link.code, {"email": "friend@example.com"})

    again = convert(api_client, link.code, {"email": "  Friend@Example.COM "})

    assert again.status_code == 200, again.content
    assert link.conversions.count() == 1


def test_the_same_order_id_again_is_the_same_conversion(api_client, link):
    first = convert(api_client, link.code, {"order_id": "A-1001"})

    again = convert(api_client, link.code, {"order_id": "A-1001"})

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["converted_at"] == first.json()["converted_at"]
    assert link.conversions.count() == 1
    assert link.conversions.get().order_id == "A-1001"


def test_another_email_or_order_is_another_conversion(api_client, link):
    assert convert(api_client, link.code, {"email": "friend@example.com"}).status_code == 201
    assert convert(api_client, link.code, {"email": "colleague@example.com"}).status_code == 201
    assert convert(api_client, link.code, {"order_id": "A-1"}).status_code == 201
    assert convert(api_client, link.code, {"order_id": "A-2"}).status_code == 201

    assert link.conversions.count() == 4


def test_the_code_is_case_insensitive(api_client, link):
    assert convert(api_client, link.code.lower(), {"order_id": "A-1"}).status_code == 201

    assert link.conversions.count() == 1


def test_the_referred_email_is_not_stored_in_plain_text(api_client, link):
    convert(api_client, link.code, {"email": "friend@example.com"})

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ReferralConversion._meta.db_table}")
        rows = cursor.fetchall()
    assert len(rows) == 1
    assert not any("friend" in str(value).lower() for value in rows[0])


@pytest.mark.parametrize(
    "data",
    [{}, {"email": ""}, {"email": "", "order_id": ""}, {"order_id": "   "}, {"email": "not-an-email"},
     {"email": "friend@"}, {"email": 42}, {"order_id": ["A-1"]}, {"order_id": "x" * 121}],
)
def test_it_refuses_a_request_without_a_valid_email_or_order_id(api_client, link, data):
    assert_error(convert(api_client, link.code, data), 400, "invalid_request")

    assert not ReferralConversion.objects.exists()


@pytest.mark.parametrize("body", ["{not json", "[1, 2]", '"friend@example.com"', b"\xff\xfe"])
def test_it_refuses_malformed_json(api_client, link, body):
    assert_error(convert(api_client, link.code, body=body), 400, "malformed_json")

    assert not ReferralConversion.objects.exists()


@pytest.mark.parametrize("code", ["ZZZZZZZZZZ", "ZZZ%00ZZZ", "Z" * 300])
def test_an_unknown_code_is_404(api_client, link, code):
    assert_error(convert(api_client, code, {"email": "friend@example.com"}), 404, "referral_not_found")

    assert not ReferralConversion.objects.exists()


def test_it_needs_an_api_key(client, link):
    assert_error(convert(client, link.code, {"email": "friend@example.com"}), 401, "unauthorized")

    assert not ReferralConversion.objects.exists()


def test_a_get_is_405(api_client, link):
    response = api_client.get(f"/api/v1/referrals/{link.code}/convert")

    assert_error(response, 405, "method_not_allowed")
    assert not ReferralConversion.objects.exists()


# --- GET /r/<code>/ ------------------------------------------------------------------


def visit(client, code, ip=IP, ua=UA):
    return client.get(f"/r/{code}/", REMOTE_ADDR=ip, HTTP_USER_AGENT=ua)


def test_a_visit_is_sent_to_the_landing_page_with_the_code(client, link, landing):
    response = visit(client, link.code)

    assert response.status_code == 302
    assert response["Location"] == f"{LANDING}?ref={link.code}"
    assert link.visits.count() == 1


def test_the_landing_page_keeps_its_own_query_string(client, link, settings):
    settings.NPS_REFERRAL_LANDING_URL = "https://shop.example.com/welcome?utm_source=nps&lang=en"

    response = visit(client, link.code.lower())

    assert response.status_code == 302
    assert response["Location"] == f"https://shop.example.com/welcome?utm_source=nps&lang=en&ref={link.code}"


def test_a_visitor_is_counted_once_a_day(client, link, landing):
    visit(client, link.code)
    visit(client, link.code)

    assert link.visits.count() == 1


def test_another_browser_on_the_same_address_is_not_another_visitor(client, link, landing):
    # 25 visits with a new User-Agent each once inflated a promoter's count from 2 to 27.
    for n in range(25):
        visit(client, link.code, ua=f"Mozilla/5.0 (bot {n})")
    visit(client, link.code, ip="198.51.100.9")

    assert link.visits.count() == 2


def test_no_address_or_browser_is_stored_in_plain_text(client, link, landing):
    visit(client, link.code)

    columns = [field.column for field in ReferralVisit._meta.concrete_fields]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(columns)} FROM {ReferralVisit._meta.db_table}")
        rows = cursor.fetchall()
    assert len(rows) == 1
    stored = " ".join(str(value) for value in rows[0])
    for secret in (IP, UA, "ReferralTestBrowser", "203.0.113"):
        assert secret not in stored
    assert set(columns) == {"id", "link_id", "visitor_hash", "day", "created_at"}


@pytest.mark.parametrize("code", ["NOSUCHCODE", "NO%00SUCH", "<script>", "Z" * 300])
def test_an_unknown_code_goes_to_the_landing_page_and_counts_nothing(client, link, landing, code):
    response = visit(client, code)

    assert response.status_code == 302
    assert response["Location"] == LANDING
    assert not ReferralVisit.objects.exists()


def test_visits_and_conversions_are_counted_per_promoter(client, api_client, landing):
    responses = [ResponseFactory(score=10), ResponseFactory(score=9)]
    links = [referral_link_ensure(customer_id=r.customer_id, touchpoint=r.touchpoint, response=r)
             for r in responses]
    for n in range(3):
        visit(client, links[0].code, ip=f"198.51.100.{n}")
    visit(client, links[1].code)
    convert(api_client, links[0].code, {"email": "friend@example.com"})

    assert [link.visits.count() for link in links] == [3, 1]
    assert [link.conversions.count() for link in links] == [1, 0]
    assert ReferralLink.objects.get(customer=responses[0].customer) == links[0]


def test_the_share_link_only_answers_get(client, link, landing):
    response = client.post(f"/r/{link.code}/", REMOTE_ADDR=IP, HTTP_USER_AGENT=UA)

    assert response.status_code == 405
    assert not ReferralVisit.objects.exists()
