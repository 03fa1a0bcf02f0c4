"""Fresh promoters get one coupon, emailed once, inside the 30-day window; coupons are redeemed once."""

import email
import email.policy
import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from celery.exceptions import Retry
from django.core import mail
from django.db import connection, connections
from django.utils import timezone

from surveys import tasks
from surveys.core.sweeps import SWEEP_GRACE
from surveys.customers.services import customer_unsubscribe
from surveys.models import Coupon, Invitation, Response
from surveys.promoters.rules import PROMOTER_WINDOW
from surveys.promoters.services import (
    CouponAlreadyRedeemed,
    CouponExpired,
    CouponNotFound,
    coupon_email_send,
    coupon_issue,
    coupon_redeem,
    promoter_reward,
    promoters_sweep,
)
from surveys.responses.services import response_submit

from ..conftest import require_postgresql
from ..factories import CustomerFactory, InvitationFactory, ResponseFactory, TouchpointFactory

UNAMBIGUOUS = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_FORMAT = re.compile(rf"LP-[{UNAMBIGUOUS}]{{4}}-[{UNAMBIGUOUS}]{{4}}-[{UNAMBIGUOUS}]{{4}}")


@pytest.fixture
def answer(django_capture_on_commit_callbacks):
    """Answer the survey the way the survey page does, running what the commit sets in motion."""

    def submit(invitation, score, reason=""):
        with django_capture_on_commit_callbacks(execute=True):
            return response_submit(invitation=invitation, score=score, reason=reason)

    return submit


def received(smtp_server):
    """The messages the SMTP server accepted, parsed."""
    return [email.message_from_bytes(raw, policy=email.policy.default) for _, _, raw in smtp_server.handler.messages]


def parts(message):
    """The plain-text and HTML bodies of a Django message."""
    html = [content for content, mimetype in message.alternatives if mimetype == "text/html"]
    assert len(html) == 1
    return message.body, html[0]


def age(response, delta):
    Response.objects.filter(pk=response.pk).update(created_at=timezone.now() - delta)


def customer_emails(customer):
    return [message for message in mail.outbox if message.to == [customer.email]]


# --- Issuing and emailing ---------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("score", [9, 10])
def test_it_issues_and_emails_one_coupon_to_a_promoter(answer, customer, score):
    touchpoint = TouchpointFactory(promoter_offer="A free coffee with your next order", coupon_validity_days=14)
    invitation = InvitationFactory(customer=customer, touchpoint=touchpoint)

    response = answer(invitation, score)

    coupon = Coupon.objects.get()
    assert coupon.response == response
    assert coupon.customer == customer
    assert CODE_FORMAT.fullmatch(coupon.code), coupon.code
    assert coupon.offer == "A free coffee with your next order"
    assert coupon.expires_at == coupon.issued_at + timedelta(days=14)
    assert coupon.emailed_at is not None
    assert coupon.redeemed_at is None
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["jane@example.com"]
    assert coupon.code in mail.outbox[0].subject
    response.refresh_from_db()
    assert response.coupon_settled_at is not None


@pytest.mark.django_db
def test_the_coupon_is_valid_for_30_days_by_default(answer, invitation):
    answer(invitation, 10)

    coupon = Coupon.objects.get()
    assert coupon.expires_at - coupon.issued_at == timedelta(days=30)
    assert coupon.offer == invitation.touchpoint.promoter_offer == "10% off your next purchase"


@pytest.mark.django_db
def test_the_coupon_email_tells_code_offer_valid_until_and_share_link(answer, customer):
    touchpoint = TouchpointFactory(promoter_offer="A free coffee with your next order", coupon_validity_days=30)
    invitation = InvitationFactory(customer=customer, touchpoint=touchpoint)

    answer(invitation, 10)

    coupon = Coupon.objects.get()
    link = customer.referral_link
    valid_until = coupon.expires_at.date().isoformat()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", valid_until)
    assert valid_until == (coupon.issued_at + timedelta(days=30)).date().isoformat()
    message = mail.outbox[0]
    text, html = parts(message)
    for body in (text, html):
        assert coupon.code in body
        assert "A free coffee with your next order" in body
        assert valid_until in body
        assert f"https://surveys.example.com/r/{link.code}/" in body
        assert f"https://surveys.example.com/u/{customer.unsubscribe_token}/" in body
    headers = message.message()
    assert headers["List-Unsubscribe"] == f"<https://surveys.example.com/u/{customer.unsubscribe_token}/>"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.django_db
