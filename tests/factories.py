"""factory_boy factories for the survey domain."""

from datetime import timedelta

import factory
from django.utils import timezone

from surveys.models import Category, Customer, Invitation, Response, Touchpoint


class TouchpointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Touchpoint

    name = factory.Sequence(lambda n: f"Touchpoint {n}")
    slug = factory.Sequence(lambda n: f"touchpoint-{n}")


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    name = factory.Faker("name")


class InvitationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Invitation

    customer = factory.SubFactory(CustomerFactory)
    touchpoint = factory.SubFactory(TouchpointFactory)
    status = Invitation.Status.SENT
    sent_at = factory.LazyFunction(timezone.now)
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=30))


class ResponseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Response

    invitation = factory.SubFactory(InvitationFactory)
    touchpoint = factory.SelfAttribute("invitation.touchpoint")
    customer = factory.SelfAttribute("invitation.customer")
    score = 9
    category = factory.LazyAttribute(lambda o: Category.for_score(o.score))
