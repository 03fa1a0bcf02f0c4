"""Who may do what at every address of the site.

Each URL pattern of nps_app.urls is tried by five kinds of visitor:

- anonymous: no account, no token (a guessed token or code where the address needs one);
- token_holder: not logged in, but holding the credential the address is made
  for: the customer's survey / unsubscribe / share link, or the integrator's
  API key (with a real coupon or referral code);
- user: logged in, not staff, no permissions, holding no token;
- manager: logged in, not staff, in the "Managers" group, holding no token;
- admin: a superuser, logged in, holding no token.

Adding a URL pattern without adding it here fails `test_the_table_lists_every_url_pattern`.
"""

import base64

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.urls import URLPattern, URLResolver, get_resolver

from surveys.access.services import api_key_create
from surveys.models import CaseNote, Coupon, Customer, FollowUpCase, Invitation, ReferralConversion, Response
from surveys.promoters.services import coupon_issue, referral_link_ensure
from surveys.responses.services import response_submit

from ..factories import CustomerFactory, InvitationFactory, ResponseFactory

ROLES = ("anonymous", "token_holder", "user", "manager", "admin")

LANDING = "<NPS_REFERRAL_LANDING_URL>"
LOGIN = (302, "/accounts/login/?next=")
ADMIN_LOGIN = (302, "/admin/login/?next=")
ALL_200 = dict.fromkeys(ROLES, 200)
# The token is the only key: a login, even an admin's, opens nobody's survey.
TOKEN_ONLY = {"anonymous": 404, "token_holder": 200, "user": 404, "manager": 404, "admin": 404}
API_KEY_ONLY = {"anonymous": 401, "token_holder": 200, "user": 401, "manager": 401, "admin": 401}
MANAGERS_ONLY = {"anonymous": LOGIN, "token_holder": LOGIN, "user": 403, "manager": 200, "admin": 200}

# (URL name, method) -> what each kind of visitor gets: a status code, or (302, where to).
TABLE = {
    ("home", "GET"): ALL_200,
    ("survey", "GET"): TOKEN_ONLY,
    ("survey", "POST"): {**TOKEN_ONLY, "token_holder": (302, "/s/")},
    ("unsubscribe", "GET"): TOKEN_ONLY,
    ("unsubscribe", "POST"): TOKEN_ONLY,
    # A share link always lands on the company's site; only a real code is counted.
    ("referral", "GET"): dict.fromkeys(ROLES, (302, LANDING)),
    ("dashboard", "GET"): MANAGERS_ONLY,
    ("dashboard", "POST"): {**MANAGERS_ONLY, "manager": 405, "admin": 405},
    ("dashboard-export", "GET"): MANAGERS_ONLY,
    ("case-list", "GET"): MANAGERS_ONLY,
    ("case-detail", "GET"): MANAGERS_ONLY,
    ("case-detail", "POST"): {**MANAGERS_ONLY, "manager": (302, "/cases/"), "admin": (302, "/cases/")},
    ("api-invitations", "POST"): {**API_KEY_ONLY, "token_holder": 201},
    ("api-invitations", "GET"): dict.fromkeys(ROLES, 405),
    ("api-coupon-redeem", "POST"): API_KEY_ONLY,
    ("api-coupon-redeem", "GET"): dict.fromkeys(ROLES, 405),
    ("api-referral-convert", "POST"): {**API_KEY_ONLY, "token_holder": 201},
    ("api-referral-convert", "GET"): dict.fromkeys(ROLES, 405),
    # The Delighted-compatible API: the same API keys, sent as the HTTP Basic user name.
    ("delighted-people", "GET"): API_KEY_ONLY,
    ("delighted-people", "POST"): API_KEY_ONLY,
    ("delighted-person", "DELETE"): {**API_KEY_ONLY, "token_holder": 202},
    ("delighted-pending-survey-requests", "DELETE"): API_KEY_ONLY,
    ("delighted-survey-responses", "GET"): API_KEY_ONLY,
    ("delighted-survey-responses", "POST"): {**API_KEY_ONLY, "token_holder": 201},
    ("delighted-survey-response", "GET"): API_KEY_ONLY,
    ("delighted-survey-response", "PUT"): API_KEY_ONLY,
    ("delighted-metrics", "GET"): API_KEY_ONLY,
    ("delighted-unsubscribes", "GET"): API_KEY_ONLY,
    ("delighted-unsubscribes", "POST"): API_KEY_ONLY,
    ("delighted-bounces", "GET"): API_KEY_ONLY,
    ("login", "GET"): ALL_200,
    ("logout", "POST"): ALL_200,
    ("logout", "GET"): dict.fromkeys(ROLES, 405),
    ("admin", "GET"): {
        "anonymous": ADMIN_LOGIN,
        "token_holder": ADMIN_LOGIN,
        "user": ADMIN_LOGIN,
        "manager": ADMIN_LOGIN,
        "admin": 200,
    },
}

