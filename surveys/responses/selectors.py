"""Reads of answers.
"""



from surveys.models import (
    Invitation,
    Response,
)


def response_for_invitation(*, invitation: Invitation) -> Response | None:
    try:
        return invitation.response  # no query when loaded by invitation_for_token
    except Response.DoesNotExist:
        return None
