"""`python manage.py create_api_key NAME [--scope S ...]`: prints a new API key once; only its hash is stored."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from surveys.access import services as access
from surveys.models import ApiScope


class Command(BaseCommand):
    help = "Create an API key for an integration. The key is printed once, on the last line."

    def add_arguments(self, parser):
        parser.add_argument("name", help="What the key is for, e.g. 'Helpdesk'.")
        parser.add_argument(
            "--scope",
            action="append",
            dest="scopes",
            choices=ApiScope.values,
            help="What the key may do; repeat for several. Without it, the key may do everything.",
        )

    def handle(self, *args, name: str, scopes=None, **options):
        try:
            api_key, raw_key = access.api_key_create(name=name, scopes=scopes)
        except ValidationError as exc:
            raise CommandError(exc.messages[0]) from None
        self.stderr.write(
            f"Created API key {api_key.prefix}… for {name!r} (scopes: {', '.join(api_key.scopes)}). "
            "Store it now: it is not shown again."
        )
        self.stdout.write(raw_key)
