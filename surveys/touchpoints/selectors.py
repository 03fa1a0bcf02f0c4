"""Touchpoints and their wording: the question and reason prompts in the customer's language.
"""


from django.conf import settings
from django.utils import translation

from surveys.models import (
    DEFAULT_QUESTION,
    DEFAULT_REASON_PROMPT,
    Customer,
    Touchpoint,
    TouchpointTranslation,
)


def default_touchpoint() -> Touchpoint | None:
    """What an answer or a survey that names no touchpoint is about (the Delighted API, a history file
    without a touchpoint column): the one marked "default for the Delighted-compatible API", or the only
    touchpoint there is. With several and none marked: None, and the caller asks for one to be named."""
    marked = Touchpoint.objects.filter(is_api_default=True).first()
    if marked is not None:
        return marked
    only = list(Touchpoint.objects.order_by("pk")[:2])
    return only[0] if len(only) == 1 else None


def touchpoint_for_slug(*, slug: str) -> Touchpoint | None:
    return Touchpoint.objects.filter(slug=slug).first()


def customer_language(*, customer: Customer) -> str:
    """The supported language closest to the customer's locale (es-MX → es), else the default."""
    try:
        return translation.get_supported_language_variant((customer.locale or "").replace("_", "-").lower())
    except LookupError:
        return settings.LANGUAGE_CODE


def touchpoint_wording(
    *, touchpoint: Touchpoint, language: str, category: str | None = None, product: str | None = None
) -> tuple[str, str]:
    """The question (with {company} filled in) and reason prompt to show in `language`.

    An admin-given translation wins; a touchpoint still using the default
    wording gets the shipped translation; otherwise the touchpoint's own text.
    """
    with translation.override(language):
        question = translation.gettext(touchpoint.question) if touchpoint.question == DEFAULT_QUESTION else touchpoint.question
        prompt = touchpoint.reason_prompt_for(category)
        prompt = translation.gettext(prompt) if prompt == DEFAULT_REASON_PROMPT else prompt
    if language != settings.LANGUAGE_CODE:
        wording = TouchpointTranslation.objects.filter(touchpoint=touchpoint, language=language).first()
        if wording is not None:
            question = wording.question or question
            prompt = wording.reason_prompt or prompt
    # Delighted's `question_product_name` property names what is recommended.
    subject = str(product)[:100] if product else settings.NPS_COMPANY_NAME
    return question.replace("{company}", subject), prompt
