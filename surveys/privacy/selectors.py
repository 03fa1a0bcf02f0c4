"""What a data-protection request is answered with.
"""



from surveys.models import (
    CaseNote,
    Coupon,
    Customer,
    FollowUpCase,
    Invitation,
    ReferralLink,
    Response,
    SurveySkip,
)


def customer_export(*, customer: Customer) -> dict:
    """Everything stored about one customer, for a data-protection request."""

    def when(moment):
        return moment.isoformat() if moment else None

    link = ReferralLink.objects.filter(customer=customer).first()
    return {
        "customer": {
            "id": customer.pk,
            "email": customer.email,
            "name": customer.name,
            "phone": customer.phone,
            "external_id": customer.external_id,
            "locale": customer.locale,
            "created_at": when(customer.created_at),
            "unsubscribed_at": when(customer.unsubscribed_at),
            "bounced_at": when(customer.bounced_at),
            "erased_at": when(customer.erased_at),
        },
        "invitations": [
            {
                "id": invitation.pk,
                "touchpoint": invitation.touchpoint.slug,
                "status": invitation.status,
                "created_at": when(invitation.created_at),
                "sent_at": when(invitation.sent_at),
                "reminded_at": when(invitation.reminded_at),
                "opened_at": when(invitation.opened_at),
                "answered_at": when(invitation.answered_at),
                "expires_at": when(invitation.expires_at),
                "properties": invitation.properties,
            }
            for invitation in Invitation.objects.filter(customer=customer).select_related("touchpoint")
        ],
        "responses": [
            {
                "id": response.pk,
                "touchpoint": response.touchpoint.slug,
                "score": response.score,
                "category": response.category,
                "reason": response.reason,
                "created_at": when(response.created_at),
            }
            for response in Response.objects.filter(customer=customer).select_related("touchpoint")
        ],
        "surveys_not_sent": [
            {"touchpoint": skip.touchpoint.slug, "reason": skip.reason, "at": when(skip.created_at)}
            for skip in SurveySkip.objects.filter(customer=customer).select_related("touchpoint")
        ],
        "coupons": [
            {
                "code": coupon.code,
                "offer": coupon.offer,
                "issued_at": when(coupon.issued_at),
                "expires_at": when(coupon.expires_at),
                "emailed_at": when(coupon.emailed_at),
                "redeemed_at": when(coupon.redeemed_at),
            }
            for coupon in Coupon.objects.filter(customer=customer)
        ],
        "follow_up_cases": [
            {
                "id": case.pk,
                "status": case.status,
                "opened_at": when(case.opened_at),
                "resolved_at": when(case.resolved_at),
                "notes": [
                    {"at": when(note.created_at), "text": note.text} for note in CaseNote.objects.filter(case=case)
                ],
            }
            for case in FollowUpCase.objects.filter(customer=customer)
        ],
        "referral_link": {
            "code": link.code,
            "visits": link.visits.count(),
            "conversions": link.conversions.count(),
        }
        if link
        else None,
    }
