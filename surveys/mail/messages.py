"""Builds the emails customers receive, from subject / text / HTML templates.

Every customer email carries the customer's unsubscribe link in its body and in
the `List-Unsubscribe` / `List-Unsubscribe-Post` headers (RFC 2369, RFC 8058).
Links are absolute, built from `SITE_URL`.
"""

import re
import secrets

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.html import conditional_escape

from surveys.models import Customer, Invitation
from surveys.touchpoints.selectors import customer_language, touchpoint_wording

from .mime import CustomerEmail


def absolute_url(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def unsubscribe_url(customer: Customer) -> str:
    return absolute_url(reverse("unsubscribe", args=[customer.unsubscribe_token]))


def survey_url(invitation: Invitation) -> str:
    return absolute_url(reverse("survey", args=[invitation.token]))


def question_text(touchpoint, language: str | None = None, product: str | None = None) -> str:
    question, _ = touchpoint_wording(
        touchpoint=touchpoint, language=language or settings.LANGUAGE_CODE, product=product
    )
    return question


def _single_line(text: str) -> str:
    # Header values must never carry a line break, whatever the template made.
    return " ".join(text.split())


def customer_message(*, template: str, customer: Customer, context: dict) -> CustomerEmail:
    """Render templates/emails/<template>_{subject.txt,body.txt,body.html} for one customer."""
    with translation.override(customer_language(customer=customer)):
        return _customer_message(template=template, customer=customer, context=context)


def _customer_message(*, template: str, customer: Customer, context: dict) -> CustomerEmail:
    unsubscribe = unsubscribe_url(customer)
    context = {
        **context,
        "customer": customer,
        "company": settings.NPS_COMPANY_NAME,
        "unsubscribe_url": unsubscribe,
    }
    return _customer_email(
        customer=customer,
        unsubscribe=unsubscribe,
        subject=_single_line(render_to_string(f"emails/{template}_subject.txt", context)),
        text=render_to_string(f"emails/{template}_body.txt", context),
        html=render_to_string(f"emails/{template}_body.html", context),
    )


def _customer_email(*, customer: Customer, unsubscribe: str, subject: str, text: str, html: str) -> CustomerEmail:
    message = CustomerEmail(
        subject=subject,
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[customer.email],
        headers={
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        alternatives=[(html, "text/html")],
    )
    # Whom the email is about, for the development mail files (never a header: see mail/files.py).
    message.customer_id = customer.pk
    return message


def invitation_message(invitation: Invitation, reminder: bool = False) -> CustomerEmail:
    [message] = invitation_messages([invitation], reminder=reminder)
    return message


# Stand-ins for what differs from one customer to the next: random per process, letters and
# digits only, so escaping and URL quoting leave them as they are and no customer can guess them.
_MARK = f"lp{secrets.token_hex(8)}"
_MARKS = re.compile(f"{_MARK}(name|survey|unsubscribe)")
_URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")


class _StandInCustomer:
    """The customer as the invitation templates see it when rendered once for many customers."""

    def __init__(self, has_name: bool):
        self.name = f"{_MARK}name" if has_name else ""


def _link_maker(view: str):
    """token -> absolute URL of `view`, as `reverse` would give it, reversed once."""
    before, after = absolute_url(reverse(view, args=[_MARK])).split(_MARK)

    def link(token: str) -> str:
        return f"{before}{token}{after}" if _URL_SAFE.fullmatch(token) else absolute_url(reverse(view, args=[token]))

    return link


def _filler(values: dict[str, str]):
    """The replacement `re.sub` calls for each stand-in: the customer's value for it."""
    return lambda mark: values[mark[1]]


def invitation_messages(invitations, *, reminder: bool = False) -> list[CustomerEmail]:
    """The invitation (or reminder) emails for many invitations, in order.

    Customers who share a language, a touchpoint and a question get the same
    email but for their name and their two links (survey, unsubscribe). So the
    subject / text / HTML templates are rendered once per such group (and kept
    for the next batches), with stand-ins for those three values, and each
    customer's values replace the stand-ins: as typed in the subject and the
    text, HTML-escaped in the HTML, exactly as rendering the templates for that
    customer would put them.
    """
    survey_link = _link_maker("survey")
    unsubscribe_link = _link_maker("unsubscribe")
    questions: dict[tuple, str] = {}
    messages = []
    for invitation in invitations:
        customer, touchpoint = invitation.customer, invitation.touchpoint
        language = customer_language(customer=customer)
        product = (invitation.properties or {}).get("question_product_name")
        wording_key = (touchpoint.pk, language, product)
        if wording_key not in questions:
            questions[wording_key] = question_text(touchpoint, language, product=product)
        question = questions[wording_key]
        subject, text, html = _rendered_invitation(
            language=language, touchpoint=touchpoint, question=question, reminder=reminder, has_name=bool(customer.name)
        )
        values = {
            "name": customer.name,
            "survey": survey_link(invitation.token),
            "unsubscribe": unsubscribe_link(customer.unsubscribe_token),
        }
        escaped = {key: conditional_escape(value) for key, value in values.items()}
        plain_value, escaped_value = _filler(values), _filler(escaped)
        messages.append(
            _customer_email(
                customer=customer,
                unsubscribe=values["unsubscribe"],
                subject=_single_line(_MARKS.sub(plain_value, subject)),
                text=_MARKS.sub(plain_value, text),
                html=_MARKS.sub(escaped_value, html),
            )
        )
    return messages


# Invitation templates rendered with stand-ins, kept from batch to batch. The key holds everything
# the rendering reads (the touchpoint's every field, the question, the language, the company name);
# templates and translations are read once per process anyway (Django's cached template loader).
_RENDERED: dict[tuple, tuple[str, str, str]] = {}
_RENDERED_KEPT = 256


def _rendered_invitation(*, language: str, touchpoint, question: str, reminder: bool, has_name: bool):
    key = (
        language,
        reminder,
        has_name,
        question,
        settings.NPS_COMPANY_NAME,
        tuple(getattr(touchpoint, field.attname) for field in touchpoint._meta.concrete_fields),
    )
    rendered = _RENDERED.get(key)
    if rendered is None:
        with translation.override(language):
            rendered = _render_invitation(touchpoint=touchpoint, question=question, reminder=reminder, has_name=has_name)
        if len(_RENDERED) >= _RENDERED_KEPT:
            _RENDERED.clear()
        _RENDERED[key] = rendered
    return rendered


def _render_invitation(*, touchpoint, question: str, reminder: bool, has_name: bool) -> tuple[str, str, str]:
    survey = f"{_MARK}survey"
    context = {
        "reminder": reminder,
        "touchpoint": touchpoint,
        "question": question,
        "survey_url": survey,
        "score_links": [(score, f"{survey}?score={score}") for score in range(11)],
        "customer": _StandInCustomer(has_name),
        "company": settings.NPS_COMPANY_NAME,
        "unsubscribe_url": f"{_MARK}unsubscribe",
    }
    return tuple(render_to_string(f"emails/invitation_{part}", context) for part in ("subject.txt", "body.txt", "body.html"))


def referral_url(link) -> str:
    return absolute_url(reverse("referral", args=[link.code]))


def coupon_message(coupon, link) -> EmailMultiAlternatives:
    return customer_message(
        template="coupon",
        customer=coupon.customer,
        context={
            "coupon": coupon,
            "offer": coupon.offer,
            # The date where the company is (TIME_ZONE), not the UTC date of the stored time.
            "valid_until": timezone.localdate(coupon.expires_at).isoformat(),
            "touchpoint": coupon.response.touchpoint,
            "referral_url": referral_url(link) if link else "",
        },
    )


def case_alert_message(case, recipients: list[str]) -> EmailMultiAlternatives:
    """Tell the touchpoint's managers about a detractor. Customer text only ever goes in the body."""
    context = {
        "case": case,
        "response": case.response,
        "customer": case.customer,
        "touchpoint": case.touchpoint,
        "case_url": absolute_url(reverse("case-detail", args=[case.pk])),
    }
    subject = _single_line(render_to_string("emails/case_alert_subject.txt", context))
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("emails/case_alert_body.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
    )
    message.attach_alternative(render_to_string("emails/case_alert_body.html", context), "text/html")
    message.customer_id = case.customer_id
    return message
