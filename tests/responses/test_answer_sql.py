"""The answer's one hand-written statement (PostgreSQL) writes exactly the rows of its ORM version."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from surveys.models import Category, FollowUpCase, Invitation, ReferralLink, Response
from surveys.responses.sql import Answer

from ..conftest import require_postgresql
from ..factories import CustomerFactory, InvitationFactory, ResponseFactory, TouchpointFactory

pytestmark = pytest.mark.django_db


def answer_written(way: str, *, score: int, touchpoint, earlier_case: bool) -> dict:
    """One customer's answer written `way`, and every row it touched, with times relative to the answer."""
    customer = CustomerFactory()
    if earlier_case:
        earlier = ResponseFactory(invitation=InvitationFactory(customer=customer, touchpoint=touchpoint), score=2)
        opened = timezone.now() - timedelta(days=3)
        FollowUpCase.objects.create(response=earlier, customer=customer, touchpoint=touchpoint, opened_at=opened,
                                    due_at=opened + timedelta(hours=48))
    invitation = InvitationFactory(customer=customer, touchpoint=touchpoint)
    now = timezone.now()
    response = Response(invitation=invitation, touchpoint=touchpoint, customer=customer, score=score,
                        category=Category.for_score(score), reason="Fine", created_at=now, updated_at=now)
    answer = Answer.of(response=response, now=now)
    with transaction.atomic():
        if way == "one statement":
            answer.write_in_one_statement(connection)
        else:
            answer.write_with_the_orm()
    saved = Response.objects.get(invitation=invitation)
    return {
        "response": (saved.pk == response.pk, saved.score, saved.category, saved.reason, saved.created_at - now),
        "answered": Invitation.objects.get(pk=invitation.pk).answered_at - now,
        "cases": sorted(
            (case.response_id == saved.pk, case.status, case.due_at - case.opened_at,
             case.won_back_at - now if case.won_back_at else None, case.won_back_response_id == saved.pk)
            for case in FollowUpCase.objects.filter(customer=customer)
        ),
        "links": [(link.response_id == saved.pk, link.touchpoint_id) for link in ReferralLink.objects.filter(customer=customer)],
    }


@pytest.mark.parametrize(
    "score, earlier_case, open_cases_for_passives",
    [(10, False, False), (9, True, False), (2, False, False), (3, True, False), (8, True, True), (7, False, False)],
)
def test_the_one_statement_answer_writes_what_the_orm_version_writes(score, earlier_case, open_cases_for_passives):
    require_postgresql()
    touchpoint = TouchpointFactory(open_cases_for_passives=open_cases_for_passives, case_due_hours=36)

    by_statement = answer_written("one statement", score=score, touchpoint=touchpoint, earlier_case=earlier_case)
    by_orm = answer_written("orm", score=score, touchpoint=touchpoint, earlier_case=earlier_case)

    assert by_statement == by_orm
    assert by_statement["response"][0] and by_statement["answered"] == timedelta(0)