def test_the_valid_until_date_is_the_date_where_the_company_is(settings):
    settings.TIME_ZONE = "Pacific/Kiritimati"  # UTC+14
    response = ResponseFactory(score=10)
    issued = coupon_issue(response=response)
    # Expires at 20:00 UTC on 1 January, which is already 10:00 on 2 January in Kiritimati.
    expires = datetime(2030, 1, 1, 20, 0, tzinfo=UTC)
    Coupon.objects.filter(pk=issued.pk).update(expires_at=expires)

    coupon_email_send(coupon_id=issued.pk)

    text, html = parts(mail.outbox[0])
    assert "2030-01-02" in text and "2030-01-02" in html
    assert "2030-01-01" not in text


@pytest.mark.django_db
def test_the_share_link_in_the_email_leads_to_the_landing_page(answer, invitation, client, settings):
    settings.NPS_REFERRAL_LANDING_URL = "https://shop.example.com/"
    answer(invitation, 9)

    share_url = re.search(r"https://surveys\.example\.com(/r/\w+/)", mail.outbox[0].body).group(1)
    visit = client.get(share_url)

    assert visit.status_code == 302
    assert visit["Location"] == f"https://shop.example.com/?ref={invitation.customer.referral_link.code}"


def test_coupon_codes_use_only_unambiguous_characters():
    from surveys.models import new_coupon_code

    codes = {new_coupon_code() for _ in range(2000)}

    assert len(codes) == 2000
    for code in codes:
        assert CODE_FORMAT.fullmatch(code), code
    used = set("".join(code[3:].replace("-", "") for code in codes))
    assert not used & set("0O1IL")


@pytest.mark.django_db
@pytest.mark.parametrize("score", [0, 6, 7, 8])
def test_passives_and_detractors_get_no_coupon(answer, invitation, score):
    response = answer(invitation, score)

    assert not Coupon.objects.exists()
    assert customer_emails(invitation.customer) == []
    assert promoter_reward(response_id=response.pk) == "nothing-to-do"
    assert not Coupon.objects.exists()


@pytest.mark.django_db
def test_the_thank_you_page_says_the_coupon_is_on_its_way(answer, invitation, client):
    answer(invitation, 10)

    page = client.get(f"/s/{invitation.token}/")

    assert "your coupon is on its way" in page.content.decode()
    assert invitation.customer.referral_link.code in page.content.decode()


