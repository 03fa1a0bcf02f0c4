"""A development email backend: every message becomes one `.eml` file.

Django's own file backend appends many messages to one log file; a file per
message opens directly in a mail client (or a browser via a text editor), so a
developer can read the email and click its links.

A message about a customer (`message.customer_id`, set by surveys.emails) is
written to a file whose name carries that id, so that erasing the customer
removes their mail files by identity (`eml_files_erase`), not by searching text.
"""

import threading
import uuid
from pathlib import Path

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

_lock = threading.Lock()


class EmlFileBackend(BaseEmailBackend):
    def __init__(self, *args, file_path=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.folder = Path(file_path or settings.EMAIL_FILE_PATH)

    def send_messages(self, email_messages):
        if not email_messages:
            return 0
        self.folder.mkdir(parents=True, exist_ok=True)
        sent = 0
        for message in email_messages:
            if not message.recipients():
                continue
            stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
            customer_id = getattr(message, "customer_id", None)
            about = f"-c{int(customer_id)}" if customer_id else ""
            path = self.folder / f"{stamp}{about}-{uuid.uuid4().hex[:8]}.eml"
            data = message.message().as_bytes(linesep="\r\n")
            with _lock:
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(data)
                tmp.rename(path)
            sent += 1
        return sent


def eml_files_erase(*, customer_id: int, folder=None) -> int:
    """Delete the mail files written to or about a customer. Returns how many went."""
    folder = Path(folder or settings.EMAIL_FILE_PATH)
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.glob(f"*-c{int(customer_id)}-*.eml"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed
