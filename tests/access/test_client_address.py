"""The client's address behind NPS_TRUSTED_PROXIES (SPEC §8.4): survey limits, login lockout, referral links.

Behind a TLS proxy every request comes from the proxy's address: the client is
what the proxy appended to X-Forwarded-For. Anything left of that entry was
written by the client and must buy it nothing.
"""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from surveys.core.client_address import resolve
from surveys.models import Response
from surveys.promoters.services import referral_link_ensure

from ..factories import InvitationFactory, ResponseFactory

PROXY = "10.0.0.2"  # the TLS proxy: REMOTE_ADDR of every request behind it
ALICE = "203.0.113.10"
BOB = "198.51.100.20"
PASSWORD = "the-right-passphrase"


def meta(remote=PROXY, forwarded=None) -> dict:
    values = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        values["HTTP_X_FORWARDED_FOR"] = forwarded
    return values


def via(forwarded: str, **extra) -> dict:
    """What Django sees of a request that came through the proxy on behalf of `forwarded`."""
    return {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": forwarded, **extra}


# --- resolve(): which address is the client's ----------------------------------------------


def test_without_proxies_the_connection_is_the_client_and_the_header_is_ignored():
    assert resolve(meta("192.0.2.1", "203.0.113.99"), 0) == "192.0.2.1"
    assert resolve(meta("192.0.2.1"), 0) == "192.0.2.1"


def test_behind_one_proxy_the_client_is_the_last_entry():
    assert resolve(meta(forwarded=ALICE), 1) == ALICE


def test_behind_two_proxies_the_client_is_the_second_entry_from_the_right():
    assert resolve(meta(forwarded=f"{ALICE}, 10.0.0.1"), 2) == ALICE


@pytest.mark.parametrize("proxies", [1, 2])
def test_entries_the_client_wrote_left_of_the_proxies_are_ignored(proxies):
    chain = ["1.2.3.4", "5.6.7.8", ALICE] + ["10.0.0.1"] * (proxies - 1)

    assert resolve(meta(forwarded=", ".join(chain)), proxies) == ALICE


def test_a_chain_shorter_than_the_proxies_gives_the_furthest_entry_a_trusted_proxy_wrote():
    # Two proxies configured, but the request only went through the inner one.
    assert resolve(meta(forwarded=ALICE), 2) == ALICE


@pytest.mark.parametrize("forwarded", [None, "", "   ", " , ,"])
def test_a_request_that_did_not_come_through_the_proxy_is_the_connection(forwarded):
    assert resolve(meta("192.0.2.1", forwarded), 1) == "192.0.2.1"


@pytest.mark.parametrize("garbage", ["unknown", "not-an-address", "999.1.1.1", "203.0.113", "<script>", "%00"])
def test_a_garbage_entry_falls_back_to_the_connection(garbage):
    assert resolve(meta(forwarded=f"{ALICE}, {garbage}"), 1) == PROXY


def test_a_garbage_entry_left_of_the_client_does_not_matter():
    assert resolve(meta(forwarded=f"unknown, <script>, {ALICE}"), 1) == ALICE


def test_spaces_and_ports_around_the_client_address_are_dropped():
    assert resolve(meta(forwarded=f"  {ALICE}  "), 1) == ALICE
    assert resolve(meta(forwarded=f"{ALICE}:51234"), 1) == ALICE


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        ("2001:db8::7", "2001:db8::7"),
        ("2001:DB8:0:0:0:0:0:7", "2001:db8::7"),  # one address, one spelling: one budget
        ("[2001:db8::7]:443", "2001:db8::7"),
        (f"2001:db8::bad, {ALICE}", ALICE),
        (f"{ALICE}, 2001:db8::7", "2001:db8::7"),
    ],
)
def test_ipv6_clients_are_resolved_in_one_canonical_form(forwarded, client):
    assert resolve(meta(forwarded=forwarded), 1) == client