@pytest.mark.django_db
def test_a_promoter_answering_on_the_survey_page_gets_the_coupon_and_is_told(
    client, invitation, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        posted = client.post(f"/s/{invitation.token}/", {"score": "10", "reason": "Lovely."})
    page = client.get(posted["Location"]).content.decode()

    coupon = Coupon.objects.get()
    assert [message.to for message in mail.outbox] == [["jane@example.com"]]
    assert coupon.code in mail.outbox[0].body
    assert "your coupon is on its way" in page
    assert f"https://surveys.example.com/r/{invitation.customer.referral_link.code}/" in page


# --- The 30-day window ----------------------------------------------------------


def reward_now(response):
    promoter_reward(response_id=response.pk)


def reward_by_sweep(response):
    promoters_sweep()


@pytest.mark.django_db
@pytest.mark.parametrize("run", [reward_now, reward_by_sweep], ids=["promoter_reward", "promoters_sweep"])
def test_a_promoter_of_29_days_23_hours_still_gets_the_coupon(run):
    response = ResponseFactory(score=10, created_at=timezone.now() - timedelta(days=29, hours=23))

    run(response)

    coupon = Coupon.objects.get()
    assert coupon.response == response
    assert coupon.emailed_at is not None
    assert len(customer_emails(response.customer)) == 1
    assert coupon.code in mail.outbox[0].body


@pytest.mark.django_db
@pytest.mark.parametrize("run", [reward_now, reward_by_sweep], ids=["promoter_reward", "promoters_sweep"])
def test_a_promoter_of_30_days_gets_nothing_and_is_settled(run):
    response = ResponseFactory(score=10, created_at=timezone.now() - timedelta(days=30))

    run(response)

    assert not Coupon.objects.exists()
    assert mail.outbox == []
    response.refresh_from_db()
    assert response.coupon_settled_at is not None
    # Settled: the sweep never looks at it again.
    assert promoters_sweep() == {"window_closed": 0, "enqueued": 0}


@pytest.mark.django_db
def test_the_sweep_sends_every_fresh_promoter_that_was_missed_and_nobody_else():
    missed = [ResponseFactory(score=score, created_at=timezone.now() - timedelta(days=days)) for score, days in
              [(9, 1), (10, 12), (10, 29)]]
    ResponseFactory(score=8, created_at=timezone.now() - timedelta(days=2))
    ResponseFactory(score=3, created_at=timezone.now() - timedelta(days=2))
    ResponseFactory(score=10, created_at=timezone.now() - timedelta(days=31))

    result = promoters_sweep()

    assert result == {"window_closed": 1, "enqueued": 3}
    assert {coupon.response_id for coupon in Coupon.objects.all()} == {response.pk for response in missed}
    assert sorted(message.to[0] for message in mail.outbox) == sorted(r.customer.email for r in missed)
    assert promoters_sweep() == {"window_closed": 0, "enqueued": 0}
    assert len(mail.outbox) == 3


# --- One coupon per customer per 30 days ---------------------------------------


@pytest.mark.django_db
def test_a_second_promoter_answer_within_30_days_gets_no_second_coupon(answer, customer, touchpoint, client):
    first = InvitationFactory(customer=customer, touchpoint=touchpoint)
    second = InvitationFactory(customer=customer, touchpoint=TouchpointFactory())
    answer(first, 10)

    response = answer(second, 9)

    assert Coupon.objects.count() == 1
    assert Coupon.objects.get().response.invitation == first
    assert len(customer_emails(customer)) == 1
    response.refresh_from_db()
    assert response.coupon_settled_at is not None
    assert "your coupon is on its way" in client.get(f"/s/{first.token}/").content.decode()
    second_page = client.get(f"/s/{second.token}/").content.decode()
    assert "coupon" not in second_page.lower()
    assert customer.referral_link.code in second_page


@pytest.mark.django_db
def test_a_promoter_again_after_30_days_gets_a_new_coupon(answer, customer, touchpoint):
    answer(InvitationFactory(customer=customer, touchpoint=touchpoint), 10)
    long_ago = timezone.now() - timedelta(days=31)
    Coupon.objects.update(issued_at=long_ago, expires_at=long_ago + timedelta(days=30))

    answer(InvitationFactory(customer=customer, touchpoint=touchpoint), 10)

    assert Coupon.objects.count() == 2
    assert len({coupon.code for coupon in Coupon.objects.all()}) == 2
    assert len(customer_emails(customer)) == 2


# --- Redelivery and retries -----------------------------------------------------


@pytest.mark.django_db
def test_a_redelivered_reward_sends_one_email_with_one_code(answer, invitation):
    response = answer(invitation, 10)
    code = Coupon.objects.get().code

    assert promoter_reward(response_id=response.pk) == "nothing-to-do"
    tasks.promoter_reward_task.delay(response.pk)
    promoters_sweep()

    assert Coupon.objects.count() == 1
    assert Coupon.objects.get().code == code
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_a_reward_run_twice_before_it_was_settled_sends_one_email():
    response = ResponseFactory(score=9)

    assert promoter_reward(response_id=response.pk) == "sent"
    # As if the first run died after emailing but before settling the response.
    Response.objects.filter(pk=response.pk).update(coupon_settled_at=None)
    assert promoter_reward(response_id=response.pk) == "already-emailed"

    assert Coupon.objects.count() == 1
    assert len(mail.outbox) == 1
    assert Coupon.objects.get().email_attempts == 1


@pytest.mark.django_db
def test_a_task_for_a_deleted_response_does_nothing():
    assert tasks.promoter_reward_task.delay(987654).get() == "nothing-to-do"
    assert not Coupon.objects.exists()


@pytest.mark.django_db
def test_the_task_retries_a_passing_smtp_failure_and_emails_the_coupon_once(smtp_settings):
    response = ResponseFactory(score=10)
    smtp_settings.handler.fail_next = 1

    # Each apply() is one delivery of the task, as a worker runs it.
    with pytest.raises(Retry):
        tasks.promoter_reward_task.apply(args=[response.pk])
    coupon = Coupon.objects.get()
    assert coupon.emailed_at is None
    assert "451" in coupon.last_error
    assert tasks.promoter_reward_task.apply(args=[response.pk], retries=1).get() == "sent"

    coupon.refresh_from_db()
    messages = received(smtp_settings)
    assert len(messages) == 1
    assert coupon.code in messages[0].get_body(preferencelist=("plain",)).get_content()
    assert coupon.emailed_at is not None
    assert coupon.email_attempts == 2
    assert coupon.last_error == ""
    assert Coupon.objects.count() == 1


@pytest.mark.django_db
def test_the_task_leaves_a_coupon_it_cannot_email_to_the_sweep(smtp_settings, settings):
    settings.NPS_SEND_MAX_RETRIES = 3
    response = ResponseFactory(score=10, created_at=timezone.now() - timedelta(minutes=5))
    smtp_settings.handler.fail_next = 1000

    for retries in range(3):
        with pytest.raises(Retry):
            tasks.promoter_reward_task.apply(args=[response.pk], retries=retries)
    assert tasks.promoter_reward_task.apply(args=[response.pk], retries=3).get() == "deferred-to-sweep"

    coupon = Coupon.objects.get()
    assert coupon.emailed_at is None
    assert coupon.email_attempts == 4
    assert received(smtp_settings) == []

    smtp_settings.handler.fail_next = 0
    promoters_sweep()

    assert len(received(smtp_settings)) == 1
    assert Coupon.objects.get().code == coupon.code
    assert Coupon.objects.count() == 1


@pytest.mark.django_db
def test_with_smtp_down_the_coupon_is_issued_and_the_sweep_emails_it_once(answer, invitation, smtp_settings):
    smtp_settings.handler.fail_next = 1000

    response = answer(invitation, 10)

    coupon = Coupon.objects.get()
    assert coupon.emailed_at is None
    assert "451" in coupon.last_error
    assert received(smtp_settings) == []
    response.refresh_from_db()
    assert response.coupon_settled_at is None

    # The SMTP server is back a few minutes later; beat runs the sweep.
    smtp_settings.handler.fail_next = 0
    age(response, timedelta(minutes=5))
    promoters_sweep()
    promoters_sweep()
    promoter_reward(response_id=response.pk)
    tasks.promoter_reward_task.delay(response.pk)

    messages = received(smtp_settings)
    assert len(messages) == 1
    assert messages[0]["To"] == "Jane Doe <jane@example.com>" or messages[0]["To"] == "jane@example.com"
    assert coupon.code in messages[0].get_body(preferencelist=("plain",)).get_content()
    assert coupon.code in messages[0].get_body(preferencelist=("html",)).get_content()
    assert Coupon.objects.count() == 1
    coupon.refresh_from_db()
    assert coupon.emailed_at is not None
    assert coupon.last_error == ""
    response.refresh_from_db()
    assert response.coupon_settled_at is not None


@pytest.mark.django_db
def test_a_coupon_that_could_not_be_emailed_in_30_days_stays_unsent(answer, invitation, smtp_settings):
    smtp_settings.handler.fail_next = 1000
    response = answer(invitation, 10)
    smtp_settings.handler.fail_next = 0
    age(response, timedelta(days=30))

    promoters_sweep()

    assert received(smtp_settings) == []
    assert Coupon.objects.get().emailed_at is None


# --- Unsubscribed customers ---------------------------------------------------------


@pytest.mark.django_db
def test_a_customer_who_unsubscribed_before_answering_gets_no_coupon_email(answer, invitation, client):
    customer_unsubscribe(customer=invitation.customer)

    response = answer(invitation, 10)
    age(response, timedelta(minutes=5))
    promoters_sweep()

    assert mail.outbox == []
    response.refresh_from_db()
    assert response.coupon_settled_at is not None
    assert "coupon" not in client.get(f"/s/{invitation.token}/").content.decode().lower()


@pytest.mark.django_db
def test_a_customer_who_unsubscribed_after_a_failed_send_gets_no_coupon_email(answer, invitation, smtp_settings):
    smtp_settings.handler.fail_next = 1000
    response = answer(invitation, 10)
    customer_unsubscribe(customer=invitation.customer)
    smtp_settings.handler.fail_next = 0
    age(response, timedelta(minutes=5))

    promoters_sweep()
    promoter_reward(response_id=response.pk)

    assert received(smtp_settings) == []
    assert Coupon.objects.get().emailed_at is None
    response.refresh_from_db()
    assert response.coupon_settled_at is not None


# --- Redemption -------------------------------------------------------------------


def issued_coupon(**fields):
    response = ResponseFactory(score=10)
    coupon = coupon_issue(response=response)
    if fields:
        Coupon.objects.filter(pk=coupon.pk).update(**fields)
        coupon.refresh_from_db()
    return coupon


@pytest.mark.django_db
def test_it_redeems_a_coupon_whatever_the_case_of_the_code():
    coupon = issued_coupon()

    redeemed = coupon_redeem(code=f"  {coupon.code.lower()} ")

    assert redeemed.pk == coupon.pk
    assert redeemed.redeemed_at is not None
    assert abs(redeemed.redeemed_at - timezone.now()) < timedelta(seconds=10)
    assert Coupon.objects.get(pk=coupon.pk).redeemed_at == redeemed.redeemed_at


@pytest.mark.django_db
def test_a_coupon_is_redeemed_only_once():
    coupon = issued_coupon()
    first = coupon_redeem(code=coupon.code)

    with pytest.raises(CouponAlreadyRedeemed) as refused:
        coupon_redeem(code=coupon.code)

    assert refused.value.coupon.redeemed_at == first.redeemed_at
    assert Coupon.objects.get(pk=coupon.pk).redeemed_at == first.redeemed_at


@pytest.mark.django_db
def test_an_expired_coupon_is_not_redeemed():
    now = timezone.now()
    coupon = issued_coupon(issued_at=now - timedelta(days=31), expires_at=now - timedelta(days=1))

    with pytest.raises(CouponExpired):
        coupon_redeem(code=coupon.code)

    assert Coupon.objects.get(pk=coupon.pk).redeemed_at is None


@pytest.mark.django_db
@pytest.mark.parametrize("code", ["LP-2345-6789", "", "nonsense", "LP-" + "A" * 300])
def test_an_unknown_code_is_not_found(code):
    issued_coupon()

    with pytest.raises(CouponNotFound):
        coupon_redeem(code=code)

    assert not Coupon.objects.filter(redeemed_at__isnull=False).exists()


# --- PostgreSQL: the sweep's query plan and concurrency ------------------------------


@pytest.mark.django_db
def test_the_sweep_reads_only_unsettled_fresh_promoters_through_the_partial_index():
    require_postgresql()
    touchpoint = TouchpointFactory()
    customer = CustomerFactory()
    now = timezone.now()
    invitations = Invitation.objects.bulk_create(
        Invitation(customer=customer, touchpoint=touchpoint, expires_at=now, created_at=now - timedelta(days=i % 60))
        for i in range(5000)
    )
    Response.objects.bulk_create(
        Response(
            invitation=invitation,
            touchpoint=touchpoint,
            customer=customer,
            score=(9, 10, 8, 4)[i % 4],
            category=("promoter", "promoter", "passive", "detractor")[i % 4],
            created_at=invitation.created_at,
            coupon_settled_at=invitation.created_at if i % 4 < 2 else None,
        )
        for i, invitation in enumerate(invitations)
    )
    for days in (1, 2, 3):
        ResponseFactory(score=10, created_at=now - timedelta(days=days))
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Response._meta.db_table}")

    plan = (
        Response.objects.filter(
            category="promoter",
            coupon_settled_at__isnull=True,
            created_at__gt=now - PROMOTER_WINDOW,
            created_at__lte=now - SWEEP_GRACE,
        )
        .order_by("created_at")
        .explain()
    )

    print(plan)
    assert "response_promoter_open_idx" in plan
    assert "Seq Scan" not in plan
    assert promoters_sweep()["enqueued"] == 3


