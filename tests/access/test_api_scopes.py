"""API key scopes: a key does only what it was made for, on both APIs and from `create_api_key`."""

import base64
import json
import warnings
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from surveys.access.services import api_key_authenticate, api_key_create
from surveys.models import ApiKey, Coupon, Customer, Invitation, ReferralConversion
from surveys.promoters.services import coupon_issue, referral_link_ensure

from ..factories import CustomerFactory, ResponseFactory, TouchpointFactory

with warnings.catch_warnings():
    # The package announces Delighted's sunset on import.
    warnings.simplefilter("ignore", FutureWarning)
    import delighted
    from delighted.errors import GeneralAPIError
    from delighted.http_response import HTTPResponse

pytestmark = pytest.mark.django_db


def key_with(*scopes: str) -> str:
    _, raw_key = api_key_create(name="Scoped", scopes=list(scopes))
    return raw_key


def bearer(raw_key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}


def basic(raw_key: str) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(raw_key.encode()).decode()}


def assert_api_forbidden(response):
    """/api/v1/ refuses in its own error format."""
    assert response.status_code == 403, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == "forbidden"
    assert isinstance(body["detail"], str) and body["detail"]


def assert_delighted_forbidden(response):
    """/v1/ refuses in Delighted's error format."""
    assert response.status_code == 403, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"status", "message", "errors"}
    assert body["status"] == 403
    assert isinstance(body["message"], str) and body["message"]
    assert body["errors"] == []


@pytest.fixture
def touchpoint(db):
    return TouchpointFactory(name="Web shop", slug="web", is_api_default=True)


@pytest.fixture
def coupon(db):
    return coupon_issue(response=ResponseFactory(score=10))


@pytest.fixture
def link(db):
    response = ResponseFactory(score=10)
    return referral_link_ensure(
        customer_id=response.customer_id, touchpoint=response.touchpoint, response=response
    )


@pytest.fixture
def ann(db):
    return CustomerFactory(email="ann@example.com", name="Ann Lee")


def redeem(client, code, raw_key):
    return client.post(f"/api/v1/coupons/{code}/redeem", content_type="application/json", **bearer(raw_key))


def invite(client, touchpoint, raw_key):
    body = {"touchpoint": touchpoint.slug, "email": "new@example.com"}
    return client.post("/api/v1/invitations", body, content_type="application/json", **bearer(raw_key))


def convert(client, code, raw_key):
    return client.post(
        f"/api/v1/referrals/{code}/convert", {"order_id": "A-1"}, content_type="application/json", **bearer(raw_key)
    )


def create_person(client, raw_key, email="new@example.com"):
    return client.post(
        "/v1/people.json", json.dumps({"email": email}), content_type="application/json", **basic(raw_key)
    )


# --- A coupon till's key ------------------------------------------------------------------


def test_a_coupon_key_redeems_a_coupon(client, coupon):
    response = redeem(client, coupon.code, key_with("coupons"))

    assert response.status_code == 200, response.content
    assert Coupon.objects.get(pk=coupon.pk).redeemed_at is not None


def test_a_coupon_key_cannot_send_surveys(client, touchpoint):
    response = invite(client, touchpoint, key_with("coupons"))

    assert_api_forbidden(response)
    assert not Invitation.objects.filter(customer__email="new@example.com").exists()
    assert not Customer.objects.filter(email="new@example.com").exists()


def test_a_coupon_key_cannot_report_orders(client, link):
    assert_api_forbidden(convert(client, link.code, key_with("coupons")))
    assert not ReferralConversion.objects.exists()


def test_a_coupon_key_cannot_list_people(client, ann):
    response = client.get("/v1/people.json", **basic(key_with("coupons")))

    assert_delighted_forbidden(response)
    assert "ann@example.com" not in response.content.decode()


@pytest.mark.parametrize("path", ["/v1/survey_responses.json", "/v1/metrics.json", "/v1/unsubscribes.json"])
def test_a_coupon_key_cannot_read_answers_or_figures(client, path):
    assert_delighted_forbidden(client.get(path, **basic(key_with("coupons"))))


def test_a_coupon_key_cannot_erase_a_person(client, ann):
    response = client.delete(f"/v1/people/{ann.pk}.json", **basic(key_with("coupons")))

    assert_delighted_forbidden(response)
    ann.refresh_from_db()
    assert ann.erased_at is None
    assert (ann.email, ann.name) == ("ann@example.com", "Ann Lee")


def test_a_coupon_key_cannot_erase_a_person_by_email(client, ann):
    response = client.delete("/v1/people/email:ann@example.com.json", **basic(key_with("coupons")))

    assert_delighted_forbidden(response)
    assert Customer.objects.get(pk=ann.pk).erased_at is None


# --- Other single-purpose keys ------------------------------------------------------------


def test_an_orders_key_reports_an_order_but_cannot_redeem_coupons(client, link, coupon):
    raw_key = key_with("orders")

    assert convert(client, link.code, raw_key).status_code == 201
    assert_api_forbidden(redeem(client, coupon.code, raw_key))
    assert Coupon.objects.get(pk=coupon.pk).redeemed_at is None


def test_an_invitations_key_sends_surveys_but_cannot_read_people(client, touchpoint, ann):
    raw_key = key_with("invitations")

    assert invite(client, touchpoint, raw_key).status_code == 201
    assert_delighted_forbidden(client.get("/v1/people.json", **basic(raw_key)))


def test_a_read_only_key_lists_people(client, ann):
    response = client.get("/v1/people.json", **basic(key_with("read")))

    assert response.status_code == 200, response.content
    assert [person["email"] for person in response.json()] == ["ann@example.com"]