def test_an_ipv6_connection_without_proxies_is_the_client():
    assert resolve(meta("2001:db8::1", ALICE), 0) == "2001:db8::1"


# --- Survey answers: one budget per client, not per proxy ------------------------------------


def answer(client, invitation, score="8", **extra):
    return client.post(f"/s/{invitation.token}/", {"score": score}, **extra)


@pytest.mark.django_db
def test_behind_the_proxy_one_client_over_its_budget_leaves_others_able_to_answer(client, settings):
    settings.NPS_TRUSTED_PROXIES = 1
    settings.NPS_RATE_SURVEY_PER_IP = "2/m"
    alices = InvitationFactory.create_batch(3)
    bobs = InvitationFactory()

    alice_answers = [answer(client, item, **via(ALICE)).status_code for item in alices]
    bob_answer = answer(client, bobs, **via(BOB))

    assert alice_answers == [302, 302, 429]
    assert bob_answer.status_code == 302
    assert Response.objects.filter(invitation=bobs).exists()
    assert Response.objects.count() == 3


@pytest.mark.django_db
def test_behind_the_proxy_a_forged_left_entry_does_not_buy_a_new_budget(client, settings):
    settings.NPS_TRUSTED_PROXIES = 1
    settings.NPS_RATE_SURVEY_PER_IP = "2/m"
    invitations = InvitationFactory.create_batch(4)

    codes = [answer(client, item, **via(f"192.0.2.{n}, {ALICE}")).status_code for n, item in enumerate(invitations)]

    assert codes == [302, 302, 429, 429]
    assert Response.objects.count() == 2


@pytest.mark.django_db
def test_without_proxies_a_forged_forwarded_header_does_not_dodge_the_limit(client, settings):
    settings.NPS_TRUSTED_PROXIES = 0
    settings.NPS_RATE_SURVEY_PER_IP = "2/m"
    invitations = InvitationFactory.create_batch(3)

    codes = [
        answer(client, item, REMOTE_ADDR=ALICE, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}").status_code
        for n, item in enumerate(invitations)
    ]

    assert codes == [302, 302, 429]
    assert Response.objects.count() == 2


@pytest.mark.django_db
def test_answers_sent_back_with_an_error_do_not_use_up_the_address_budget(client, settings):
    settings.NPS_RATE_SURVEY_PER_IP = "2/m"
    first, second = InvitationFactory.create_batch(2)
    for _ in range(5):
        invalid = answer(client, first, score="11", REMOTE_ADDR=ALICE)
        assert invalid.status_code == 200  # the form again, with its error

    codes = [answer(client, item, REMOTE_ADDR=ALICE).status_code for item in (first, second)]

    assert codes == [302, 302]
    assert Response.objects.count() == 2


# --- Login lockout: per user name and client address ----------------------------------------


def sign_in(client, password, username="manager", **extra):
    return client.post("/accounts/login/", {"username": username, "password": password}, **extra)


@pytest.fixture
def manager(db):
    return User.objects.create_user("manager", "m@example.com", PASSWORD)


def fail_logins(client, settings, **extra):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "wrong", **extra)


def test_wrong_passwords_from_one_client_behind_the_proxy_lock_that_user_only_there(client, settings, manager):
    settings.NPS_TRUSTED_PROXIES = 1
    fail_logins(client, settings, **via(ALICE))

    locked = sign_in(client, PASSWORD, **via(ALICE))
    elsewhere = Client()
    signed_in = sign_in(elsewhere, PASSWORD, **via(BOB))

    assert locked.status_code == 429
    assert "Too many sign-in attempts" in locked.content.decode()
    assert signed_in.status_code == 302
    assert elsewhere.session["_auth_user_id"] == str(manager.pk)