def run_at_once(*works):
    """Run each callable in its own thread (its own database connection), all released together."""
    start = threading.Barrier(len(works))
    errors = []

    def thread_for(work):
        def run():
            try:
                start.wait(timeout=10)
                work()
            except Exception as exc:  # reported to the test below
                errors.append(exc)
            finally:
                connections.close_all()

        return threading.Thread(target=run)

    threads = [thread_for(work) for work in works]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return errors


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_sweeps_and_a_task_at_once_issue_one_coupon_and_send_one_email(smtp_settings):
    require_postgresql()
    response = ResponseFactory(score=10, created_at=timezone.now() - timedelta(minutes=2))

    errors = run_at_once(
        promoters_sweep,
        promoters_sweep,
        lambda: tasks.promoter_reward_task.delay(response.pk),
    )

    assert errors == []
    assert Coupon.objects.filter(response=response).count() == 1
    assert Coupon.objects.count() == 1
    messages = received(smtp_settings)
    assert len(messages) == 1
    assert Coupon.objects.get().code in messages[0].get_body(preferencelist=("plain",)).get_content()
    assert Coupon.objects.get().emailed_at is not None


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_answers_of_one_customer_rewarded_at_once_get_one_coupon(smtp_settings):
    require_postgresql()
    first = ResponseFactory(score=10, created_at=timezone.now() - timedelta(minutes=2))
    second = ResponseFactory(
        score=9, invitation__customer=first.customer, created_at=timezone.now() - timedelta(minutes=1)
    )
    assert second.customer == first.customer

    errors = run_at_once(
        lambda: tasks.promoter_reward_task.delay(first.pk),
        lambda: tasks.promoter_reward_task.delay(second.pk),
        promoters_sweep,
    )

    assert errors == []
    assert Coupon.objects.filter(customer=first.customer).count() == 1
    assert len(received(smtp_settings)) == 1
    assert Response.objects.filter(coupon_settled_at__isnull=True).count() == 0
