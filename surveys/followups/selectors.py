"""Reads of follow-up cases: the managers' lists, a case, its notes, who may work it.
"""


from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.utils import timezone

from surveys.models import (
    CaseNote,
    FollowUpCase,
)

CASE_FILTERS = {
    "open": "Open",
    "mine": "Mine",
    "overdue": "Overdue",
    "resolved": "Resolved",
    "all": "All",
}


def cases_list(*, user, view: str = "open") -> QuerySet[FollowUpCase]:
    cases = FollowUpCase.objects.select_related("customer", "touchpoint", "response", "assignee")
    unresolved = ~Q(status=FollowUpCase.Status.RESOLVED)
    if view == "mine":
        return cases.filter(unresolved, assignee=user).order_by("due_at")
    if view == "overdue":
        return cases.filter(unresolved, due_at__lt=timezone.now()).order_by("due_at")
    if view == "resolved":
        return cases.filter(status=FollowUpCase.Status.RESOLVED).order_by("-resolved_at")
    if view == "all":
        return cases.order_by("-opened_at")
    return cases.filter(unresolved).order_by("due_at")


def case_detail(*, case_id: int) -> FollowUpCase | None:
    return (
        FollowUpCase.objects.select_related("customer", "touchpoint", "response", "assignee", "won_back_response")
        .filter(pk=case_id)
        .first()
    )


def case_notes(*, case: FollowUpCase) -> QuerySet[CaseNote]:
    return CaseNote.objects.filter(case=case).select_related("author").order_by("created_at")


def case_assignees() -> QuerySet:
    """Users who can work cases: superusers and anyone allowed to change them."""
    User = get_user_model()
    return (
        User.objects.filter(is_active=True)
        .filter(
            Q(is_superuser=True)
            | Q(user_permissions__codename="change_followupcase")
            | Q(groups__permissions__codename="change_followupcase")
        )
        .distinct()
        .order_by("username")
    )
