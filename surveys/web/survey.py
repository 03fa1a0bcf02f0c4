"""The customer's pages: the survey, its thank-you page and unsubscribe.

They need no account: the unguessable token in the URL is the key. A GET
never records an answer (mail scanners follow every link in an email).
"""

import secrets
from functools import lru_cache, wraps
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils import translation
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from surveys.access import ratelimits
from surveys.core.client_address import client_address
from surveys.customers import services as customers
from surveys.customers.selectors import customer_for_unsubscribe_token
from surveys.mail import messages as emails
from surveys.models import Category
from surveys.promoters import services as promoters
from surveys.promoters.selectors import promoter_coupon_expected, referral_link_for_code, referral_link_for_customer
from surveys.responses import services as responses
from surveys.responses.selectors import response_for_invitation
from surveys.responses.sql import invitation_for_token
from surveys.touchpoints.selectors import customer_language, touchpoint_wording
from surveys.web.forms import SCORE_CHOICES, SurveyResponseForm


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "surveys/home.html")


# "0" … "10" → 0 … 10. Compared as text: str.isdigit() accepts "²", which int() then refuses.
_SCORES_BY_TEXT = {label: score for score, label in SCORE_CHOICES}


def _preselected_score(request: HttpRequest) -> int | None:
    return _SCORES_BY_TEXT.get(request.GET.get("score", ""))


def _thanks(request, invitation, response, status=200):
    is_promoter = response.category == Category.PROMOTER
    link = referral_link_for_customer(customer_id=invitation.customer_id) if is_promoter else None
    return render(
        request,
        "surveys/thanks.html",
        {
            "invitation": invitation,
            "response": response,
            "is_promoter": is_promoter,
            "coupon_on_its_way": is_promoter
            and invitation.customer.unsubscribed_at is None
            and promoter_coupon_expected(response=response),
            "referral_url": emails.referral_url(link) if link else "",
        },
        status=status,
    )


