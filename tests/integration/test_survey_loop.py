"""The survey loop end to end, with a real Celery worker, Redis, PostgreSQL and SMTP server.

API call -> invitation committed -> task published to Redis -> worker process
claims it in PostgreSQL and emails it over SMTP -> the customer follows a
score link and answers. Plus what must hold when messages are redelivered and
when the SMTP server is down.
"""

import re
import time
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from surveys.invitations.services import invitation_request, invitations_sweep
from surveys.models import Invitation, Response
from surveys.tasks import invitations_send_batch_task
from tests.factories import CustomerFactory
from tests.integration.conftest import WORKER_SITE_URL

# Committed transactions, so the worker process sees the rows. With serialized_rollback
# the flush after each test leaves the tables empty (no post_migrate), so the
# serialized_rollback tests that follow can restore content types and permissions
# under their original ids.
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SCORE_LINK = re.compile(re.escape(WORKER_SITE_URL) + r"/s/([A-Za-z0-9_-]+)/\?score=(\d+)")


def _survey_marker(invitation: Invitation) -> str:
    return f"/s/{invitation.token}/"


def _text_and_html(message) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    return text, html


def _wait_for_invitation(invitation_id: int, *, timeout: float = 20, **expected) -> Invitation:
    deadline = timezone.now() + timedelta(seconds=timeout)
    while True:
        invitation = Invitation.objects.get(pk=invitation_id)
        if all(check(getattr(invitation, field)) for field, check in expected.items()):
            return invitation
        assert timezone.now() < deadline, f"invitation {invitation_id} never got there: {invitation.__dict__}"
        time.sleep(0.1)


def test_api_invitation_is_emailed_by_the_worker_and_answered(client, api_key, touchpoint, celery_worker, worker_smtp):
    response = client.post(
        "/api/v1/invitations",
        {"touchpoint": touchpoint.slug, "email": "jane@example.com", "name": "Jane Doe"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_key}",
    )
    assert response.status_code == 201, response.content
    invitation = Invitation.objects.select_related("customer").get(pk=response.json()["id"])
    assert response.json()["survey_url"] == f"{WORKER_SITE_URL}/s/{invitation.token}/"

    [message] = worker_smtp.wait_for_messages(_survey_marker(invitation), timeout=20)

    assert message["To"] == "jane@example.com"
    unsubscribe_url = f"{WORKER_SITE_URL}/u/{invitation.customer.unsubscribe_token}/"
    # A long header is folded onto a continuation line: compare the unfolded value.
    assert message["List-Unsubscribe"].strip() == f"<{unsubscribe_url}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = _text_and_html(message)
    for part in (text, html):
        links = SCORE_LINK.findall(part)
        assert sorted(int(score) for _, score in links) == list(range(11)), links
        assert {token for token, _ in links} == {invitation.token}
        assert unsubscribe_url in part

    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.SENT
    assert invitation.sent_at is not None
    assert invitation.send_attempts == 1

    # The customer clicks "9" in the email: the page opens with 9 chosen and records nothing yet.
    link = next(url.group(0) for url in SCORE_LINK.finditer(text) if url.group(2) == "9")
    parts = urlsplit(link)
    page = client.get(f"{parts.path}?{parts.query}")
    assert page.status_code == 200
    assert re.search(rb'<input[^>]*value="9"[^>]*checked', page.content)
    assert Response.objects.count() == 0

    answer = client.post(parts.path, {"score": "9", "reason": "Quick delivery, friendly driver."}, follow=True)
    assert answer.status_code == 200
    assert b"Thank you for your answer" in answer.content

    recorded = Response.objects.get()
    assert (recorded.invitation_id, recorded.score, recorded.category) == (invitation.pk, 9, "promoter")
    assert recorded.reason == "Quick delivery, friendly driver."
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.SENT
    assert invitation.answered_at is not None
    # Still the one survey email, whatever else the answer triggers.
    assert len(worker_smtp.messages(_survey_marker(invitation))) == 1


def test_redelivered_send_tasks_never_email_twice(touchpoint, celery_worker, worker_smtp):
    customer = CustomerFactory()
    outcome = invitation_request(touchpoint=touchpoint, customer=customer)
    invitation = outcome.invitation
    worker_smtp.wait_for_messages(_survey_marker(invitation))
    _wait_for_invitation(invitation.pk, status=lambda status: status == Invitation.Status.SENT)

    redeliveries = [invitations_send_batch_task.delay([invitation.pk]) for _ in range(2)]

    assert [celery_worker.task_result(task.id) for task in redeliveries] == ["{'not-claimed': 1}"] * 2
    assert len(worker_smtp.messages(_survey_marker(invitation))) == 1
    invitation.refresh_from_db()
    assert (invitation.status, invitation.send_attempts) == (Invitation.Status.SENT, 1)

    # Three copies of the same message at once, on two worker processes: one claim wins.
    later = invitation_request(
        touchpoint=touchpoint, customer=CustomerFactory(), send_after=timezone.now() + timedelta(hours=1)
    ).invitation
    copies = [invitations_send_batch_task.delay([later.pk]) for _ in range(3)]

    results = sorted(celery_worker.task_result(task.id) for task in copies)
    assert results == ["{'not-claimed': 1}", "{'not-claimed': 1}", "{'sent': 1}"]
    assert len(worker_smtp.messages(_survey_marker(later))) == 1
    later.refresh_from_db()
    assert (later.status, later.send_attempts) == (Invitation.Status.SENT, 1)


def test_smtp_outage_leaves_invitation_pending_and_it_is_sent_once_when_smtp_is_back(
    touchpoint, celery_worker, worker_smtp
):
    worker_smtp.stop()
    invitation = invitation_request(touchpoint=touchpoint, customer=CustomerFactory()).invitation

    # The worker tried, failed to connect, recorded why and scheduled a retry.
    invitation = _wait_for_invitation(invitation.pk, last_error=bool, send_attempts=lambda n: n == 1)
    assert invitation.status == Invitation.Status.PENDING
    assert "refused" in invitation.last_error.lower() or "Connection" in invitation.last_error
    assert invitation.send_after > timezone.now() + timedelta(seconds=20)  # postponed for the retry backoff
    celery_worker.wait_for_log(r"invitations_send_batch_task\[[^\]]+\] retry: Retry in 30s", timeout=10)
    assert worker_smtp.messages() == []

    # SMTP is back. Rather than wait out the 30 s backoff, let the retry time pass
    # and run the beat sweep, which re-enqueues due pending invitations.
    worker_smtp.start()
    Invitation.objects.filter(pk=invitation.pk).update(send_after=timezone.now() - timedelta(minutes=1))
    assert invitations_sweep() == {"reclaimed": 0, "enqueued": 1}

    worker_smtp.wait_for_messages(_survey_marker(invitation))
    invitation = _wait_for_invitation(invitation.pk, status=lambda status: status == Invitation.Status.SENT)
    assert invitation.send_attempts == 2
    assert invitation.last_error == ""
    assert len(worker_smtp.messages(_survey_marker(invitation))) == 1
