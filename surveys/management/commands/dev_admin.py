"""`python manage.py dev_admin`: a development admin login, created once and printed every time."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create (once) and print the development admin login. Refuses to run with DEBUG off."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("dev_admin is for development only (DEBUG is off); use createsuperuser.")
        password_file = settings.VAR_DIR / "dev-admin-password.txt"
        User = get_user_model()
        user = User.objects.filter(username="admin").first()
        if user is None or not password_file.exists():
            password = secrets.token_urlsafe(12)
            if user is None:
                user = User.objects.create_superuser("admin", "admin@localhost", password)
            else:
                user.set_password(password)
                user.save(update_fields=["password"])
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        password = password_file.read_text().strip()
        self.stdout.write(
            f"\n  Admin:  {settings.SITE_URL}/admin/\n  Login:  admin\n  Password: {password}\n"
            f"  Emails: {settings.EMAIL_FILE_PATH}/*.eml\n"
        )
