"""Responses: the customer's answer and what it sets in motion, the survey page's lookup, answers
recorded or changed through the API.
"""

from contextlib import nullcontext
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from surveys.core import db, dispatch, validation
from surveys.dashboard.services import stats_mark_dirty
from surveys.followups import rules as followup_rules
from surveys.models import (
    REASON_MAX_LENGTH,
    Category,
    Customer,
    FollowUpCase,
    Invitation,
    Response,
    Touchpoint,
)
from surveys.promoters.services import referral_link_ensure
from surveys.responses.sql import Answer, invitation_for_token
from surveys.webhooks import services as webhooks


class InvitationClosed(Exception):
    """The invitation was cancelled, never delivered, or its person erased: it takes no answer."""



class AlreadyAnswered(Exception):
    pass



class InvitationExpired(Exception):
    pass



def invitation_open(*, token: str) -> Invitation | None:
    """The survey page's invitation (as `responses.sql.invitation_for_token`), marked opened in the same statement."""
    return invitation_for_token(token=token, mark_opened_at=timezone.now())



def response_submit(*, invitation: Invitation, score: int, reason: str = "") -> Response:
    """Record the customer's answer and what it sets in motion. The first answer stands."""
    score = validation.clean_score(score)
    reason = validation.clean_text(reason, label="The reason", max_length=REASON_MAX_LENGTH)
    if invitation.is_closed:
        raise InvitationClosed()
    now = timezone.now()
    # The unique constraint on the invitation refuses a second answer (below);
    # only an expired survey needs to ask first, so that its answer still shows.
    if invitation.is_expired(now):
        if Response.objects.filter(invitation=invitation).exists():
            raise AlreadyAnswered()
        raise InvitationExpired()
    touchpoint = invitation.touchpoint
    response = Response(
        invitation=invitation,
        # The objects, not their ids: the follow-up reads them, the invitation has them loaded.
        touchpoint=touchpoint,
        customer=invitation.customer,
        score=score,
        category=Category.for_score(score),
        reason=reason,
        created_at=now,
        updated_at=now,
    )
    answer = Answer.of(response=response, now=now)
    # One query for both events an answer can raise, skipped when the survey's lookup found no endpoint at all.
    endpoints = webhooks.endpoints_by_event() if getattr(invitation, "webhooks_listening", True) else {}
    connection = db.connection_for(Response)
    in_one_statement = connection.vendor == "postgresql"
    try:
        # One statement is atomic by itself; several (or a savepoint in the caller's transaction) need atomic().
        with transaction.atomic() if endpoints or not in_one_statement or connection.in_atomic_block else nullcontext():
            if in_one_statement:
                answer.write_in_one_statement(connection)
            else:
                answer.write_with_the_orm()
            _response_events(response=response, case=answer.case, endpoints=endpoints)
            if answer.link is not None:
                dispatch.follow_up_on_commit("promoter_reward_task", response.pk)
            if answer.case is not None:
                dispatch.follow_up_on_commit("case_alert_task", answer.case.pk)
    except IntegrityError:
        if Response.objects.filter(invitation=invitation).exists():
            raise AlreadyAnswered() from None
        raise
    return response


def _response_events(*, response: Response, case: FollowUpCase | None, endpoints: dict[str, list[int]]) -> None:
    """The webhook deliveries an answer queues, in the answer's own transaction."""
    if not endpoints:
        return
    event_data = webhooks.response_event_data(response)
    if endpoints.get("response.created"):
        webhooks.webhook_event_emit(
            event="response.created", data=event_data, endpoint_ids=endpoints["response.created"],
            customer_id=response.customer_id,
        )
    if case is not None and endpoints.get("case.opened"):
        webhooks.webhook_event_emit(
            event="case.opened",
            data={**event_data, "id": case.pk, "response_id": response.pk, "status": case.status,
                  "due_at": case.due_at.isoformat()},
            endpoint_ids=endpoints["case.opened"],
            customer_id=response.customer_id,
        )



