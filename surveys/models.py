"""The survey domain: touchpoints, customers, invitations, responses, API keys.

Models hold fields, database constraints and tiny derived properties only;
every write goes through a domain's `services.py` (surveys/customers/, invitations/, …).
"""

import secrets

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Length, Lower
from django.utils import timezone
from django.utils.translation import gettext_noop

models.TextField.register_lookup(Length)

REASON_MAX_LENGTH = 2000
# Marked for translation: a touchpoint keeping the default wording is asked in the customer's language.
DEFAULT_QUESTION = gettext_noop("How likely are you to recommend {company} to a friend or colleague?")
DEFAULT_REASON_PROMPT = gettext_noop("Thank you! Can you tell us the reason for your score?")


def new_token() -> str:
    """A URL-safe token with 192 bits of randomness from `secrets`."""
    return secrets.token_urlsafe(24)


# The rule of NPS, in one place: promoters answer 9–10, passives 7–8, detractors 0–6.
PROMOTER_SCORES = range(9, 11)
PASSIVE_SCORES = range(7, 9)
DETRACTOR_SCORES = range(0, 7)


class Category(models.TextChoices):
    PROMOTER = "promoter", "Promoter"
    PASSIVE = "passive", "Passive"
    DETRACTOR = "detractor", "Detractor"

    @classmethod
    def for_score(cls, score: int) -> "Category":
        if score >= PROMOTER_SCORES.start:
            return cls.PROMOTER
        if score >= PASSIVE_SCORES.start:
            return cls.PASSIVE
        return cls.DETRACTOR


