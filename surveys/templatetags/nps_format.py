"""Small formatting filters for NPS figures."""

from django import template

register = template.Library()


@register.filter
def signed(value, digits=0):
    """+12, −3, 0: NPS and changes always show their sign."""
    if value is None:
        return "—"
    number = round(float(value), int(digits))
    text = f"{abs(number):.{int(digits)}f}"
    if number > 0:
        return "+" + text
    if number < 0:
        return "−" + text
    return text


@register.filter
def percent(value, digits=0):
    if value is None:
        return "—"
    return f"{float(value):.{int(digits)}f}%"


@register.filter
def duration_hours(value):
    if value is None:
        return "—"
    hours = value.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"
