"""`python manage.py seed_demo [--responses N] [--if-empty]`: realistic demo data, inserted in bulk."""

import random
from datetime import timedelta

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from surveys import emails
from surveys.models import (
    Category,
    Coupon,
    Customer,
    FollowUpCase,
    Invitation,
    ReferralConversion,
    ReferralLink,
    ReferralVisit,
    Response,
    Touchpoint,
    new_coupon_code,
    new_referral_code,
    new_token,
)

TOUCHPOINTS = [
    ("Store visit", "store-visit", [0.02, 0.01, 0.02, 0.03, 0.03, 0.05, 0.07, 0.12, 0.2, 0.24, 0.21]),
    ("Home delivery", "delivery", [0.04, 0.02, 0.03, 0.04, 0.05, 0.07, 0.08, 0.12, 0.18, 0.19, 0.18]),
    ("Support call", "support-call", [0.05, 0.03, 0.04, 0.05, 0.05, 0.07, 0.09, 0.13, 0.17, 0.17, 0.15]),
]
FIRST_NAMES = ["Ana", "Ben", "Chloé", "Dmitri", "Eva", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kim", "Lena"]
LAST_NAMES = ["Alvarez", "Brown", "Chen", "Dubois", "Evans", "Fischer", "García", "Hansen", "Ito", "Jensen"]
REASONS = {
    Category.PROMOTER: ["Friendly staff and quick service.", "Everything arrived on time.", "Great prices.", ""],
    Category.PASSIVE: ["Fine, nothing special.", "A bit slow but OK.", ""],
    Category.DETRACTOR: ["I waited 40 minutes.", "The parcel was damaged.", "Nobody called me back.", ""],
}


class Command(BaseCommand):
    help = "Load demo touchpoints, customers and answered surveys."

    def add_arguments(self, parser):
        parser.add_argument("--responses", type=int, default=300, help="How many answered surveys (default 300).")
        parser.add_argument("--days", type=int, default=120, help="Spread them over this many past days.")
        parser.add_argument("--if-empty", action="store_true", help="Do nothing if any touchpoint exists.")
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, responses: int, days: int, if_empty: bool, seed: int, **options):
        if if_empty and Touchpoint.objects.exists():
            self.stdout.write("Demo data already loaded.")
            return
        rng = random.Random(seed)
        now = timezone.now()
        with transaction.atomic():
            touchpoints = []
            for name, slug, weights in TOUCHPOINTS:
                touchpoint, _ = Touchpoint.objects.get_or_create(
                    slug=slug, defaults={"name": name, "alert_recipients": "manager@localhost"}
                )
                touchpoints.append((touchpoint, weights))
            start = Customer.objects.count()
            customers = Customer.objects.bulk_create(
                [
                    Customer(
                        email=f"customer{start + i}@example.com",
                        name=f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
                        created_at=now - timedelta(days=days + 1),
                    )
                    for i in range(responses + 3)
                ],
                batch_size=2000,
            )
            invitations, answers = [], []
            for i in range(responses):
                touchpoint, weights = touchpoints[i % len(touchpoints)]
                created = now - timedelta(seconds=rng.randint(3600, days * 86400))
                score = rng.choices(range(11), weights=weights)[0]
                invitation = Invitation(
                    customer=customers[i],
                    touchpoint=touchpoint,
                    token=new_token(),
                    status=Invitation.Status.SENT,
                    source=Invitation.Source.DEMO,
                    created_at=created,
                    send_after=created,
                    sent_at=created,
                    opened_at=created + timedelta(hours=2),
                    answered_at=created + timedelta(hours=2),
                    expires_at=created + timedelta(days=touchpoint.expiry_days),
                )
                invitations.append(invitation)
                category = Category.for_score(score)
                answers.append((invitation, score, category, rng.choice(REASONS[category])))
            Invitation.objects.bulk_create(invitations, batch_size=2000)
            answered = Response.objects.bulk_create(
                [
                    Response(
                        invitation=invitation,
                        touchpoint_id=invitation.touchpoint_id,
                        customer_id=invitation.customer_id,
                        score=score,
                        category=category,
                        reason=reason,
                        created_at=invitation.answered_at,
                        # Demo promoters are already rewarded: no coupon emails at start-up.
                        coupon_settled_at=invitation.answered_at,
                    )
                    for invitation, score, category, reason in answers
                ],
                batch_size=2000,
            )
            self._follow_ups(rng, now, answered)
            # A few open surveys a developer can answer from the browser.
            open_invitations = Invitation.objects.bulk_create(
                [
                    Invitation(
                        customer=customers[responses + j],
                        touchpoint=touchpoints[j][0],
                        token=new_token(),
                        status=Invitation.Status.SENT,
                        source=Invitation.Source.DEMO,
                        created_at=now,
                        send_after=now,
                        sent_at=now,
                        expires_at=now + timedelta(days=30),
                    )
                    for j in range(3)
                ]
            )
        self.stdout.write(f"Loaded {responses} answered surveys over {days} days at {len(touchpoints)} touchpoints.")
        self.stdout.write("Open surveys to try: " + "  ".join(emails.survey_url(i) for i in open_invitations))

    def _follow_ups(self, rng, now, responses):
        """Coupons, share links and follow-up cases like the live flow would have made."""
        coupons, links, cases = [], [], []
        rewarded = set()
        for response in responses:
            if response.category == Category.PROMOTER and response.customer_id not in rewarded:
                rewarded.add(response.customer_id)
                coupons.append(
                    Coupon(
                        response=response,
                        customer_id=response.customer_id,
                        code=new_coupon_code(),
                        offer="10% off your next purchase",
                        issued_at=response.created_at,
                        expires_at=response.created_at + timedelta(days=30),
                        emailed_at=response.created_at,
                        redeemed_at=response.created_at + timedelta(days=rng.randint(1, 29))
                        if rng.random() < 0.35
                        else None,
                    )
                )
                links.append(
                    ReferralLink(
                        customer_id=response.customer_id,
                        code=new_referral_code(),
                        touchpoint_id=response.touchpoint_id,
                        response=response,
                        created_at=response.created_at,
                    )
                )
            elif response.category == Category.DETRACTOR:
                age = now - response.created_at
                status = FollowUpCase.Status.RESOLVED if age > timedelta(days=7) else rng.choice(
                    [FollowUpCase.Status.OPEN, FollowUpCase.Status.CONTACTED]
                )
                resolved = response.created_at + timedelta(hours=rng.randint(2, 96))
                cases.append(
                    FollowUpCase(
                        response=response,
                        customer_id=response.customer_id,
                        touchpoint_id=response.touchpoint_id,
                        status=status,
                        opened_at=response.created_at,
                        due_at=response.created_at + timedelta(hours=48),
                        contacted_at=resolved if status != FollowUpCase.Status.OPEN else None,
                        resolved_at=resolved if status == FollowUpCase.Status.RESOLVED else None,
                        alert_sent_at=response.created_at,
                    )
                )
        Coupon.objects.bulk_create(coupons, batch_size=2000)
        ReferralLink.objects.bulk_create(links, batch_size=2000)
        FollowUpCase.objects.bulk_create(cases, batch_size=2000)
        visits, conversions = [], []
        for link in links:
            for day in range(rng.choice([0, 0, 1, 2, 4])):
                visits.append(
                    ReferralVisit(
                        link=link,
                        visitor_hash=f"demo-{link.code}-{day}",
                        day=(link.created_at + timedelta(days=day)).date(),
                        created_at=link.created_at + timedelta(days=day),
                    )
                )
                if rng.random() < 0.3:
                    conversions.append(
                        ReferralConversion(link=link, reference=f"order:demo-{link.code}-{day}", order_id=f"demo-{day}")
                    )
        ReferralVisit.objects.bulk_create(visits, batch_size=2000)
        ReferralConversion.objects.bulk_create(conversions, batch_size=2000)