class Touchpoint(models.Model):
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True, help_text="Used by the API and the CSV import.")
    is_active = models.BooleanField("active", default=True)
    question = models.CharField(
        max_length=300,
        default=DEFAULT_QUESTION,
        help_text="{company} is replaced by the company name.",
    )
    reason_prompt = models.CharField(max_length=300, default=DEFAULT_REASON_PROMPT)
    reason_prompt_promoter = models.CharField(
        "reason prompt for promoters", max_length=300, blank=True, help_text="Optional; scores 9–10."
    )
    reason_prompt_passive = models.CharField(
        "reason prompt for passives", max_length=300, blank=True, help_text="Optional; scores 7–8."
    )
    reason_prompt_detractor = models.CharField(
        "reason prompt for detractors", max_length=300, blank=True, help_text="Optional; scores 0–6."
    )
    cooldown_days = models.PositiveIntegerField(
        "survey cooldown (days)",
        default=90,
        help_text="A customer surveyed at any touchpoint is not surveyed again sooner than this.",
    )
    expiry_days = models.PositiveIntegerField(
        "invitation expiry (days)", default=30, help_text="The survey link closes after this many days."
    )
    reminder_delay_days = models.PositiveIntegerField(
        "reminder delay (days)", default=0, help_text="0 sends no reminder."
    )
    promoter_offer = models.CharField(
        "promoter offer text", max_length=300, blank=True, default="10% off your next purchase"
    )
    coupon_validity_days = models.PositiveIntegerField("coupon validity (days)", default=30)
    alert_recipients = models.CharField(
        "alert recipients for detractors",
        max_length=1000,
        blank=True,
        help_text="Comma-separated email addresses told about each detractor response.",
    )
    is_api_default = models.BooleanField(
        "default for the Delighted-compatible API",
        default=False,
        help_text="Surveys triggered through /v1/people without properties[touchpoint] are about this touchpoint.",
    )
    case_due_hours = models.PositiveIntegerField(
        "follow-up due (hours)", default=48, help_text="A follow-up case is due this long after the response."
    )
    open_cases_for_passives = models.BooleanField(
        default=False, help_text="Also open a follow-up case for passive answers (7–8)."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(expiry_days__gte=1), name="touchpoint_expiry_at_least_one_day"),
            models.UniqueConstraint(
                fields=["is_api_default"], condition=Q(is_api_default=True), name="touchpoint_one_api_default"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def reason_prompt_for(self, category: str | None) -> str:
        specific = {
            Category.PROMOTER: self.reason_prompt_promoter,
            Category.PASSIVE: self.reason_prompt_passive,
            Category.DETRACTOR: self.reason_prompt_detractor,
        }.get(category, "")
        return specific or self.reason_prompt


class Customer(models.Model):
    email = models.EmailField(max_length=254)
    name = models.CharField(max_length=200, blank=True)
    phone = models.CharField(max_length=40, blank=True)
    external_id = models.CharField(
        "external id", max_length=120, null=True, blank=True, help_text="The customer's id in your CRM."
    )
    locale = models.CharField(max_length=10, default="en")
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    unsubscribe_token = models.CharField(max_length=64, unique=True, default=new_token, editable=False)
    bounced_at = models.DateTimeField(null=True, blank=True, help_text="The mail server refused this address.")
    last_sent_at = models.DateTimeField(
        null=True, blank=True, help_text="Surveyed elsewhere at this time (Delighted's last_sent_at); counts for the cooldown."
    )
    erased_at = models.DateTimeField(null=True, blank=True, help_text="Personal data erased on request.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="customer_email_unique_ci"),
            models.UniqueConstraint(
                fields=["external_id"], condition=Q(external_id__isnull=False), name="customer_external_id_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email

    @property
    def is_unsubscribed(self) -> bool:
        return self.unsubscribed_at is not None


class Invitation(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        EXPIRED = "expired", "Expired unanswered"

    class Source(models.TextChoices):
        API = "api", "API"
        ADMIN = "admin", "Admin"
        IMPORT = "import", "CSV import"
        DEMO = "demo", "Demo data"
        HISTORY = "history", "Imported history"

    # Every index is written again when a row moves (claimed, sent, opened, answered), so none
    # is redundant: invitation_customer_recent_idx serves lookups by customer, and the token's
    # uniqueness is a constraint below, without the LIKE index a unique=True field brings.
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="invitations", db_index=False)
    touchpoint = models.ForeignKey(Touchpoint, on_delete=models.PROTECT, related_name="invitations")
    token = models.CharField(max_length=64, default=new_token, editable=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.API)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    send_after = models.DateTimeField(default=timezone.now, help_text="Not sent before this time.")
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True, db_index=True)
    remind_after = models.DateTimeField(
        null=True, blank=True, help_text="When the one reminder is due, if still unanswered."
    )
    reminded_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    send_attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    properties = models.JSONField(default=dict, blank=True, help_text="Extra data sent with the trigger (Delighted API).")

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["token"], name="invitation_token_unique")]
        indexes = [
            # The beat sweep reads only unsent work, however many invitations exist.
            models.Index(
                fields=["send_after"],
                name="invitation_pending_idx",
                condition=Q(status__in=["pending", "sending"]),
            ),
            models.Index(fields=["customer", "-created_at"], name="invitation_customer_recent_idx"),
            # The reminder and expiry sweeps read only invitations still waiting for an answer.
            models.Index(
                fields=["remind_after"],
                name="invitation_reminder_due_idx",
                condition=Q(status="sent", reminded_at__isnull=True, answered_at__isnull=True),
            ),
            models.Index(
                fields=["expires_at"],
                name="invitation_open_expiry_idx",
                condition=Q(status__in=["pending", "sent"], answered_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.touchpoint} → {self.customer.email}"

    def is_expired(self, now=None) -> bool:
        return (now or timezone.now()) >= self.expires_at

    @property
    def is_closed(self) -> bool:
        """Its link takes no answer and shows nothing (SPEC §8.3): cancelled, failed, or its person erased."""
        return self.status in (self.Status.CANCELLED, self.Status.FAILED) or self.customer.erased_at is not None


class Response(models.Model):
    invitation = models.OneToOneField(Invitation, on_delete=models.CASCADE, related_name="response")
    # Denormalised from the invitation so that NPS aggregates need no join. Indexed by
    # response_touchpoint_time_idx, which starts with it (every answer writes each index).
    touchpoint = models.ForeignKey(Touchpoint, on_delete=models.PROTECT, related_name="responses", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="responses")
    score = models.PositiveSmallIntegerField()
    category = models.CharField(max_length=10, choices=Category.choices)
    reason = models.TextField(blank=True, max_length=REASON_MAX_LENGTH)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Set once the promoter follow-up is settled: coupon emailed, or nothing to
    # send (already rewarded, unsubscribed, window closed). The sweep reads
    # only promoter rows where this is empty.
    coupon_settled_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Set for imported history: makes a re-import of the same file add nothing. Unique where
    # set (a partial constraint below): answers from the survey page add no entry to its index.
    import_key = models.CharField(max_length=200, null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("view_dashboard", "Can view the NPS dashboard")]
        constraints = [
            models.CheckConstraint(condition=Q(score__gte=0, score__lte=10), name="response_score_0_to_10"),
            models.CheckConstraint(
                condition=(
                    Q(score__gte=PROMOTER_SCORES.start, category="promoter")
                    | Q(score__gte=PASSIVE_SCORES.start, score__lte=PASSIVE_SCORES.stop - 1, category="passive")
                    | Q(score__lte=DETRACTOR_SCORES.stop - 1, category="detractor")
                ),
                name="response_category_matches_score",
            ),
            models.CheckConstraint(
                condition=Q(reason__length__lte=REASON_MAX_LENGTH), name="response_reason_max_length"
            ),
            models.UniqueConstraint(
                fields=["import_key"], condition=Q(import_key__isnull=False), name="response_import_key_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["touchpoint", "created_at"], name="response_touchpoint_time_idx"),
            models.Index(
                fields=["created_at"],
                name="response_promoter_open_idx",
                condition=Q(category="promoter", coupon_settled_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.score} from {self.customer.email}"


class SurveySkip(models.Model):
    """A survey that policy said not to send, kept so admins can see why."""

    class Reason(models.TextChoices):
        UNSUBSCRIBED = "unsubscribed", "Customer unsubscribed"
        INACTIVE_TOUCHPOINT = "inactive_touchpoint", "Touchpoint inactive"
        COOLDOWN = "cooldown", "Surveyed recently (cooldown)"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="skips")
    touchpoint = models.ForeignKey(Touchpoint, on_delete=models.CASCADE, related_name="skips")
    reason = models.CharField(max_length=24, choices=Reason.choices)
    source = models.CharField(max_length=10, choices=Invitation.Source.choices, default=Invitation.Source.API)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.customer.email}: {self.get_reason_display()}"


class ApiScope(models.TextChoices):
    """What an API key may do. A key made without naming scopes may do everything."""

    INVITATIONS = "invitations", "invitations: trigger surveys (POST /api/v1/invitations)"
    COUPONS = "coupons", "coupons: redeem coupons (POST /api/v1/coupons/<code>/redeem)"
    ORDERS = "orders", "orders: report orders and referred sign-ups (POST /api/v1/referrals/<code>/convert)"
    DELIGHTED = "delighted", "delighted: write through the Delighted-compatible /v1/ (people, answers, unsubscribes, erasure)"
    READ = "read", "read: list people, answers and metrics through /v1/"


def all_api_scopes() -> list[str]:
    return list(ApiScope.values)


class ApiKey(models.Model):
    name = models.CharField(max_length=100)
    scopes = models.JSONField(default=all_api_scopes, help_text="What this key may do.")
    prefix = models.CharField(max_length=16, unique=True, help_text="Shown to tell keys apart; not secret.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def allows(self, scope: str) -> bool:
        return scope in (self.scopes or [])


class IdempotencyRecord(models.Model):
    """The first answer to an API request sent with an Idempotency-Key."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # SHA-256 of the method, path and body: the same key with another request is refused, not replayed.
    request_hash = models.CharField(max_length=64, blank=True)
    # Whom the answer is about, so that erasing them removes it (the key itself may hold their address).
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    status_code = models.PositiveSmallIntegerField(default=0)
    body = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_key_unique_per_api_key")]


COUPON_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"  # no 0/O, 1/I/L or U/V look-alikes


def new_coupon_code() -> str:
    """Like LP-7KQ4-M2XD-9TRH: 12 characters from 30 unambiguous ones (about 59 bits).

    Easy to read out at a till, and too many to guess or to collide even with
    millions of coupons issued.
    """
    chars = "".join(secrets.choice(COUPON_ALPHABET) for _ in range(12))
    return f"LP-{chars[:4]}-{chars[4:8]}-{chars[8:]}"


def new_referral_code() -> str:
    """12 unambiguous characters (about 59 bits): shareable, yet not enumerable."""
    return "".join(secrets.choice(COUPON_ALPHABET) for _ in range(12))


class Coupon(models.Model):
    response = models.OneToOneField(Response, on_delete=models.PROTECT, related_name="coupon")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="coupons")
    code = models.CharField(max_length=20, unique=True, default=new_coupon_code, editable=False)
    offer = models.CharField(max_length=300, blank=True)
    issued_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    email_claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    emailed_at = models.DateTimeField(null=True, blank=True)
    email_attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    redeemed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-issued_at"]
        indexes = [
            models.Index(fields=["customer", "-issued_at"], name="coupon_customer_recent_idx"),
            # Covering index: the dashboard's coupon figures are an index-only scan on PostgreSQL.
            models.Index(fields=["issued_at"], include=["emailed_at", "redeemed_at"], name="coupon_issued_cover_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(expires_at__gt=F("issued_at")), name="coupon_expires_after_issue")
        ]

    def __str__(self) -> str:
        return self.code

    def is_expired(self, now=None) -> bool:
        return (now or timezone.now()) >= self.expires_at


class ReferralLink(models.Model):
    """A promoter's personal share link, /r/<code>/."""

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="referral_link")
    code = models.CharField(max_length=20, unique=True, default=new_referral_code, editable=False)
    touchpoint = models.ForeignKey(
        Touchpoint, on_delete=models.PROTECT, related_name="referral_links", help_text="Where they became a promoter."
    )
    response = models.ForeignKey(Response, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.code


class ReferralVisit(models.Model):
    """One visitor on one day. The visitor is a keyed hash, nothing personal is kept."""

    link = models.ForeignKey(ReferralLink, on_delete=models.CASCADE, related_name="visits")
    visitor_hash = models.CharField(max_length=64)
    day = models.DateField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["link", "visitor_hash", "day"], name="referral_visit_once_per_day")
        ]


class ReferralConversion(models.Model):
    """A sign-up or purchase the company reported for a referral code."""

    link = models.ForeignKey(ReferralLink, on_delete=models.CASCADE, related_name="conversions")
    # A keyed hash of the referred email, or the order id: what makes a report idempotent.
    reference = models.CharField(max_length=200)
    order_id = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["link", "reference"], name="referral_conversion_once_per_reference")
        ]