CASES = [(name, method, role, expected[role]) for (name, method), expected in TABLE.items() for role in ROLES]


def _top_level_names() -> set[str]:
    names = set()
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            names.add(entry.namespace or entry.app_name or str(entry.pattern))
        elif isinstance(entry, URLPattern):
            names.add(entry.name or str(entry.pattern))
    return names


def test_the_table_lists_every_url_pattern():
    listed = {name for name, _ in TABLE}

    assert _top_level_names() == listed


def test_the_table_gives_every_kind_of_visitor_an_answer():
    for key, expected in TABLE.items():
        assert set(expected) == set(ROLES), key


@pytest.fixture
def world(db, touchpoint):
    holder = CustomerFactory(email="holder@example.com")
    invitation = InvitationFactory(customer=holder, touchpoint=touchpoint)
    promoter = ResponseFactory(invitation=InvitationFactory(touchpoint=touchpoint), score=10)
    coupon = coupon_issue(response=promoter)
    link = referral_link_ensure(customer_id=promoter.customer_id, touchpoint=touchpoint, response=promoter)
    detractor = response_submit(invitation=InvitationFactory(touchpoint=touchpoint), score=2, reason="Late")
    _, raw_key = api_key_create(name="CRM")
    return {
        "touchpoint": touchpoint,
        "customer": holder,
        "invitation": invitation,
        "coupon": coupon,
        "referral": link,
        "case": FollowUpCase.objects.get(response=detractor),
        "api_key": raw_key,
    }


def _log_in(client, role: str) -> None:
    if role == "user":
        client.force_login(User.objects.create_user("someone", "someone@example.com", "pw-for-tests"))
    elif role == "manager":
        manager = User.objects.create_user("manager", "manager@example.com", "pw-for-tests")
        manager.groups.add(Group.objects.get(name="Managers"))
        client.force_login(manager)
    elif role == "admin":
        client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw-for-tests"))


def _request(client, name: str, method: str, role: str, world: dict):
    holder = role == "token_holder"
    survey_token = world["invitation"].token if holder else "a-guessed-token"
    unsubscribe_token = world["customer"].unsubscribe_token if holder else "a-guessed-token"
    coupon_code = world["coupon"].code if holder else "GUESSED-CODE"
    referral_code = world["referral"].code if holder else "GUESSED"
    headers = {"HTTP_AUTHORIZATION": f"Bearer {world['api_key']}"} if holder else {}
    basic_key = base64.b64encode(f"{world['api_key']}:".encode()).decode()
    basic = {"HTTP_AUTHORIZATION": f"Basic {basic_key}"} if holder else {}
    response_id = Response.objects.order_by("pk").values_list("pk", flat=True).first()
    case_url = f"/cases/{world['case'].pk}/"
    requests = {
        ("home", "GET"): lambda: client.get("/"),
        ("survey", "GET"): lambda: client.get(f"/s/{survey_token}/", {"score": "9"}),
        ("survey", "POST"): lambda: client.post(f"/s/{survey_token}/", {"score": "9", "reason": "ok"}),
        ("unsubscribe", "GET"): lambda: client.get(f"/u/{unsubscribe_token}/"),
        ("unsubscribe", "POST"): lambda: client.post(f"/u/{unsubscribe_token}/"),
        ("referral", "GET"): lambda: client.get(f"/r/{referral_code}/"),
        ("dashboard", "GET"): lambda: client.get("/dashboard/"),
        ("dashboard", "POST"): lambda: client.post("/dashboard/"),
        ("dashboard-export", "GET"): lambda: client.get("/dashboard/export.csv"),
        ("case-list", "GET"): lambda: client.get("/cases/"),
        ("case-detail", "GET"): lambda: client.get(case_url),
        ("case-detail", "POST"): lambda: client.post(case_url, {"action": "note", "text": "Called back."}),
        ("api-invitations", "POST"): lambda: client.post(
            "/api/v1/invitations",
            {"touchpoint": world["touchpoint"].slug, "email": "new@example.com"},
            content_type="application/json",
            **headers,
        ),
        ("api-invitations", "GET"): lambda: client.get("/api/v1/invitations", **headers),
        ("api-coupon-redeem", "POST"): lambda: client.post(f"/api/v1/coupons/{coupon_code}/redeem", **headers),
        ("api-coupon-redeem", "GET"): lambda: client.get(f"/api/v1/coupons/{coupon_code}/redeem", **headers),
        ("api-referral-convert", "POST"): lambda: client.post(
            f"/api/v1/referrals/{referral_code}/convert",
            {"email": "friend@example.com"},
            content_type="application/json",
            **headers,
        ),
        ("api-referral-convert", "GET"): lambda: client.get(f"/api/v1/referrals/{referral_code}/convert", **headers),
        ("delighted-people", "GET"): lambda: client.get("/v1/people.json", **basic),
        ("delighted-people", "POST"): lambda: client.post(
            "/v1/people.json", {"email": "new@example.com", "send": False}, content_type="application/json", **basic
        ),
        ("delighted-person", "DELETE"): lambda: client.delete(f"/v1/people/{world['customer'].pk}", **basic),
        ("delighted-pending-survey-requests", "DELETE"): lambda: client.delete(
            f"/v1/people/{world['customer'].email}/survey_requests/pending.json", **basic
        ),
        ("delighted-survey-responses", "GET"): lambda: client.get("/v1/survey_responses", **basic),
        ("delighted-survey-responses", "POST"): lambda: client.post(
            "/v1/survey_responses",
            {"person": str(world["customer"].pk), "score": 8},
            content_type="application/json",
            **basic,
        ),
        ("delighted-survey-response", "GET"): lambda: client.get(f"/v1/survey_responses/{response_id}.json", **basic),
        ("delighted-survey-response", "PUT"): lambda: client.put(
            f"/v1/survey_responses/{response_id}", {"comment": "Edited"}, content_type="application/json", **basic
        ),
        ("delighted-metrics", "GET"): lambda: client.get("/v1/metrics", **basic),
        ("delighted-unsubscribes", "GET"): lambda: client.get("/v1/unsubscribes.json", **basic),
        ("delighted-unsubscribes", "POST"): lambda: client.post(
            "/v1/unsubscribes", {"person_email": "someone@example.com"}, content_type="application/json", **basic
        ),
        ("delighted-bounces", "GET"): lambda: client.get("/v1/bounces", **basic),
        ("login", "GET"): lambda: client.get("/accounts/login/"),
        ("logout", "POST"): lambda: client.post("/accounts/logout/"),
        ("logout", "GET"): lambda: client.get("/accounts/logout/"),
        ("admin", "GET"): lambda: client.get("/admin/"),
    }
    return requests[(name, method)]()


