"""Reads of customers.
"""



from surveys.core import validation
from surveys.models import (
    Customer,
)


def customer_for_unsubscribe_token(*, token: str) -> Customer | None:
    if not validation.is_token(token):
        return None
    return Customer.objects.filter(unsubscribe_token=token).first()
