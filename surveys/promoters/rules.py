"""The promoter's rules: the 30-day window of a fresh promoter, and one coupon per customer per 30 days."""

from datetime import timedelta

# A customer who answers 9 or 10 is a fresh promoter this long: their coupon goes out inside it, or never.
PROMOTER_WINDOW = timedelta(days=30)
# At most one coupon per customer in this long, whatever they answer and wherever.
COUPON_PER_CUSTOMER_WINDOW = timedelta(days=30)