def test_a_lockout_behind_the_proxy_cannot_be_dodged_with_a_forged_left_entry(client, settings, manager):
    settings.NPS_TRUSTED_PROXIES = 1
    for n in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "wrong", **via(f"192.0.2.{n}, {ALICE}"))

    response = sign_in(client, PASSWORD, **via(f"192.0.2.99, {ALICE}"))

    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_without_proxies_a_forged_forwarded_header_does_not_dodge_the_lockout(client, settings, manager):
    settings.NPS_TRUSTED_PROXIES = 0
    for n in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "wrong", REMOTE_ADDR=ALICE, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")

    response = sign_in(client, PASSWORD, REMOTE_ADDR=ALICE, HTTP_X_FORWARDED_FOR="192.0.2.99")

    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_without_proxies_the_same_user_still_signs_in_from_another_address(client, settings, manager):
    fail_logins(client, settings, REMOTE_ADDR=ALICE)

    response = sign_in(Client(), PASSWORD, REMOTE_ADDR=BOB)

    assert sign_in(client, PASSWORD, REMOTE_ADDR=ALICE).status_code == 429
    assert response.status_code == 302


def test_a_locked_out_address_does_not_lock_out_another_user_there(client, settings, manager):
    settings.NPS_TRUSTED_PROXIES = 1
    User.objects.create_user("colleague", "c@example.com", PASSWORD)
    fail_logins(client, settings, **via(ALICE))

    response = sign_in(Client(), PASSWORD, username="colleague", **via(ALICE))

    assert response.status_code == 302


# --- Referral links: rate limited, one visit per client address --------------------------------


@pytest.fixture
def link(db):
    response = ResponseFactory(score=10)
    return referral_link_ensure(
        customer_id=response.customer_id, touchpoint=response.touchpoint, response=response
    )


@pytest.fixture
def landing(settings):
    settings.NPS_REFERRAL_LANDING_URL = "https://shop.example.com/welcome"


def visit(client, code, ua="Mozilla/5.0 (X11; Linux x86_64)", **extra):
    return client.get(f"/r/{code}/", HTTP_USER_AGENT=ua, **extra)


def test_share_link_visits_past_the_address_limit_get_a_friendly_429(client, settings, link, landing):
    settings.NPS_RATE_REFERRAL_PER_IP = "3/m"

    codes = [visit(client, link.code, ua=f"bot {n}", REMOTE_ADDR=ALICE).status_code for n in range(5)]
    too_many = visit(client, link.code, REMOTE_ADDR=ALICE)

    assert codes == [302, 302, 302, 429, 429]
    assert too_many.status_code == 429
    assert too_many["Retry-After"] == "60"
    assert "Please wait a moment" in too_many.content.decode()
    assert visit(client, link.code, REMOTE_ADDR=BOB).status_code == 302


def test_a_visit_over_the_limit_counts_nothing(client, settings, link, landing):
    settings.NPS_RATE_REFERRAL_PER_IP = "3/m"
    for n in range(3):
        visit(client, f"NOSUCHCODE{n}", REMOTE_ADDR=ALICE)  # guessing codes spends the budget too

    response = visit(client, link.code, REMOTE_ADDR=ALICE)

    assert response.status_code == 429
    assert link.visits.count() == 0


def test_behind_the_proxy_share_link_limits_are_per_client(client, settings, link, landing):
    settings.NPS_TRUSTED_PROXIES = 1
    settings.NPS_RATE_REFERRAL_PER_IP = "2/m"

    alice = [visit(client, link.code, **via(f"192.0.2.{n}, {ALICE}")).status_code for n in range(3)]
    bob = visit(client, link.code, **via(BOB))

    assert alice == [302, 302, 429]
    assert bob.status_code == 302
    assert link.visits.count() == 2


def test_behind_the_proxy_each_client_is_one_visit_whatever_its_user_agent(client, settings, link, landing):
    settings.NPS_TRUSTED_PROXIES = 1
    for n in range(10):
        visit(client, link.code, ua=f"Mozilla/5.0 (bot {n})", **via(ALICE))
        visit(client, link.code, ua=f"Mozilla/5.0 (bot {n})", **via(BOB))

    assert link.visits.count() == 2
