"""Template context shared by every page."""

from django.conf import settings


def branding(request):
    return {"company_name": settings.NPS_COMPANY_NAME}
