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

from surveys.dashboard import services as dashboard
from surveys.mail import messages as emails
from surveys.management.commands._bulk_rows import BulkRows
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
        dashboard.daily_stats_rollup(full=True)
        self.stdout.write(
            f"Loaded {responses:,} answered surveys over {days} days at {len(chosen)} touchpoints "
            f"in {time.monotonic() - began:.1f} s."
        )
        self.stdout.write("Open surveys to try: " + "  ".join(emails.survey_url(i) for i in open_invitations))

    def _chunk(self, rng, now, days, chosen, first, size):
        rows = BulkRows()
        customer_ids = rows.allocate_ids(Customer, size)
        invitation_ids = rows.allocate_ids(Invitation, size)
        response_ids = rows.allocate_ids(Response, size)
        customers, invitations, answers = [], [], []
        joined = now - timedelta(days=days + 1)
        for i in range(size):
            touchpoint, weights = rng.choice(chosen)
            created = now - timedelta(seconds=rng.randint(3600, days * 86400))
            answered = min(created + timedelta(minutes=rng.randint(5, 2880)), now - timedelta(minutes=1))
            score = rng.choices(range(11), weights=weights)[0]
            category = Category.for_score(score)
            customers.append(
                {
                    "id": customer_ids[i],
                    "email": f"customer{first + i}@example.com",
                    "name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
                    "created_at": joined,
                    "updated_at": joined,
                    "unsubscribe_token": new_token(),
                }
            )
            invitations.append(
                {
                    "id": invitation_ids[i],
                    "customer_id": customer_ids[i],
                    "touchpoint_id": touchpoint.pk,
                    "token": new_token(),
                    "status": Invitation.Status.SENT.value,
                    "source": Invitation.Source.DEMO.value,
                    "created_at": created,
                    "send_after": created,
                    "sent_at": created,
                    "opened_at": answered,
                    "answered_at": answered,
                    "expires_at": created + timedelta(days=touchpoint.expiry_days),
                }
            )
            answers.append(
                {
                    "id": response_ids[i],
                    "invitation_id": invitation_ids[i],
                    "touchpoint_id": touchpoint.pk,
                    "customer_id": customer_ids[i],
                    "score": score,
                    "category": category.value,
                    "reason": rng.choice(REASONS[category]),
                    "created_at": answered,
                    "updated_at": answered,
                    # Demo promoters are already rewarded: no coupon emails at start-up.
                    "coupon_settled_at": answered,
                }
            )
        rows.insert(Customer, customers)
        rows.insert(Invitation, invitations)
        rows.insert(Response, answers)
        self._follow_ups(rows, rng, now, answers)

    def _follow_ups(self, rows, rng, now, answers):
        """Coupons, share links and follow-up cases like the live flow would have made."""
        coupons, links, cases, visits, conversions = [], [], [], [], []
        promoters = [a for a in answers if a["category"] == Category.PROMOTER]
        link_ids = rows.allocate_ids(ReferralLink, len(promoters)) if promoters else []
        for answer, link_id in zip(promoters, link_ids):
            issued = answer["created_at"] + timedelta(minutes=1)
            redeemed = issued + timedelta(days=rng.randint(1, 29)) if rng.random() < 0.35 else None
            coupons.append(
                {
                    "response_id": answer["id"],
                    "customer_id": answer["customer_id"],
                    "code": new_coupon_code(),
                    "offer": "10% off your next purchase",
                    "issued_at": issued,
                    "expires_at": issued + timedelta(days=30),
                    "emailed_at": issued,
                    "redeemed_at": redeemed if redeemed and redeemed < now else None,
                }
            )
            code = new_referral_code()
            links.append(
                {
                    "id": link_id,
                    "customer_id": answer["customer_id"],
                    "code": code,
                    "touchpoint_id": answer["touchpoint_id"],
                    "response_id": answer["id"],
                    "created_at": answer["created_at"],
                }
            )
            for day in range(rng.choice([0, 0, 0, 1, 2, 4])):
                moment = answer["created_at"] + timedelta(days=day, hours=1)
                if moment > now:
                    break
                visits.append(
                    {"link_id": link_id, "visitor_hash": f"demo-{code}-{day}", "day": moment.date(), "created_at": moment}
                )
                if rng.random() < 0.3:
                    conversions.append(
                        {"link_id": link_id, "reference": f"order:demo-{code}-{day}", "order_id": f"demo-{day}",
                         "created_at": moment}
                    )
        for answer in answers:
            if answer["category"] != Category.DETRACTOR:
                continue
            if now - answer["created_at"] > timedelta(days=7):
                status = FollowUpCase.Status.RESOLVED if rng.random() < 0.995 else FollowUpCase.Status.CONTACTED
            else:
                status = rng.choice([FollowUpCase.Status.OPEN, FollowUpCase.Status.CONTACTED])
            handled = min(answer["created_at"] + timedelta(hours=rng.randint(2, 96)), now)
            cases.append(
                {
                    "response_id": answer["id"],
                    "customer_id": answer["customer_id"],
                    "touchpoint_id": answer["touchpoint_id"],
                    "status": status.value,
                    "opened_at": answer["created_at"],
                    "due_at": answer["created_at"] + timedelta(hours=48),
                    "contacted_at": handled if status != FollowUpCase.Status.OPEN else None,
                    "resolved_at": handled if status == FollowUpCase.Status.RESOLVED else None,
                    "alert_sent_at": answer["created_at"],
                }
            )
        for model, batch in ((Coupon, coupons), (ReferralLink, links), (FollowUpCase, cases),
                             (ReferralVisit, visits), (ReferralConversion, conversions)):
            if model is not ReferralLink:
                ids = rows.allocate_ids(model, len(batch)) if batch else []
                for row, row_id in zip(batch, ids):
                    row["id"] = row_id
            rows.insert(model, batch)

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
