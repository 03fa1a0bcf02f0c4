"""Admin pages for the promoter follow-up: coupons (state filters, search, redeem action), share links, cases."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from surveys.models import Coupon, FollowUpCase, ReferralConversion, ReferralVisit
from surveys.promoters.services import referral_link_ensure

from ..factories import CustomerFactory, InvitationFactory, ResponseFactory

COUPONS = "/admin/surveys/coupon/"


def coupon(*, customer=None, emailed=False, redeemed=False, expired=False):
    response = ResponseFactory(score=10, **({"invitation": InvitationFactory(customer=customer)} if customer else {}))
    now = timezone.now()
    issued = now - timedelta(days=40 if expired else 2)
    return Coupon.objects.create(
        response=response,
        customer=response.customer,
        offer="10% off",
        issued_at=issued,
        expires_at=issued + timedelta(days=30),
        emailed_at=issued if emailed else None,
        redeemed_at=issued + timedelta(days=1) if redeemed else None,
    )


def listed_codes(page) -> set[str]:
    content = page.content.decode()
    assert page.status_code == 200
    if 'id="result_list"' not in content:
        return set()
    table = content[content.index('id="result_list"'):]
    table = table[: table.index("</table>")]
    return set(re.findall(r"LP-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}", table))


@pytest.fixture
def coupons(db):
    return {
        "unsent": coupon(),
        "emailed": coupon(emailed=True),
        "redeemed": coupon(emailed=True, redeemed=True),
        "expired": coupon(emailed=True, expired=True),
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "state, expected",
    [
        ("unsent", {"unsent"}),
        ("emailed", {"emailed", "redeemed", "expired"}),
        ("redeemed", {"redeemed"}),
        ("expired", {"expired"}),
        ("valid", {"unsent", "emailed"}),
    ],
)
def test_the_coupon_state_filter_shows_the_right_coupons(admin_client, coupons, state, expected):
    page = admin_client.get(COUPONS, {"state": state})

    assert listed_codes(page) == {coupons[name].code for name in expected}


@pytest.mark.django_db
def test_without_a_filter_every_coupon_is_listed(admin_client, coupons):
    assert listed_codes(admin_client.get(COUPONS)) == {c.code for c in coupons.values()}


@pytest.mark.django_db
def test_coupons_are_found_by_code(admin_client, coupons):
    wanted = coupons["emailed"]

    assert listed_codes(admin_client.get(COUPONS, {"q": wanted.code})) == {wanted.code}
    assert listed_codes(admin_client.get(COUPONS, {"q": wanted.code.lower()})) == {wanted.code}


@pytest.mark.django_db
def test_coupons_are_found_by_customer_email(admin_client, coupons):
    regular = CustomerFactory(email="regular.buyer@example.com")
    first, second = coupon(customer=regular), coupon(customer=regular, expired=True)

    page = admin_client.get(COUPONS, {"q": "regular.buyer@example"})

    assert listed_codes(page) == {first.code, second.code}


@pytest.mark.django_db
def test_the_redeem_action_redeems_and_reports_what_it_refused(admin_client, coupons):
    chosen = [coupons["unsent"], coupons["emailed"], coupons["redeemed"], coupons["expired"]]
    redeemed_before = coupons["redeemed"].redeemed_at

    response = admin_client.post(
        COUPONS, {"action": "redeem", "_selected_action": [c.pk for c in chosen]}, follow=True
    )

    assert response.status_code == 200
    content = response.content.decode()
    assert "2 coupon(s) redeemed." in content
    assert f"{coupons['redeemed'].code} (already redeemed)" in content
    assert f"{coupons['expired'].code} (expired)" in content
    for name in ("unsent", "emailed"):
        assert Coupon.objects.get(pk=coupons[name].pk).redeemed_at is not None
    assert Coupon.objects.get(pk=coupons["redeemed"].pk).redeemed_at == redeemed_before
    assert Coupon.objects.get(pk=coupons["expired"].pk).redeemed_at is None


@pytest.mark.django_db
def test_a_coupon_page_opens(admin_client, coupons):
    page = admin_client.get(f"{COUPONS}{coupons['emailed'].pk}/change/")

    assert page.status_code == 200
    assert coupons["emailed"].code in page.content.decode()


@pytest.mark.django_db
def test_share_links_show_their_visits_and_conversions(admin_client):
    busy_response, quiet_response = ResponseFactory(score=10), ResponseFactory(score=9)
    busy = referral_link_ensure(customer_id=busy_response.customer_id, touchpoint=busy_response.touchpoint)
    quiet = referral_link_ensure(customer_id=quiet_response.customer_id, touchpoint=quiet_response.touchpoint)
    today = timezone.localdate()
    for n in range(3):
        ReferralVisit.objects.create(link=busy, visitor_hash=f"v{n}", day=today)
    for n in range(2):
        ReferralConversion.objects.create(link=busy, reference=f"order:{n}", order_id=str(n))

    content = admin_client.get("/admin/surveys/referrallink/").content.decode()

    rows = {
        code: (int(visits), int(conversions))
        for code, visits, conversions in re.findall(
            r'>([A-Z0-9]{12})</a>.*?class="field-visit_count">(\d+)<.*?class="field-conversion_count">(\d+)<',
            content,
            flags=re.S,
        )
    }
    assert rows == {busy.code: (3, 2), quiet.code: (0, 0)}


@pytest.mark.django_db
def test_follow_up_cases_are_listed_in_the_admin(admin_client):
    response = ResponseFactory(score=2, reason="Cold food.")
    case = FollowUpCase.objects.create(
        response=response, customer=response.customer, touchpoint=response.touchpoint,
        due_at=timezone.now() + timedelta(hours=48),
    )

    listing = admin_client.get("/admin/surveys/followupcase/")
    detail = admin_client.get(f"/admin/surveys/followupcase/{case.pk}/change/")

    assert listing.status_code == 200
    assert f"Case #{case.pk}" in listing.content.decode()
    assert detail.status_code == 200
    assert response.customer.email in detail.content.decode()
    assert admin_client.get("/admin/surveys/followupcase/", {"q": "Cold food"}).content.decode().count(
        f"Case #{case.pk}"
    ) >= 1
