"""The statement counts of the hot paths, pinned: every customer opens the survey and answers it, every
invitation is sent in a batch (bench/http.py and bench/send_invitations.py measure the time).

Counted inside the test's transaction, so an answer's own transaction shows as a SAVEPOINT and its
RELEASE. On PostgreSQL the survey lookup (with the opened mark) and the answer are one statement
each, prepared once per connection (the warm-up below); SQLite runs them a statement at a time.
"""

import pytest
from django.db import connection

from surveys.invitations.services import invitations_send_batch

from ..factories import InvitationFactory

pytestmark = pytest.mark.django_db

# (PostgreSQL, SQLite)
EXPECTED = {
    "survey page": (1, 2),  # the lookup with the opened mark; SQLite: the lookup, then the mark
    "promoter answer": (4, 7),  # the lookup; savepoint, the answer (+ share link), release
    "detractor answer": (4, 6),  # the lookup; savepoint, the answer (+ case), release
}
# A send batch: claim (savepoint, lock, mark, release), load, the suppression list; then each email's sent
# mark: on PostgreSQL its own transaction (here a savepoint) with SET LOCAL synchronous_commit, then the update.
BATCH_FIXED = 6
PER_EMAIL = {"postgresql": 4, "sqlite": 1}


def expected(name: str) -> int:
    postgresql, sqlite = EXPECTED[name]
    return postgresql if connection.vendor == "postgresql" else sqlite


@pytest.fixture
def warm(client, touchpoint):
    """A page and both kinds of answer first, so PostgreSQL has prepared the statements on this connection."""
    for score in ("9", "2"):
        invitation = InvitationFactory(touchpoint=touchpoint)
        client.get(f"/s/{invitation.token}/?score={score}")
        client.post(f"/s/{invitation.token}/", {"score": score, "reason": "Warm-up"})
    return client


def test_the_survey_page_costs_one_statement(warm, touchpoint, django_assert_num_queries):
    invitation = InvitationFactory(touchpoint=touchpoint)

    with django_assert_num_queries(expected("survey page")):
        page = warm.get(f"/s/{invitation.token}/?score=9")

    assert page.status_code == 200


@pytest.mark.parametrize("score, name", [(10, "promoter answer"), (2, "detractor answer")])
def test_an_answer_costs_the_lookup_and_one_statement(warm, touchpoint, django_assert_num_queries, score, name):
    invitation = InvitationFactory(touchpoint=touchpoint)

    with django_assert_num_queries(expected(name)):
        answered = warm.post(f"/s/{invitation.token}/", {"score": str(score), "reason": "Fine"})

    assert answered.status_code == 302


def test_a_send_batch_costs_a_statement_per_email_and_a_few_for_the_batch(touchpoint, django_assert_num_queries):
    invitations = [InvitationFactory(touchpoint=touchpoint, status="pending", sent_at=None) for _ in range(5)]
    invitations_send_batch(invitation_ids=[invitations[0].pk])  # templates rendered, statements prepared

    with django_assert_num_queries(BATCH_FIXED + 4 * PER_EMAIL[connection.vendor]):
        outcome = invitations_send_batch(invitation_ids=[i.pk for i in invitations[1:]])

    assert outcome.results == {"sent": 4}