class FollowUpCase(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CONTACTED = "contacted", "Contacted"
        RESOLVED = "resolved", "Resolved"

    response = models.OneToOneField(Response, on_delete=models.CASCADE, related_name="case")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="cases")
    touchpoint = models.ForeignKey(Touchpoint, on_delete=models.PROTECT, related_name="cases")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    # The columns empty when a case opens are indexed only where set (partial indexes below):
    # every detractor's answer opens a case, and each index is one more write.
    assignee = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="assigned_cases", db_index=False
    )
    opened_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField()
    contacted_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    won_back_at = models.DateTimeField(null=True, blank=True)
    won_back_response = models.ForeignKey(
        Response, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    alert_claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    alert_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "follow-up case"
        ordering = ["due_at"]
        indexes = [
            models.Index(fields=["status", "due_at"], name="case_status_due_idx"),
            # Covering indexes: the dashboard's follow-up figures read no table rows on PostgreSQL.
            models.Index(fields=["opened_at"], include=["status", "touchpoint"], name="case_opened_cover_idx"),
            models.Index(
                fields=["resolved_at"],
                include=["opened_at", "status", "touchpoint"],
                condition=Q(resolved_at__isnull=False),
                name="case_resolved_cover_idx",
            ),
            models.Index(fields=["assignee"], condition=Q(assignee__isnull=False), name="case_assignee_idx"),
            models.Index(fields=["won_back_at"], condition=Q(won_back_at__isnull=False), name="case_won_back_idx"),
            models.Index(
                fields=["won_back_response"], condition=Q(won_back_response__isnull=False),
                name="case_won_back_response_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Case #{self.pk}: {self.customer}"

    @property
    def is_overdue(self) -> bool:
        return self.status != self.Status.RESOLVED and timezone.now() > self.due_at


class CaseNote(models.Model):
    case = models.ForeignKey(FollowUpCase, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey("auth.User", on_delete=models.SET_NULL, null=True, related_name="+")
    text = models.TextField(max_length=5000)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]


SCORE_FIELDS = [f"score_{score}" for score in range(11)]
FOLLOW_UP_FIELDS = [
    "cases_opened",
    "cases_closed",
    "cases_won_back",
    "coupons_issued",
    "coupons_emailed",
    "coupons_redeemed",
    "referral_visits",
    "referral_conversions",
]


class DailyStat(models.Model):
    """Counts per closed day and touchpoint, so the dashboard never scans millions of responses.

    Rebuilt by beat for days before `StatsWatermark.rolled_until`; later days
    are counted live from the responses themselves.
    """

    day = models.DateField()
    touchpoint = models.ForeignKey(Touchpoint, on_delete=models.CASCADE, related_name="+")
    invitations_sent = models.PositiveIntegerField(default=0)
    score_0 = models.PositiveIntegerField(default=0)
    score_1 = models.PositiveIntegerField(default=0)
    score_2 = models.PositiveIntegerField(default=0)
    score_3 = models.PositiveIntegerField(default=0)
    score_4 = models.PositiveIntegerField(default=0)
    score_5 = models.PositiveIntegerField(default=0)
    score_6 = models.PositiveIntegerField(default=0)
    score_7 = models.PositiveIntegerField(default=0)
    score_8 = models.PositiveIntegerField(default=0)
    score_9 = models.PositiveIntegerField(default=0)
    score_10 = models.PositiveIntegerField(default=0)
    # Follow-up and promoter figures. Those that change after their day closes
    # (a coupon redeemed, a case resolved later) mark the day in StatsDirtyDay
    # so the next rollup recounts it.
    cases_opened = models.PositiveIntegerField(default=0)
    cases_closed = models.PositiveIntegerField(default=0, help_text="Of the cases opened that day, those resolved.")
    cases_won_back = models.PositiveIntegerField(default=0)
    coupons_issued = models.PositiveIntegerField(default=0)
    coupons_emailed = models.PositiveIntegerField(default=0, help_text="Of the coupons issued that day.")
    coupons_redeemed = models.PositiveIntegerField(default=0, help_text="Of the coupons issued that day.")
    referral_visits = models.PositiveIntegerField(default=0)
    referral_conversions = models.PositiveIntegerField(default=0)
    # Cases resolved that day, counted by time to close ({bucket: count}, see
    # dashboard/selectors.close_bucket), so a median over months reads days, not cases.
    close_histogram = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "touchpoint"], name="daily_stat_one_row_per_day")]
        indexes = [models.Index(fields=["touchpoint", "day"], name="daily_stat_touchpoint_day_idx")]


