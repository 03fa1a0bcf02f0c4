"""Forms: the customer's survey, the API's invitation request, admin steps."""

import copy
from datetime import date, timedelta
from functools import lru_cache

from django import forms
from django.core.exceptions import ValidationError
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

from surveys.core import validation
from surveys.customers.services import customers_with_email
from surveys.models import REASON_MAX_LENGTH, Category, Customer, FollowUpCase, Touchpoint, WebhookEndpoint
from surveys.webhooks.services import webhook_url_check

SCORE_CHOICES = [(score, str(score)) for score in range(11)]


class EmailAddressField(forms.CharField):
    """A customer's address, cleaned by the one validator (core.validation.clean_email): canonical form."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", validation.EMAIL_MAX_LENGTH)
        super().__init__(**kwargs)

    def clean(self, value):
        value = self.to_python(value)
        if not value:
            return super().clean(value)  # "This field is required." where it is
        try:
            return validation.clean_email(value)
        except ValidationError as exc:
            raise ValidationError(exc.messages[0], code=getattr(exc, "code", "invalid")) from None


class LineField(forms.CharField):
    """A one-line value (name, phone, external id): no line breaks or control characters (core.validation)."""

    def __init__(self, *, max_length: int, **kwargs):
        super().__init__(max_length=max_length, **kwargs)
        self.validators.append(self._check)

    def _check(self, value: str) -> None:
        validation.clean_line(value, label=str(self.label or "This value"), max_length=self.max_length)


class LocaleField(forms.CharField):
    """A language we survey in ("es", "de-AT"), cleaned by core.validation.clean_locale."""

    def __init__(self, **kwargs):
        super().__init__(max_length=40, required=False, **kwargs)

    def clean(self, value):
        return validation.clean_locale(super().clean(value))


def _reason_check(value: str) -> None:
    validation.clean_text(value, label="The reason", max_length=REASON_MAX_LENGTH)


@lru_cache(maxsize=64)
def _score_radios(selected: str, *, invalid: bool) -> str:
    # At most 12 × 2 variants (a score or none, valid or not), so the cache stays small.
    return mark_safe(render_to_string(
        "surveys/score_radios.html", {"values": SurveyResponseForm.score_values, "selected": selected, "invalid": invalid}
    ))


class _CopiedShallowly:
    """A form field each form instance copies shallowly instead of deeply.

    Django deep-copies every field, widget and choice list for each form; for the
    survey's answer that was a tenth of its time on the web server (bench/http.py).
    Nothing in SurveyResponseForm changes a field's widget, choices or messages per
    form (it writes its fields out in the template), only the label, which the
    shallow copy keeps to itself.
    """

    def __deepcopy__(self, memo):
        memo[id(self)] = copied = copy.copy(self)
        return copied


class _ScoreField(_CopiedShallowly, forms.TypedChoiceField):
    pass


class _ReasonField(_CopiedShallowly, forms.CharField):
    pass


class SurveyResponseForm(forms.Form):
    score = _ScoreField(
        choices=SCORE_CHOICES,
        coerce=int,
        widget=forms.RadioSelect,
        error_messages={
            "required": _("Please choose a score from 0 to 10."),
            "invalid_choice": _("Please choose a score from 0 to 10."),
        },
    )
    reason = _ReasonField(
        required=False,
        max_length=REASON_MAX_LENGTH,
        validators=[_reason_check],
        widget=forms.Textarea(attrs={"rows": 4, "maxlength": REASON_MAX_LENGTH}),
    )

    # templates/surveys/survey.html writes the fields out itself (the busiest page: see there).
    score_values = [label for _score, label in SCORE_CHOICES]
    reason_max_length = REASON_MAX_LENGTH

    def __init__(self, *args, question: str, reason_prompt: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.question = self.fields["score"].label = question
        self.reason_prompt = self.fields["reason"].label = reason_prompt

    @property
    def selected_score(self) -> str:
        """The score to show as chosen: the one posted, or the one the email link carried."""
        value = self["score"].value()
        return "" if value is None else str(value)

    @property
    def score_radios(self) -> str:
        """The eleven radio buttons; rendered once per process for each state they can be in."""
        selected = self.selected_score if self.selected_score in self.score_values else ""
        return _score_radios(selected, invalid="score" in self.errors)

    @property
    def reason_text(self) -> str:
        value = self["reason"].value()
        return "" if value is None else str(value)


class InvitationRequestForm(forms.Form):
    """Validates the JSON body of POST /api/v1/invitations."""

    touchpoint = forms.SlugField(max_length=60)
    email = EmailAddressField()
    name = LineField(max_length=validation.NAME_MAX_LENGTH, required=False, label="name")
    external_id = LineField(max_length=validation.EXTERNAL_ID_MAX_LENGTH, required=False, label="external_id")

    def __init__(self, data: dict, **kwargs):
        # JSON can carry numbers, lists or null where text is expected: only
        # strings are accepted, anything else is reported as invalid.
        self.type_errors = {
            field: "Must be a string." for field, value in data.items() if field in self.base_fields
            and value is not None and not isinstance(value, str)
        }
        cleaned = {k: v for k, v in data.items() if k in self.base_fields and isinstance(v, str)}
        super().__init__(cleaned, **kwargs)

    def full_clean(self):
        super().full_clean()
        for field, message in self.type_errors.items():
            self._errors[field] = self.error_class([message])
            self.cleaned_data.pop(field, None)


class SendSurveyForm(forms.Form):
    touchpoint = forms.ModelChoiceField(queryset=Touchpoint.objects.filter(is_active=True))


class ReferralConversionForm(forms.Form):
    email = EmailAddressField()


class CaseNoteForm(forms.Form):
    text = forms.CharField(label="Add a note", max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))


class CaseAssignForm(forms.Form):
    assignee = forms.ModelChoiceField(queryset=None, required=False, empty_label="Nobody")

    def __init__(self, *args, assignees, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].queryset = assignees


class CaseStatusForm(forms.Form):
    status = forms.ChoiceField(choices=[])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = FollowUpCase.Status.choices


DASHBOARD_PRESETS = {
    "7": "Last 7 days",
    "30": "Last 30 days",
    "90": "Last 90 days",
    "quarter": "This quarter",
    "year": "This year",
}


DASHBOARD_EARLIEST = date(1970, 1, 1)
DASHBOARD_LATEST = date(2999, 12, 31)


class DashboardFilterForm(forms.Form):
    """The dashboard's filters, all in the URL so a view can be bookmarked and shared."""

    range = forms.ChoiceField(choices=[*DASHBOARD_PRESETS.items(), ("custom", "Custom")], required=False)
    start = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    touchpoint = forms.SlugField(required=False)
    category = forms.ChoiceField(choices=[("", "All categories"), *Category.choices], required=False)
    q = forms.CharField(required=False, max_length=200, label="Search comments")
    page = forms.IntegerField(required=False, min_value=1, max_value=100000)

    def __init__(self, params, *, today, **kwargs):
        # SPEC names the range parameters `from` and `to`; `from` is a Python keyword.
        data = params.copy()
        if "from" in data:
            data["start"] = data["from"]
        if "to" in data:
            data["end"] = data["to"]
        super().__init__(data, **kwargs)
        self.today = today

    def clean(self):
        cleaned = super().clean()
        start, end, preset = cleaned.get("start"), cleaned.get("end"), cleaned.get("range") or ""
        if start or end:
            start, end, preset = start or (end or self.today) - timedelta(days=89), end or self.today, "custom"
        elif preset == "quarter":
            start, end = date(self.today.year, 3 * ((self.today.month - 1) // 3) + 1, 1), self.today
        elif preset == "year":
            start, end = date(self.today.year, 1, 1), self.today
        else:
            days = int(preset) if preset in ("7", "30", "90") else 90
            preset = str(days)
            start, end = self.today - timedelta(days=days - 1), self.today
        if start > end:
            raise ValidationError("The start date must be on or before the end date.")
        # The previous period and day boundaries are computed from these dates:
        # years like 0001 or 9999 would overflow Python's date range.
        if start < DASHBOARD_EARLIEST or end > DASHBOARD_LATEST:
            raise ValidationError(f"Choose dates between {DASHBOARD_EARLIEST} and {DASHBOARD_LATEST}.")
        if (end - start).days > 3660:
            raise ValidationError("Choose a range of at most ten years.")
        cleaned.update(start=start, end=end, range=preset, page=cleaned.get("page") or 1)
        return cleaned


class CustomerImportForm(forms.Form):
    file = forms.FileField(help_text="CSV with a header row: email,name[,external_id,phone,locale]; comma or semicolon; UTF-8.")
    touchpoint = forms.ModelChoiceField(queryset=Touchpoint.objects.all(), help_text="What the survey is about.")
    send = forms.BooleanField(required=False, label="Send the survey to each imported customer")
    dry_run = forms.BooleanField(required=False, label="Dry run: check every row, write nothing")


class CustomerAdminForm(forms.ModelForm):
    """The admin's customer form: every field through the one validator, as the APIs and imports do."""

    email = EmailAddressField()
    name = LineField(max_length=validation.NAME_MAX_LENGTH, required=False, label="name")
    phone = LineField(max_length=validation.PHONE_MAX_LENGTH, required=False, label="phone")
    external_id = LineField(max_length=validation.EXTERNAL_ID_MAX_LENGTH, required=False, label="external id")
    locale = LocaleField()

    class Meta:
        model = Customer
        fields = ["email", "name", "phone", "external_id", "locale"]

    def clean_email(self):
        email = self.cleaned_data["email"]
        if customers_with_email(email).exclude(pk=self.instance.pk).exists():
            raise ValidationError("Another customer has this address (addresses are compared in any spelling).")
        return email

    def clean_external_id(self):
        return self.cleaned_data["external_id"] or None


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https", label="URL")
    events = forms.MultipleChoiceField(
        choices=[], widget=forms.CheckboxSelectMultiple, help_text="Which events this endpoint receives."
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["name", "url", "events", "secret", "is_active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["events"].choices = WebhookEndpoint.Event.choices

    def clean_url(self):
        url = self.cleaned_data["url"]
        webhook_url_check(url)
        return url