def _private(view):
    """Like Django's never_cache, with its headers written once: no browser or proxy keeps these pages.

    (never_cache formats an Expires date for HTTP/1.0 caches on every response; the
    survey page is the busiest response there is.)
    """

    @wraps(view)
    def private_view(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response.headers.setdefault("Cache-Control", _PRIVATE_CACHE_CONTROL)
        response.headers.setdefault("Expires", _EXPIRED)
        return response

    return private_view


_PRIVATE_CACHE_CONTROL = "max-age=0, no-cache, no-store, must-revalidate, private"
_EXPIRED = "Thu, 01 Jan 1970 00:00:00 GMT"


# No CSRF check and no CSRF cookie: CSRF guards the credentials a browser sends
# by itself (a session cookie), and the survey has none. Its only credential is
# the unguessable token in the URL, which a forging site would have to know, and
# then it could answer without anyone's browser. So the survey page sets no
# cookie at all (as the RFC 8058 unsubscribe below).
@csrf_exempt
@_private
@require_http_methods(["GET", "HEAD", "POST"])
def survey(request: HttpRequest, token: str) -> HttpResponse:
    if request.method == "POST":
        invitation = invitation_for_token(token=token)
    else:
        # Opening the page marks the invitation opened (a GET never records an answer).
        invitation = responses.invitation_open(token=token)
    if invitation is None:
        return page_not_found(request, None, message="This survey link is not valid. Please check the link in your email.")
    # The customer's language, whatever the browser says: the same as their emails.
    with translation.override(customer_language(customer=invitation.customer)):
        return _survey(request, invitation)


def _survey(request: HttpRequest, invitation) -> HttpResponse:
    token = invitation.token
    if invitation.is_closed:
        # Cancelled, never delivered, or its person erased: the link takes nothing and shows nothing.
        return _closed(request, invitation)
    response = response_for_invitation(invitation=invitation)
    if response is not None:
        return _thanks(request, invitation, response)
    if invitation.is_expired():
        return _closed(request, invitation)

    touchpoint, language = invitation.touchpoint, translation.get_language()
    product = (invitation.properties or {}).get("question_product_name")
    question, prompt = touchpoint_wording(touchpoint=touchpoint, language=language, product=product)
    form_kwargs = {"question": question, "reason_prompt": prompt}
    if request.method == "POST":
        form = SurveyResponseForm(request.POST, **form_kwargs)
        valid = form.is_valid()
        if ratelimits.survey_answer_limited(request, token, valid=valid):
            return _too_many(request)
        if valid:
            try:
                responses.response_submit(
                    invitation=invitation, score=form.cleaned_data["score"], reason=form.cleaned_data["reason"]
                )
            except responses.AlreadyAnswered:
                pass  # A double submit: the first answer stands, show its thank-you page.
            except (responses.InvitationExpired, responses.InvitationClosed):
                return _closed(request, invitation)
            return HttpResponseRedirect(request.path)  # this page again: now the thank-you page
    else:
        preselected = _preselected_score(request)
        if preselected is not None:
            _, form_kwargs["reason_prompt"] = touchpoint_wording(
                touchpoint=touchpoint, language=language, category=Category.for_score(preselected)
            )
        return _survey_page(request, invitation, preselected=preselected, **form_kwargs)
    return render(request, "surveys/survey.html", {"invitation": invitation, "form": form})


def _closed(request: HttpRequest, invitation) -> HttpResponse:
    return render(request, "surveys/closed.html", {"invitation": invitation}, status=410)


def _too_many(request: HttpRequest) -> HttpResponse:
    response = render(request, "429.html", status=429)
    response["Retry-After"] = str(ratelimits.RETRY_AFTER_SECONDS)
    return response


# Stand-in for the one part of a fresh survey page that differs per customer.
_TOKEN_SLOT = f"token{secrets.token_hex(16)}"


@lru_cache(maxsize=256)
def _survey_page_html(language: str, touchpoint_name: str, question: str, reason_prompt: str, selected) -> str:
    form = SurveyResponseForm(initial={"score": selected}, question=question, reason_prompt=reason_prompt)
    context = {"invitation": {"token": _TOKEN_SLOT, "touchpoint": {"name": touchpoint_name}}, "form": form,
               "company_name": settings.NPS_COMPANY_NAME}
    return render_to_string("surveys/survey.html", context)


def _survey_page(request: HttpRequest, invitation, *, question: str, reason_prompt: str, preselected) -> HttpResponse:
    """A fresh survey page: rendered once per wording and language, then only the token differs.

    Everyone who opens a survey gets this page, and rendering it was most of
    the request (bench/http.py). Everything the page shows is in the cache key,
    so a touchpoint edited in admin shows at once. In DEBUG the page is
    rendered every time, so template edits show at once too.
    """
    if settings.DEBUG:
        form = SurveyResponseForm(initial={"score": preselected}, question=question, reason_prompt=reason_prompt)
        return render(request, "surveys/survey.html", {"invitation": invitation, "form": form})
    html = _survey_page_html(translation.get_language(), invitation.touchpoint.name, question, reason_prompt, preselected)
    return HttpResponse(html.replace(_TOKEN_SLOT, invitation.token))


# RFC 8058 one-click unsubscribe: mail providers POST without cookies or a
# CSRF token, so the unguessable token in the URL is the only credential.
@csrf_exempt
@_private
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    customer = customer_for_unsubscribe_token(token=token)
    if customer is None:
        return page_not_found(request, None, message="This unsubscribe link is not valid.")
    with translation.override(customer_language(customer=customer)):
        if request.method == "POST":
            customers.customer_unsubscribe(customer=customer)
            return render(request, "surveys/unsubscribed.html", {"customer": customer})
        return render(request, "surveys/unsubscribe.html", {"customer": customer})


@require_http_methods(["GET", "HEAD"])
def referral(request: HttpRequest, code: str) -> HttpResponse:
    """A promoter's share link: count the visit, then send the visitor to the company's site."""
    if ratelimits.referral_visit_limited(request):
        return _too_many(request)
    link = referral_link_for_code(code=code)
    landing = settings.NPS_REFERRAL_LANDING_URL
    if link is None:
        return redirect(landing)
    # One visit per client address and day: a new User-Agent is not a new friend.
    promoters.referral_visit_record(link=link, visitor=client_address(request))
    parts = urlsplit(landing)
    query = urlencode([*parse_qsl(parts.query), ("ref", link.code)])
    return redirect(urlunsplit(parts._replace(query=query)))


def page_not_found(request, exception, message: str = "") -> HttpResponse:
    return render(request, "404.html", {"message": message}, status=404)


def server_error(request) -> HttpResponse:
    return render(request, "500.html", status=500)
