"""The one validator for what people and integrators send: email, name, phone, external id, locale, free text.

Every entry point (the survey form, both JSON APIs, both CSV imports, the admin)
cleans its input through these functions, so an address or a name refused in one
place is refused everywhere with the same message. Each returns the cleaned value
or raises `ValidationError` with a sentence for a person.
"""

import re
import unicodedata

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

EMAIL_MAX_LENGTH = 254
NAME_MAX_LENGTH = 200
PHONE_MAX_LENGTH = 40
EXTERNAL_ID_MAX_LENGTH = 120
LOCALE_MAX_LENGTH = 10
# The domain of the placeholder address an erased person's record keeps: never a real customer's.
ERASED_DOMAIN = "erased.invalid"

# A single-line value (an address, a name, an id) holds no control character of any kind: a line
# break in a name would end up in an email's To header. C1 controls and the Unicode line and
# paragraph separators count too.
_NOT_IN_A_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Free text (a reason, a note) may have tabs and line breaks, nothing else of the kind.
_NOT_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Lone surrogates ("\ud800" in JSON) are not text any database column can store.
_SURROGATE = re.compile("[\ud800-\udfff]")
_LOCALE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{1,8})*")
# Survey and unsubscribe tokens come from secrets.token_urlsafe; coupon and referral codes, upper-cased, are
# like LP-7KQ4-M2XD-9TRH and 7KQ4M2XDHT. Anything else (a NUL, which PostgreSQL refuses in a query, an
# over-long string) is no token or code of ours and is looked up nowhere.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CODE = re.compile(r"[A-Z0-9-]{1,20}")


def _as_text(value, label: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError(f"{label} must be text.", code="invalid")
    if _SURROGATE.search(value):
        raise ValidationError(f"{label} is not valid Unicode text.", code="invalid")
    return value


def clean_line(value, *, label: str, max_length: int) -> str:
    """A one-line value such as a name, a phone number or an id: trimmed, no control characters."""
    value = _as_text(value, label).strip()
    if _NOT_IN_A_LINE.search(value):
        raise ValidationError(f"{label} contains a line break or control character.", code="invalid")
    if len(value) > max_length:
        raise ValidationError(f"{label} is too long (at most {max_length} characters).", code="max_length")
    return value


def clean_name(value, *, label: str = "name") -> str:
    return clean_line(value, label=label, max_length=NAME_MAX_LENGTH)


def clean_phone(value, *, label: str = "phone") -> str:
    return clean_line(value, label=label, max_length=PHONE_MAX_LENGTH)


def clean_external_id(value, *, label: str = "external_id") -> str:
    return clean_line(value, label=label, max_length=EXTERNAL_ID_MAX_LENGTH)


def clean_text(value, *, label: str, max_length: int) -> str:
    """Free text a person typed (a reason, a note): trimmed; line breaks allowed, NUL and other controls not."""
    value = _as_text(value, label).strip()
    if _NOT_IN_TEXT.search(value):
        raise ValidationError(f"{label} contains a character that is not allowed (NUL or a control character).",
                              code="invalid")
    if len(value) > max_length:
        raise ValidationError(f"{label} is too long (at most {max_length} characters).", code="max_length")
    return value


def canonical_email(value: str) -> str:
    """An address as it is compared and stored: trimmed, Unicode NFC, lower case, the domain in IDNA form.

    `Zoe@Exämple.org` and `zoe@xn--exmple-cua.org` are the same address. Raises
    ValidationError when the domain has no IDNA form.
    """
    value = unicodedata.normalize("NFC", value.strip())
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise ValidationError("Enter a valid email address.", code="invalid")
    domain = domain.rstrip(".").lower()
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValidationError("Enter a valid email address.", code="invalid") from None
    return f"{local.lower()}@{domain.lower()}"


def clean_email(value, *, label: str = "email", required: bool = True) -> str:
    """A customer's address, canonical (see `canonical_email`), or ValidationError."""
    value = _as_text(value, label).strip()
    if not value:
        if required:
            raise ValidationError(f"{label} is required.", code="required")
        return ""
    if _NOT_IN_A_LINE.search(value):
        raise ValidationError(f"{label} contains a line break or control character.", code="invalid")
    if len(value) > EMAIL_MAX_LENGTH:
        raise ValidationError(f"{label} is too long (at most {EMAIL_MAX_LENGTH} characters).", code="max_length")
    address = canonical_email(value)
    validate_email(address)
    if len(address) > EMAIL_MAX_LENGTH:
        raise ValidationError(f"{label} is too long (at most {EMAIL_MAX_LENGTH} characters).", code="max_length")
    if address.endswith("@" + ERASED_DOMAIN):
        raise ValidationError("This address stands for an erased person and cannot be used.", code="erased")
    return address


def clean_score(value, *, label: str = "The score") -> int:
    """A score: a whole number from 0 to 10 (an int, not a bool, a float or its text)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
        raise ValidationError(f"{label} must be a whole number from 0 to 10.", code="invalid")
    return value


def score_from_text(text: str, *, label: str = "The score") -> int:
    """A score written as text (a CSV cell): its ASCII digits, then `clean_score`."""
    text = (text or "").strip()
    if not (text.isascii() and text.isdigit()):
        raise ValidationError(f"{label} must be a whole number from 0 to 10.", code="invalid")
    return clean_score(int(text), label=label)


def is_token(value) -> bool:
    """Whether `value` could be a survey or unsubscribe token we issued."""
    return isinstance(value, str) and bool(_TOKEN.fullmatch(value))


def code_or_none(value) -> str | None:
    """A coupon or referral code as stored (codes are case-insensitive), or None for what no code looks like."""
    code = value.strip().upper() if isinstance(value, str) else ""
    return code if _CODE.fullmatch(code) else None


def clean_locale(value, *, label: str = "locale") -> str:
    """A language we survey in, as a tag ("es", "es-mx", "de_AT" → "de-at"); "" when none is given."""
    value = _as_text(value, label).strip().lower().replace("_", "-")
    if not value:
        return ""
    languages = [code for code, _name in settings.LANGUAGES]
    if len(value) > LOCALE_MAX_LENGTH or not _LOCALE.fullmatch(value) or value.split("-")[0] not in languages:
        shown = value if len(value) <= 40 and not _NOT_IN_A_LINE.search(value) else value[:40].encode("unicode_escape").decode()
        raise ValidationError(f"unknown locale {shown!r} (use one of {', '.join(languages)})", code="invalid")
    return value