def _invitation_from_elsewhere(
    *, customer: Customer, touchpoint: Touchpoint, at, source: str, properties: dict | None, answered: bool = False
) -> Invitation:
    """The invitation an answer collected elsewhere stands on (through the API, or imported history): sent at `at`."""
    return Invitation.objects.create(
        customer=customer,
        touchpoint=touchpoint,
        status=Invitation.Status.SENT,
        source=source,
        created_at=at,
        send_after=at,
        sent_at=at,
        answered_at=at if answered else None,
        expires_at=at + timedelta(days=touchpoint.expiry_days),
        properties=properties or {},
    )


@transaction.atomic
def response_record(
    *, customer: Customer, touchpoint: Touchpoint, score: int, reason: str = "", properties: dict | None = None
) -> Response:
    """Record an answer collected elsewhere (POST /v1/survey_responses): it follows the same flows as a survey."""
    invitation = _invitation_from_elsewhere(
        customer=customer, touchpoint=touchpoint, at=timezone.now(), source=Invitation.Source.API, properties=properties
    )
    return response_submit(invitation=invitation, score=score, reason=reason)


@transaction.atomic
def response_update(
    *, response: Response, score: int | None = None, reason: str | None = None, properties: dict | None = None
) -> Response:
    """Change an answer (PUT /v1/survey_responses/<id>) under the rules of a new one.

    The category follows the score, and a new category sets in motion what an
    answer in it would have: a detractor's follow-up case, a promoter's share
    link and coupon (inside the 30-day window), a customer won back.
    """
    now = timezone.now()
    changes = {"updated_at": now}
    if score is not None:
        score = validation.clean_score(score)
        changes.update(score=score, category=Category.for_score(score))
    if reason is not None:
        changes["reason"] = validation.clean_text(reason, label="The comment", max_length=REASON_MAX_LENGTH)
    response = Response.objects.select_for_update().select_related("touchpoint", "customer").get(pk=response.pk)
    before = response.category
    Response.objects.filter(pk=response.pk).update(**changes)
    if properties is not None:
        Invitation.objects.filter(pk=response.invitation_id).update(properties=properties)
    stats_mark_dirty(response.created_at)
    response.refresh_from_db()
    if response.category != before:
        _response_recategorised(response=response, now=now)
    return response


def _response_recategorised(*, response: Response, now) -> None:
    touchpoint = response.touchpoint
    if followup_rules.wins_back(score=response.score):
        # As for a new answer: the cases opened before this answer was given (not later ones, nor its own).
        FollowUpCase.objects.filter(
            customer_id=response.customer_id, won_back_at__isnull=True, opened_at__lt=response.created_at
        ).update(won_back_at=now, won_back_response=response)
    if response.category == Category.PROMOTER:
        referral_link_ensure(customer_id=response.customer_id, touchpoint=touchpoint, response=response)
        if response.coupon_settled_at is None:
            dispatch.follow_up_on_commit("promoter_reward_task", response.pk)
    elif followup_rules.opens_case(category=response.category, touchpoint=touchpoint) and not (
        FollowUpCase.objects.filter(response=response).exists()
    ):
        case = FollowUpCase.objects.create(
            response=response,
            customer_id=response.customer_id,
            touchpoint=touchpoint,
            opened_at=now,
            due_at=followup_rules.case_due_at(touchpoint=touchpoint, opened_at=now),
        )
        endpoints = webhooks.endpoints_by_event()
        _response_events(response=response, case=case, endpoints={"case.opened": endpoints.get("case.opened", [])})
        dispatch.follow_up_on_commit("case_alert_task", case.pk)


def response_import(
    *, customer: Customer, touchpoint: Touchpoint, score: int, reason: str, created_at, import_key: str,
    properties: dict,
) -> Response:
    """An answer from imported history, at its own time: it sets nothing in motion (no coupon, case, alert,
    webhook or email), and its import key makes a second import of the same row add nothing."""
    score = validation.clean_score(score)
    invitation = _invitation_from_elsewhere(
        customer=customer, touchpoint=touchpoint, at=created_at, source=Invitation.Source.HISTORY,
        properties=properties, answered=True,
    )
    return Response.objects.create(
        invitation=invitation,
        touchpoint=touchpoint,
        customer=customer,
        score=score,
        category=Category.for_score(score),
        reason=validation.clean_text(reason, label="The comment", max_length=REASON_MAX_LENGTH),
        created_at=created_at,
        updated_at=created_at,
        coupon_settled_at=created_at,  # no coupon is ever due for history
        import_key=import_key,
    )
