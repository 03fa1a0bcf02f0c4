"""A Django email whose MIME message is built and written out quickly.

Every survey invitation is the same shape: a UTF-8 plain-text body and one
HTML alternative. For that shape `CustomerEmail` builds the MIME tree itself
and writes its bytes without the standard library's generic generator, which
re-folds every short header through `email.header.Header` and compiles a
regular expression per message to check its boundary. The bytes are the ones
`EmailMultiAlternatives` would give (tests compare them); any other shape
(attachments, Cc, long lines that need quoted-printable...) takes Django's own
path unchanged.
"""

import re
import secrets
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import Compat32
from email.utils import formatdate, make_msgid

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import RFC5322_EMAIL_LINE_LENGTH_LIMIT, SafeMIMEMultipart
from django.core.mail.utils import DNS_NAME

# Line breaks as the standard generator splits them (email.generator.NLCRE).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# Headers Django's `message()` sets itself, or that the quick path would not handle as Django does.
_OWN_HEADERS = {"from", "to", "cc", "reply-to", "date", "message-id", "content-type", "mime-version"}


def _has_long_lines(text: str) -> bool:
    # Django switches such a part to quoted-printable (RFC 5322 limit): leave those to it. Django's
    # test, but a line of at most 249 characters cannot exceed 998 bytes (4 at most each) and
    # need not be encoded to know.
    limit = RFC5322_EMAIL_LINE_LENGTH_LIMIT
    return any(
        len(line) > limit // 4 and len(line.encode(errors="surrogateescape")) > limit for line in text.splitlines()
    )


def _text_part(text: str, subtype: str) -> MIMENonMultipart:
    """The part `SafeMIMEText(text, subtype, "utf-8")` makes for text without long lines, without its detours."""
    part = MIMENonMultipart("text", subtype, charset="utf-8")
    # 8bit as UTF-8 bytes, stored the way the email package stores them (surrogate-escaped).
    encoded = text.encode("utf-8")
    part["Content-Transfer-Encoding"] = "7bit" if encoded.isascii() else "8bit"
    part.set_payload(encoded.decode("ascii", "surrogateescape"))
    return part


class _AlternativesMIME(SafeMIMEMultipart):
    """A multipart/alternative message whose `as_bytes` skips the generic generator when it can."""

    def as_bytes(self, unixfrom=False, linesep="\n"):
        quick = None if unixfrom else flatten(self, linesep)
        return quick if quick is not None else super().as_bytes(unixfrom=unixfrom, linesep=linesep)


_policies: dict[str, Compat32] = {}


def _header_bytes(policy: Compat32, name: str, value, linesep: str) -> bytes:
    # A short printable ASCII value comes out of Compat32 folding unchanged; anything else is folded by it.
    if (
        isinstance(value, str)
        and len(name) + 2 + len(value) <= policy.max_line_length
        and value.isascii()
        and value.isprintable()
    ):
        return f"{name}: {value}{linesep}".encode("ascii")
    if linesep not in _policies:
        _policies[linesep] = policy.clone(linesep=linesep)
    return _policies[linesep].fold_binary(name, value)


def _headers_bytes(message, linesep: str) -> bytes:
    policy = message.policy
    return b"".join(_header_bytes(policy, name, value, linesep) for name, value in message.raw_items()) + linesep.encode()


def flatten(message, linesep: str = "\n") -> bytes | None:
    """`message` as `BytesGenerator(mangle_from_=False)` writes it, or None when it is not a shape handled here.

    Handled: a multipart with a boundary, no preamble or epilogue, whose parts
    are 7bit/8bit text, under the default (Compat32) policy.
    """
    policy = message.policy
    if type(policy) is not Compat32 or policy.max_line_length != 78:
        return None
    boundary = message.get_boundary()
    parts = message.get_payload()
    if not boundary or not isinstance(parts, list) or message.preamble is not None or message.epilogue is not None:
        return None
    rendered = []
    for part in parts:
        # As the generator writes it: the stored payload (get_payload() would decode 8bit text).
        payload = part._payload
        if (
            part.is_multipart()
            or not isinstance(payload, str)
            or part.policy is not policy
            or part.get("Content-Transfer-Encoding", "").lower() not in ("7bit", "8bit")
        ):
            return None
        # The generator's line ending rewrite; a plain replace when every line ends in "\n" alone.
        lines = payload.replace("\n", linesep) if "\r" not in payload else linesep.join(_LINE_BREAK.split(payload))
        body = lines.encode("ascii", "surrogateescape")
        rendered.append(_headers_bytes(part, linesep) + body)
    separator = f"{linesep}--{boundary}{linesep}".encode("ascii")
    return b"".join(
        (
            _headers_bytes(message, linesep),
            f"--{boundary}{linesep}".encode("ascii"),
            separator.join(rendered),
            f"{linesep}--{boundary}--{linesep}".encode("ascii"),
        )
    )


def _boundary(texts: list[str]) -> str:
    # Shorter than the standard generator's ("=" * 15 + 19 digits + "=="), so that the
    # Content-Type header fits on one line and needs no folding; 96 random bits.
    while True:
        boundary = f"=_{secrets.token_hex(12)}"
        if not any(f"--{boundary}" in text for text in texts):
            return boundary


class CustomerEmail(EmailMultiAlternatives):
    """`EmailMultiAlternatives`, quicker to turn into bytes when it is a text body and one HTML alternative."""

    def message(self):
        encoding = self.encoding or settings.DEFAULT_CHARSET
        if not self._quick_shape(encoding):
            return super().message()
        [(html, _)] = self.alternatives
        message = _AlternativesMIME(_subtype=self.alternative_subtype, encoding=encoding, boundary=_boundary([self.body, html]))
        message.attach(_text_part(self.body, self.content_subtype))
        message.attach(_text_part(html, "html"))
        # Header by header as Django's message() sets them (its __setitem__ refuses line breaks and encodes non-ASCII).
        message["Subject"] = self.subject
        message["From"] = self.from_email
        message["To"] = ", ".join(str(address) for address in self.to)
        message["Date"] = formatdate(localtime=settings.EMAIL_USE_LOCALTIME)
        message["Message-ID"] = make_msgid(domain=DNS_NAME)
        for name, value in self.extra_headers.items():
            message[name] = value
        return message

    def _quick_shape(self, encoding: str) -> bool:
        return (
            encoding == "utf-8"
            and self.content_subtype == "plain"
            and bool(self.body)
            and bool(self.to)
            and not (self.cc or self.reply_to or self.attachments)
            and len(self.alternatives) == 1
            and self.alternatives[0][1] == "text/html"
            and isinstance(self.alternatives[0][0], str)
            and not any(name.lower() in _OWN_HEADERS for name in self.extra_headers)
            and not _has_long_lines(self.body)
            and not _has_long_lines(self.alternatives[0][0])
        )
