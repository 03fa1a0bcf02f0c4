"""`python manage.py seed_demo [--responses N] [--if-empty]`: realistic demo data, inserted in bulk."""

import random
from datetime import timedelta

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from surveys import emails
from surveys.models import Category, Customer, Invitation, Response, Touchpoint, new_token

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
            Response.objects.bulk_create(
                [
                    Response(
                        invitation=invitation,
                        touchpoint_id=invitation.touchpoint_id,
                        customer_id=invitation.customer_id,
                        score=score,
                        category=category,
                        reason=reason,
                        created_at=invitation.answered_at,
                    )
                    for invitation, score, category, reason in answers
                ],
                batch_size=2000,
            )
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