class StatsWatermark(models.Model):
    """A single row: days before `rolled_until` are in DailyStat."""

    rolled_until = models.DateField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)


class StatsDirtyDay(models.Model):
    """A rolled-up day whose figures changed after it closed; the next rollup recounts it."""

    day = models.DateField(unique=True)


class SendWindow(models.Model):
    """Emails sent in one minute, shared by every worker: the send rate cap's counter."""

    minute = models.DateTimeField(unique=True)
    sent = models.PositiveIntegerField(default=0)


class TouchpointTranslation(models.Model):
    """The question and reason prompt of a touchpoint in another language."""

    touchpoint = models.ForeignKey(Touchpoint, on_delete=models.CASCADE, related_name="translations")
    language = models.CharField(max_length=10, choices=settings.LANGUAGES)
    question = models.CharField(max_length=300, help_text="{company} is replaced by the company name.")
    reason_prompt = models.CharField(max_length=300, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["touchpoint", "language"], name="touchpoint_translation_one_per_language")
        ]

    def __str__(self) -> str:
        return f"{self.touchpoint} ({self.language})"


class WebhookEndpoint(models.Model):
    class Event(models.TextChoices):
        RESPONSE_CREATED = "response.created", "response.created"
        CASE_OPENED = "case.opened", "case.opened"
        COUPON_REDEEMED = "coupon.redeemed", "coupon.redeemed"

    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500, help_text="HTTPS recommended. A Slack incoming-webhook URL gets a text summary.")
    secret = models.CharField(
        max_length=100,
        default=new_token,
        help_text='Signs each delivery: X-Loyal-Signature: sha256=HMAC(secret, "<X-Loyal-Timestamp>.<body>").',
    )
    events = models.JSONField(default=list, help_text="Event names this endpoint receives.")
    is_active = models.BooleanField("active", default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_slack(self) -> bool:
        return self.url.startswith("https://hooks.slack.com/")


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed (gave up)"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    # Whom the payload is about: erasure finds their deliveries by this, whatever address they had then.
    customer = models.ForeignKey(
        Customer, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    event = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["next_attempt_at"], name="webhook_due_idx", condition=Q(status="pending")),
            models.Index(fields=["customer"], name="webhook_customer_idx", condition=Q(customer__isnull=False)),
        ]


class SuppressedAddress(models.Model):
    """An erased person's address, kept only as a keyed hash so that no email ever reaches it again."""

    address_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "suppressed addresses"


class FormerAddress(models.Model):
    """An address a customer gave up (an email change), kept only as a keyed hash.

    Erasing the customer puts these on the suppression list too: a person who
    asks to be forgotten is not emailed at an address they used before.
    """

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="former_addresses")
    address_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "address_hash"], name="former_address_once_per_customer")
        ]
