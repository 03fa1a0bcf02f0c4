"""The follow-up rules: who gets a case, when it is due, and when a customer counts as won back."""

from datetime import datetime, timedelta

from surveys.models import Category


def opens_case(*, category: str, touchpoint) -> bool:
    """A detractor's answer opens a follow-up case; a passive's too where the touchpoint asks for it."""
    return category == Category.DETRACTOR or (category == Category.PASSIVE and touchpoint.open_cases_for_passives)


def case_due_at(*, touchpoint, opened_at: datetime) -> datetime:
    """A case is due the touchpoint's case_due_hours (default 48) after it opened."""
    return opened_at + timedelta(hours=touchpoint.case_due_hours)


def wins_back(*, score: int) -> bool:
    """A customer with a follow-up case who later answers 7 or more (no longer a detractor) was won back."""
    return Category.for_score(score) != Category.DETRACTOR