@pytest.mark.parametrize("name, method, role, expected", CASES, ids=[f"{n}-{m}-{r}" for n, m, r, _ in CASES])
def test_each_visitor_gets_the_expected_answer(client, world, name, method, role, expected):
    _log_in(client, role)

    response = _request(client, name, method, role, world)

    status, location = expected if isinstance(expected, tuple) else (expected, None)
    if location == LANDING:
        location = settings.NPS_REFERRAL_LANDING_URL
    assert response.status_code == status
    if location is not None:
        assert response["Location"].startswith(location), response["Location"]


@pytest.mark.parametrize("role", ["anonymous", "user", "manager", "admin"])
def test_without_the_token_nothing_is_recorded_or_changed(client, world, role):
    _log_in(client, role)
    invitations = Invitation.objects.count()

    for name, method in TABLE:
        if name.startswith(("survey", "unsubscribe", "api-", "referral")):
            _request(client, name, method, role, world)

    assert Response.objects.count() == 2
    assert not Customer.objects.filter(unsubscribed_at__isnull=False).exists()
    assert Invitation.objects.count() == invitations
    assert not Coupon.objects.filter(redeemed_at__isnull=False).exists()
    assert not ReferralConversion.objects.exists()
    assert not world["referral"].visits.exists()


@pytest.mark.parametrize("role", ["anonymous", "token_holder", "user"])
def test_only_managers_can_add_a_case_note(client, world, role):
    _log_in(client, role)

    _request(client, "case-detail", "POST", role, world)

    assert not CaseNote.objects.exists()


def test_a_share_link_visit_is_counted_and_carries_the_code(client, world):
    response = _request(client, "referral", "GET", "token_holder", world)

    assert response["Location"] == f"{settings.NPS_REFERRAL_LANDING_URL}?ref={world['referral'].code}"
    assert world["referral"].visits.count() == 1


def test_one_customers_token_does_not_open_another_customers_survey(client, world, touchpoint):
    other = InvitationFactory(touchpoint=touchpoint)

    client.post(f"/s/{world['invitation'].token}/", {"score": "2"})

    assert not Response.objects.filter(invitation=other).exists()
    page = client.get(f"/s/{other.token}/")
    assert page.status_code == 200
    assert "Thank you for your answer" not in page.content.decode()
