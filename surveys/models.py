"""The survey domain: touchpoints, customers, invitations, responses, API keys.

Models hold fields, database constraints and tiny derived properties only;
every write goes through `surveys.services`.
"""

import secrets

from django.db import models
from django.db.models import Q
from django.db.models.functions import Length, Lower
from django.utils import timezone

models.TextField.register_lookup(Length)

REASON_MAX_LENGTH = 2000
DEFAULT_QUESTION = "How likely are you to recommend {company} to a friend or colleague?"
DEFAULT_REASON_PROMPT = "Thank you! Can you tell us the reason for your score?"


def new_token() -> str:
    """A URL-safe token with 192 bits of randomness from `secrets`."""
    return secrets.token_urlsafe(24)


class Category(models.TextChoices):
    PROMOTER = "promoter", "Promoter"
    PASSIVE = "passive", "Passive"
    DETRACTOR = "detractor", "Detractor"

    @classmethod
    def for_score(cls, score: int) -> "Category":
        if score >= 9:
            return cls.PROMOTER
        if score >= 7:
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
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(expiry_days__gte=1), name="touchpoint_expiry_at_least_one_day"),
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

    class Source(models.TextChoices):
        API = "api", "API"
        ADMIN = "admin", "Admin"
        IMPORT = "import", "CSV import"
        DEMO = "demo", "Demo data"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="invitations")
    touchpoint = models.ForeignKey(Touchpoint, on_delete=models.PROTECT, related_name="invitations")
    token = models.CharField(max_length=64, unique=True, default=new_token, editable=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.API)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    send_after = models.DateTimeField(default=timezone.now, help_text="Not sent before this time.")
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    send_attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The beat sweep reads only unsent work, however many invitations exist.
            models.Index(
                fields=["send_after"],
                name="invitation_pending_idx",
                condition=Q(status__in=["pending", "sending"]),
            ),
            models.Index(fields=["customer", "-created_at"], name="invitation_customer_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.touchpoint} → {self.customer.email}"

    def is_expired(self, now=None) -> bool:
        return (now or timezone.now()) >= self.expires_at


class Response(models.Model):
    invitation = models.OneToOneField(Invitation, on_delete=models.CASCADE, related_name="response")
    # Denormalised from the invitation so that NPS aggregates need no join.
    touchpoint = models.ForeignKey(Touchpoint, on_delete=models.PROTECT, related_name="responses")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="responses")
    score = models.PositiveSmallIntegerField()
    category = models.CharField(max_length=10, choices=Category.choices)
    reason = models.TextField(blank=True, max_length=REASON_MAX_LENGTH)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(score__gte=0, score__lte=10), name="response_score_0_to_10"),
            models.CheckConstraint(
                condition=(
                    Q(score__gte=9, category="promoter")
                    | Q(score__gte=7, score__lte=8, category="passive")
                    | Q(score__lte=6, category="detractor")
                ),
                name="response_category_matches_score",
            ),
            models.CheckConstraint(
                condition=Q(reason__length__lte=REASON_MAX_LENGTH), name="response_reason_max_length"
            ),
        ]
        indexes = [models.Index(fields=["touchpoint", "created_at"], name="response_touchpoint_time_idx")]

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


class ApiKey(models.Model):
    name = models.CharField(max_length=100)
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


class IdempotencyRecord(models.Model):
    """The first answer to an API request sent with an Idempotency-Key."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    status_code = models.PositiveSmallIntegerField(default=0)
    body = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_key_unique_per_api_key")]
