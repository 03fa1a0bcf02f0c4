"""Builds the emails customers receive, from subject / text / HTML templates.

Every customer email carries the customer's unsubscribe link in its body and in
the `List-Unsubscribe` / `List-Unsubscribe-Post` headers (RFC 2369, RFC 8058).
Links are absolute, built from `SITE_URL`.
"""

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation

from .models import Customer, Invitation


def absolute_url(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def unsubscribe_url(customer: Customer) -> str:
    return absolute_url(reverse("unsubscribe", args=[customer.unsubscribe_token]))


def survey_url(invitation: Invitation) -> str:
    return absolute_url(reverse("survey", args=[invitation.token]))


def question_text(touchpoint, language: str | None = None, product: str | None = None) -> str:
    from .selectors import touchpoint_wording

    question, _ = touchpoint_wording(
        touchpoint=touchpoint, language=language or settings.LANGUAGE_CODE, product=product
    )
    return question


def _single_line(text: str) -> str:
    # Header values must never carry a line break, whatever the template made.
    return " ".join(text.split())


def customer_message(*, template: str, customer: Customer, context: dict) -> EmailMultiAlternatives:
    """Render templates/emails/<template>_{subject.txt,body.txt,body.html} for one customer."""
    from .selectors import customer_language

    with translation.override(customer_language(customer=customer)):
        return _customer_message(template=template, customer=customer, context=context)


def _customer_message(*, template: str, customer: Customer, context: dict) -> EmailMultiAlternatives:
    unsubscribe = unsubscribe_url(customer)
    context = {
        **context,
        "customer": customer,
        "company": settings.NPS_COMPANY_NAME,
        "unsubscribe_url": unsubscribe,
    }
    subject = _single_line(render_to_string(f"emails/{template}_subject.txt", context))
    text = render_to_string(f"emails/{template}_body.txt", context)
    html = render_to_string(f"emails/{template}_body.html", context)
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[customer.email],
        headers={
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    message.attach_alternative(html, "text/html")
    return message


def invitation_message(invitation: Invitation, reminder: bool = False) -> EmailMultiAlternatives:
    from .selectors import customer_language

    url = survey_url(invitation)
    return customer_message(
        template="invitation",
        customer=invitation.customer,
        context={
            "invitation": invitation,
            "reminder": reminder,
            "touchpoint": invitation.touchpoint,
            "question": question_text(
                invitation.touchpoint,
                customer_language(customer=invitation.customer),
                product=(invitation.properties or {}).get("question_product_name"),
            ),
            "survey_url": url,
            "score_links": [(score, f"{url}?score={score}") for score in range(11)],
        },
    )


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
    return message
