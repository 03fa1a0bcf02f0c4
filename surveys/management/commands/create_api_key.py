"""`python manage.py create_api_key NAME`: prints a new API key once; only its hash is stored."""

from django.core.management.base import BaseCommand

from surveys import services


class Command(BaseCommand):
    help = "Create an API key for an integration. The key is printed once, on the last line."

    def add_arguments(self, parser):
        parser.add_argument("name", help="What the key is for, e.g. 'Helpdesk'.")

    def handle(self, *args, name: str, **options):
        api_key, raw_key = services.api_key_create(name=name)
        self.stderr.write(f"Created API key {api_key.prefix}… for {name!r}. Store it now: it is not shown again.")
        self.stdout.write(raw_key)