def test_a_read_only_key_cannot_create_people(client, touchpoint):
    response = create_person(client, key_with("read"))

    assert_delighted_forbidden(response)
    assert not Customer.objects.filter(email="new@example.com").exists()


def test_a_read_only_key_cannot_erase_or_unsubscribe_anyone(client, ann):
    raw_key = key_with("read")

    assert_delighted_forbidden(client.delete(f"/v1/people/{ann.pk}.json", **basic(raw_key)))
    unsubscribe = client.post(
        "/v1/unsubscribes.json",
        json.dumps({"person_email": ann.email}),
        content_type="application/json",
        **basic(raw_key),
    )
    assert_delighted_forbidden(unsubscribe)
    ann.refresh_from_db()
    assert ann.erased_at is None and ann.unsubscribed_at is None


def test_a_read_only_key_cannot_use_the_other_api(client, touchpoint, coupon):
    raw_key = key_with("read")

    assert_api_forbidden(invite(client, touchpoint, raw_key))
    assert_api_forbidden(redeem(client, coupon.code, raw_key))


def test_a_delighted_key_creates_people_and_a_read_key_is_needed_to_list_them(client, touchpoint):
    writer = key_with("delighted")

    assert create_person(client, writer).status_code == 200
    assert Customer.objects.filter(email="new@example.com").exists()
    assert_delighted_forbidden(client.get("/v1/people.json", **basic(writer)))


def test_a_key_made_without_scopes_may_do_everything(client, touchpoint, coupon, link, ann, api_key):
    assert invite(client, touchpoint, api_key).status_code == 201
    assert redeem(client, coupon.code, api_key).status_code == 200
    assert convert(client, link.code, api_key).status_code == 201
    assert client.get("/v1/people.json", **basic(api_key)).status_code == 200
    assert create_person(client, api_key, "other@example.com").status_code == 200


def test_a_wrong_key_is_still_401_not_403(client):
    assert client.get("/v1/people.json", **basic("lp_not-a-real-key")).status_code == 401
    assert (
        client.post("/api/v1/invitations", {}, content_type="application/json", **bearer("lp_nope")).status_code == 401
    )


# --- The official Delighted client sees the refusal -----------------------------------------


class DjangoClientAdapter(delighted.HTTPAdapter):
    """Sends the `delighted` package's requests through Django's test client instead of the network."""

    def __init__(self, client):
        self.client = client

    def request(self, method, uri, headers={}, data=None, params=None):  # noqa: B006 - the client's signature
        headers = dict(headers)
        content_type = headers.pop("Content-Type", "application/octet-stream")
        response = self.client.generic(
            method.upper(), uri, data or "", content_type=content_type, headers=headers, query_params=params
        )
        return HTTPResponse(response.status_code, dict(response.headers), response.content.decode(), {})


def delighted_client(client, raw_key):
    return delighted.Client(
        api_key=raw_key, api_base_url="http://testserver/v1/", http_adapter=DjangoClientAdapter(client)
    )


def test_the_delighted_client_with_a_read_only_key_reads_but_cannot_write(client, touchpoint, ann):
    dclient = delighted_client(client, key_with("read"))

    assert delighted.Metrics.retrieve(client=dclient).nps is not None
    with pytest.raises(GeneralAPIError) as caught:
        delighted.Person.create(client=dclient, email="new@example.com")

    assert caught.value.response.status_code == 403
    assert not Customer.objects.filter(email="new@example.com").exists()


def test_the_delighted_client_with_a_coupon_key_cannot_erase_a_person(client, ann):
    dclient = delighted_client(client, key_with("coupons"))

    with pytest.raises(GeneralAPIError) as caught:
        delighted.Person.delete(client=dclient, id=str(ann.pk))

    assert caught.value.response.status_code == 403
    assert Customer.objects.get(pk=ann.pk).erased_at is None


# --- manage.py create_api_key --scope ---------------------------------------------------------


def run_create_api_key(*args) -> str:
    stdout, stderr = StringIO(), StringIO()
    call_command("create_api_key", *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue().rstrip("\n").splitlines()[-1]


def test_create_api_key_with_scopes_prints_a_key_that_may_do_only_that(client, coupon, touchpoint):
    raw_key = run_create_api_key("Till", "--scope", "coupons", "--scope", "orders")

    api_key = api_key_authenticate(raw_key=raw_key)
    assert api_key is not None and api_key.name == "Till"
    assert sorted(api_key.scopes) == ["coupons", "orders"]
    assert redeem(client, coupon.code, raw_key).status_code == 200
    assert_api_forbidden(invite(client, touchpoint, raw_key))
    assert_delighted_forbidden(client.get("/v1/people.json", **basic(raw_key)))


def test_create_api_key_without_scopes_makes_a_key_that_may_do_everything():
    raw_key = run_create_api_key("Integration")

    api_key = api_key_authenticate(raw_key=raw_key)
    assert sorted(api_key.scopes) == sorted(["invitations", "coupons", "orders", "delighted", "read"])


def test_create_api_key_refuses_an_unknown_scope_and_makes_no_key():
    with pytest.raises(CommandError) as caught:
        run_create_api_key("Till", "--scope", "coupons", "--scope", "everything")

    message = str(caught.value)
    assert "everything" in message
    # It says which scopes there are.
    assert all(scope in message for scope in ("invitations", "coupons", "orders", "delighted", "read"))
    assert not ApiKey.objects.exists()
