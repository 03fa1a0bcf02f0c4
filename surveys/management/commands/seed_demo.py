"""`python manage.py seed_demo [--responses N] [--touchpoints T] [--days D] [--if-empty]`.

Realistic demo data inserted in bulk, chunk by chunk, so a million responses
load in minutes with flat memory: customers, sent invitations, answers, and
what the live flow would have made of them (coupons, share links with visits
and sign-ups, follow-up cases). The dashboard rollup is rebuilt at the end.
"""

import random
import time
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from surveys import emails, services
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

# Name, slug, and how likely each score 0…10 is there.
TOUCHPOINTS = [
    ("Store visit", "store-visit", [2, 1, 2, 3, 3, 5, 7, 12, 20, 24, 21]),
    ("Home delivery", "delivery", [4, 2, 3, 4, 5, 7, 8, 12, 18, 19, 18]),
    ("Support call", "support-call", [5, 3, 4, 5, 5, 7, 9, 13, 17, 17, 15]),
    ("Online order", "online-order", [2, 1, 2, 2, 3, 5, 7, 13, 21, 23, 21]),
    ("Repair service", "repair", [6, 3, 4, 5, 6, 8, 9, 12, 16, 16, 15]),
    ("Installation", "installation", [3, 2, 2, 3, 4, 6, 8, 13, 19, 21, 19]),
    ("Returns desk", "returns", [7, 4, 5, 6, 6, 8, 9, 12, 15, 15, 13]),
    ("Billing enquiry", "billing", [6, 3, 5, 6, 6, 8, 10, 13, 15, 15, 13]),
    ("Onboarding call", "onboarding", [2, 1, 1, 2, 3, 5, 7, 13, 21, 24, 21]),
    ("Live chat", "live-chat", [4, 2, 3, 4, 5, 7, 9, 13, 18, 18, 17]),
]
FIRST_NAMES = ["Ana", "Ben", "Chloé", "Dmitri", "Eva", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kim", "Lena"]
LAST_NAMES = ["Alvarez", "Brown", "Chen", "Dubois", "Evans", "Fischer", "García", "Hansen", "Ito", "Jensen"]
REASONS = {
    Category.PROMOTER: [
        "Friendly staff and quick service.",
        "Everything arrived on time.",
        "Great prices.",
        "They fixed it on the first visit.",
        "",
        "",
    ],
    Category.PASSIVE: ["Fine, nothing special.", "A bit slow but OK.", "Good, but the wait was long.", "", ""],
    Category.DETRACTOR: [
        "I waited 40 minutes.",
        "The parcel was damaged.",
        "Nobody called me back.",
        "Too expensive for what it is.",
        "",
    ],
}
CHUNK = 10_000


class Command(BaseCommand):
    help = "Load demo touchpoints, customers and answered surveys (bulk inserts, flat memory)."

    def add_arguments(self, parser):
        parser.add_argument("--responses", type=int, default=300, help="How many answered surveys (default 300).")
        parser.add_argument("--touchpoints", type=int, default=3, help="How many touchpoints, 1–10 (default 3).")
        parser.add_argument("--days", type=int, default=120, help="Spread the answers over this many past days.")
        parser.add_argument("--if-empty", action="store_true", help="Do nothing if any touchpoint exists.")
        parser.add_argument("--seed", type=int, default=7, help="Random seed, for repeatable data.")

    def handle(self, *args, responses: int, touchpoints: int, days: int, if_empty: bool, seed: int, **options):
        if not 1 <= touchpoints <= len(TOUCHPOINTS):
            raise CommandError(f"--touchpoints must be between 1 and {len(TOUCHPOINTS)}.")
        if responses < 0 or days < 1:
            raise CommandError("--responses must be 0 or more and --days at least 1.")
        if if_empty and Touchpoint.objects.exists():
            self.stdout.write("Demo data already loaded.")
            return
        rng = random.Random(seed)
        now = timezone.now()
        began = time.monotonic()
        chosen = []
        for name, slug, weights in TOUCHPOINTS[:touchpoints]:
            touchpoint, _ = Touchpoint.objects.get_or_create(
                slug=slug, defaults={"name": name, "alert_recipients": "manager@localhost"}
            )
            chosen.append((touchpoint, weights))
        first_customer = Customer.objects.count()
        done = 0
        while done < responses:
            size = min(CHUNK, responses - done)
            with transaction.atomic():
                self._chunk(rng, now, days, chosen, first_customer + done, size)
            done += size
            if responses >= 5 * CHUNK:
                self.stderr.write(f"  {done:,} / {responses:,} responses ({time.monotonic() - began:.0f} s)")
        open_invitations = self._open_invitations(now, chosen, first_customer + responses)
        services.daily_stats_rollup(full=True)
        self.stdout.write(
            f"Loaded {responses:,} answered surveys over {days} days at {len(chosen)} touchpoints "
            f"in {time.monotonic() - began:.1f} s."
        )
        self.stdout.write("Open surveys to try: " + "  ".join(emails.survey_url(i) for i in open_invitations))

    def _chunk(self, rng, now, days, chosen, first, size):
        customers = Customer.objects.bulk_create(
            [
                Customer(
                    email=f"customer{first + i}@example.com",
                    name=f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
                    created_at=now - timedelta(days=days + 1),
                    updated_at=now - timedelta(days=days + 1),
                    unsubscribe_token=new_token(),
                )
                for i in range(size)
            ],
            batch_size=5000,
        )
        invitations, answers = [], []
        for customer in customers:
            touchpoint, weights = rng.choice(chosen)
            created = now - timedelta(seconds=rng.randint(3600, days * 86400))
            score = rng.choices(range(11), weights=weights)[0]
            answered = created + timedelta(minutes=rng.randint(5, 2880))
            if answered > now:
                answered = now - timedelta(minutes=1)
            invitations.append(
                Invitation(
                    customer=customer,
                    touchpoint=touchpoint,
                    token=new_token(),
                    status=Invitation.Status.SENT,
                    source=Invitation.Source.DEMO,
                    created_at=created,
                    send_after=created,
                    sent_at=created,
                    opened_at=answered,
                    answered_at=answered,
                    expires_at=created + timedelta(days=touchpoint.expiry_days),
                )
            )
            category = Category.for_score(score)
            answers.append((score, category, rng.choice(REASONS[category])))
        Invitation.objects.bulk_create(invitations, batch_size=5000)
        answered_rows = Response.objects.bulk_create(
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
                for invitation, (score, category, reason) in zip(invitations, answers)
            ],
            batch_size=5000,
        )
        self._follow_ups(rng, now, answered_rows)

    def _follow_ups(self, rng, now, answered_rows):
        """Coupons, share links and follow-up cases like the live flow would have made."""
        coupons, links, cases = [], [], []
        for response in answered_rows:
            if response.category == Category.PROMOTER:
                issued = response.created_at + timedelta(minutes=1)
                redeemed = issued + timedelta(days=rng.randint(1, 29)) if rng.random() < 0.35 else None
                coupons.append(
                    Coupon(
                        response=response,
                        customer_id=response.customer_id,
                        code=new_coupon_code(),
                        offer="10% off your next purchase",
                        issued_at=issued,
                        expires_at=issued + timedelta(days=30),
                        emailed_at=issued,
                        redeemed_at=redeemed if redeemed and redeemed < now else None,
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
                if age > timedelta(days=7):
                    status = FollowUpCase.Status.RESOLVED if rng.random() < 0.9 else FollowUpCase.Status.CONTACTED
                else:
                    status = rng.choice([FollowUpCase.Status.OPEN, FollowUpCase.Status.CONTACTED])
                handled = min(response.created_at + timedelta(hours=rng.randint(2, 96)), now)
                cases.append(
                    FollowUpCase(
                        response=response,
                        customer_id=response.customer_id,
                        touchpoint_id=response.touchpoint_id,
                        status=status,
                        opened_at=response.created_at,
                        due_at=response.created_at + timedelta(hours=48),
                        contacted_at=handled if status != FollowUpCase.Status.OPEN else None,
                        resolved_at=handled if status == FollowUpCase.Status.RESOLVED else None,
                        alert_sent_at=response.created_at,
                    )
                )
        Coupon.objects.bulk_create(coupons, batch_size=5000)
        ReferralLink.objects.bulk_create(links, batch_size=5000)
        FollowUpCase.objects.bulk_create(cases, batch_size=5000)
        visits, conversions = [], []
        for link in links:
            for day in range(rng.choice([0, 0, 0, 1, 2, 4])):
                moment = link.created_at + timedelta(days=day, hours=1)
                if moment > now:
                    break
                visits.append(
                    ReferralVisit(link=link, visitor_hash=f"demo-{link.code}-{day}", day=moment.date(), created_at=moment)
                )
                if rng.random() < 0.3:
                    conversions.append(
                        ReferralConversion(
                            link=link, reference=f"order:demo-{link.code}-{day}", order_id=f"demo-{day}",
                            created_at=moment,
                        )
                    )
        ReferralVisit.objects.bulk_create(visits, batch_size=5000)
        ReferralConversion.objects.bulk_create(conversions, batch_size=5000)

    def _open_invitations(self, now, chosen, first):
        """A few unanswered surveys a developer can open and answer in the browser."""
        customers = Customer.objects.bulk_create(
            [
                Customer(email=f"customer{first + j}@example.com", name="Demo Customer", unsubscribe_token=new_token())
                for j in range(3)
            ]
        )
        return Invitation.objects.bulk_create(
            [
                Invitation(
                    customer=customer,
                    touchpoint=chosen[j % len(chosen)][0],
                    token=new_token(),
                    status=Invitation.Status.SENT,
                    source=Invitation.Source.DEMO,
                    created_at=now,
                    send_after=now,
                    sent_at=now,
                    expires_at=now + timedelta(days=30),
                )
                for j, customer in enumerate(customers)
            ]
        )
