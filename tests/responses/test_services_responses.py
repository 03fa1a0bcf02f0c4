"""Recording a customer's answer, and the database constraints that guard answers."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from surveys.models import Invitation, Response
from surveys.responses.services import AlreadyAnswered, InvitationExpired, response_submit

from ..factories import InvitationFactory, ResponseFactory


@pytest.mark.django_db
@pytest.mark.parametrize(
    "score, category",
    [(0, "detractor"), (6, "detractor"), (7, "passive"), (8, "passive"), (9, "promoter"), (10, "promoter")],
)
def test_it_records_the_score_and_its_category(invitation, score, category):
    response_submit(invitation=invitation, score=score, reason="  Quick delivery.  ")

    response = Response.objects.get(invitation=invitation)
    assert (response.score, response.category, response.reason) == (score, category, "Quick delivery.")
    assert response.customer == invitation.customer
    assert response.touchpoint == invitation.touchpoint


@pytest.mark.django_db
def test_it_marks_the_invitation_answered(invitation):
    response = response_submit(invitation=invitation, score=8)

    invitation.refresh_from_db()
    assert invitation.answered_at is not None
    assert invitation.answered_at == response.created_at


@pytest.mark.django_db
def test_the_first_answer_stands(invitation):
    response_submit(invitation=invitation, score=3, reason="Late.")

    with pytest.raises(AlreadyAnswered):
        response_submit(invitation=invitation, score=10, reason="Actually great!")

    response = Response.objects.get(invitation=invitation)
    assert (response.score, response.category, response.reason) == (3, "detractor", "Late.")


@pytest.mark.django_db
def test_it_refuses_an_answer_after_the_survey_closed(customer, touchpoint):
    invitation = InvitationFactory(
        customer=customer, touchpoint=touchpoint, expires_at=timezone.now() - timedelta(seconds=1)
    )

    with pytest.raises(InvitationExpired):
        response_submit(invitation=invitation, score=9)

    assert not Response.objects.exists()
    assert Invitation.objects.get(pk=invitation.pk).answered_at is None


@pytest.mark.django_db
@pytest.mark.parametrize("score", [-1, 11, 100, "7", 7.0, 9.5, None, True, False])
def test_it_rejects_bad_score(invitation, score):
    with pytest.raises(ValidationError):
        response_submit(invitation=invitation, score=score)

    assert not Response.objects.exists()
    assert Invitation.objects.get(pk=invitation.pk).answered_at is None


@pytest.mark.django_db
def test_it_accepts_a_reason_of_exactly_the_maximum_length(invitation):
    response_submit(invitation=invitation, score=5, reason="x" * 2000)

    assert len(Response.objects.get(invitation=invitation).reason) == 2000


@pytest.mark.django_db
@pytest.mark.parametrize("reason", ["x" * 2001, "Bad\x00service", "\x00"])
def test_it_rejects_bad_reason(invitation, reason):
    with pytest.raises(ValidationError):
        response_submit(invitation=invitation, score=5, reason=reason)

    assert not Response.objects.exists()
    assert Invitation.objects.get(pk=invitation.pk).answered_at is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fields",
    [
        {"score": 11, "category": "promoter"},
        {"score": 3, "category": "promoter"},
        {"score": 10, "category": "detractor"},
        {"score": 8, "category": "promoter"},
        {"score": 5, "category": "bogus"},
        {"score": 5, "category": "detractor", "reason": "x" * 2001},
    ],
)
def test_the_database_refuses_an_impossible_response(invitation, fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        ResponseFactory(invitation=invitation, **fields)

    assert not Response.objects.exists()


@pytest.mark.django_db
def test_the_database_allows_only_one_response_per_invitation(invitation):
    ResponseFactory(invitation=invitation, score=9)

    with pytest.raises(IntegrityError), transaction.atomic():
        ResponseFactory(invitation=invitation, score=2)

    assert Response.objects.get().score == 9
