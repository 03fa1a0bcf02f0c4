"""Django's SMTP email backend, with each message's envelope addresses worked out with less work.

For every message Django's backend parses the sender and each recipient with
the email package's header parser (`sanitize_address`), about a tenth of a
millisecond each: as much as writing out the whole message. A batch of
invitations has one sender, and nearly every customer's address is a plain
`local@domain.example`, which that parsing gives back unchanged. So the
sender is worked out once per connection, and a plain address goes as it is;
anything else (a display name, non-ASCII, quoting) is still parsed by Django.
"""

import re
import smtplib

from django.conf import settings
from django.core.mail.backends import smtp
from django.core.mail.message import sanitize_address

# A dot-atom local part and a domain of letters, digits and hyphens in labels of 1 to 63
# characters: what `sanitize_address` returns unchanged (IDNA leaves ASCII labels as they are).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9-]{1,63}"
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*")


def envelope_address(address, encoding: str) -> str:
    """`sanitize_address(address, encoding)`, without parsing an address that is plain already."""
    if isinstance(address, str) and _PLAIN_ADDRESS.fullmatch(address):
        return address
    return sanitize_address(address, encoding)


class EmailBackend(smtp.EmailBackend):
    """`django.core.mail.backends.smtp.EmailBackend`; only `_send` differs, in how it gets the envelope."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._senders: dict[tuple[str, str], str] = {}

    def _sender(self, from_email, encoding: str) -> str:
        if not isinstance(from_email, str):
            return sanitize_address(from_email, encoding)
        key = (from_email, encoding)
        if key not in self._senders:
            self._senders[key] = sanitize_address(from_email, encoding)
        return self._senders[key]

    def _send(self, email_message):
        # Django 5.2's _send, with envelope_address for sanitize_address.
        if not email_message.recipients():
            return False
        encoding = email_message.encoding or settings.DEFAULT_CHARSET
        from_email = self._sender(email_message.from_email, encoding)
        recipients = [envelope_address(address, encoding) for address in email_message.recipients()]
        message = email_message.message()
        try:
            self.connection.sendmail(from_email, recipients, message.as_bytes(linesep="\r\n"))
        except smtplib.SMTPException:
            if not self.fail_silently:
                raise
            return False
        return True
