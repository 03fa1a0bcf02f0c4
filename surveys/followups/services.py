"""Follow-up cases of detractors: the managers' alert, assignment, notes and status.
"""

import smtplib
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from surveys.core import dispatch, validation
from surveys.core.sweeps import EMAIL_CLAIM_TIMEOUT, SWEEP_BATCH, SWEEP_GRACE, SendFailed
from surveys.dashboard.services import stats_mark_dirty
from surveys.mail import messages as emails
from surveys.models import (
    CaseNote,
    FollowUpCase,
)


def case_alert_send(*, case_id: int) -> str:
    """Email the touchpoint's alert recipients about a new case, once."""
    now = timezone.now()
    claimed = (
        FollowUpCase.objects.filter(pk=case_id, alert_sent_at__isnull=True)
        .filter(Q(alert_claimed_at__isnull=True) | Q(alert_claimed_at__lt=now - EMAIL_CLAIM_TIMEOUT))
        .update(alert_claimed_at=now)
    )
    if not claimed:
        return "not-claimed"
    case = FollowUpCase.objects.select_related("customer", "touchpoint", "response").get(pk=case_id)
    recipients = [address.strip() for address in case.touchpoint.alert_recipients.split(",") if address.strip()]
    if recipients:
        try:
            emails.case_alert_message(case, recipients).send()
        except (smtplib.SMTPException, OSError) as exc:
            FollowUpCase.objects.filter(pk=case_id).update(alert_claimed_at=None)
            raise SendFailed(str(exc)) from exc
    FollowUpCase.objects.filter(pk=case_id).update(alert_sent_at=timezone.now())
    return "sent" if recipients else "no-recipients"


def case_alerts_sweep() -> int:
    since = timezone.now() - timedelta(days=7)
    due_ids = list(
        FollowUpCase.objects.filter(alert_sent_at__isnull=True, opened_at__gte=since, opened_at__lte=timezone.now() - SWEEP_GRACE)
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    for case_id in due_ids:
        dispatch.enqueue("case_alert_task", case_id)
    return len(due_ids)


@transaction.atomic
def case_assign(*, case: FollowUpCase, assignee, by) -> None:
    FollowUpCase.objects.filter(pk=case.pk).update(assignee=assignee)
    who = assignee.get_username() if assignee else "nobody"
    CaseNote.objects.create(case=case, author=by, text=f"Assigned to {who}.")


@transaction.atomic
def case_note_add(*, case: FollowUpCase, author, text: str) -> CaseNote:
    text = validation.clean_text(text, label="The note", max_length=5000)
    if not text:
        raise ValidationError("A note needs some text.")
    return CaseNote.objects.create(case=case, author=author, text=text)


@transaction.atomic
def case_status_set(*, case: FollowUpCase, status: str, by) -> None:
    if status not in FollowUpCase.Status.values:
        raise ValidationError(f"Unknown status {status!r}.")
    now = timezone.now()
    changes = {"status": status}
    if status == FollowUpCase.Status.CONTACTED and case.contacted_at is None:
        changes["contacted_at"] = now
    if status == FollowUpCase.Status.RESOLVED:
        changes["resolved_at"] = now
        if case.contacted_at is None:
            changes["contacted_at"] = now
    else:
        changes["resolved_at"] = None
    FollowUpCase.objects.filter(pk=case.pk).update(**changes)
    stats_mark_dirty(case.opened_at)
    stats_mark_dirty(case.resolved_at)  # a case reopened leaves its old resolved day's histogram
    CaseNote.objects.create(case=case, author=by, text=f"Status set to {FollowUpCase.Status(status).label.lower()}.")
