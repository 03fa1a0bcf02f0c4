"""The survey app. Its Celery tasks register at start-up, so the rest of the app can hand work to them
by name (core.dispatch) without importing the task module."""

from django.apps import AppConfig


class SurveysConfig(AppConfig):
    name = "surveys"
    verbose_name = "Surveys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import tasks  # noqa: F401 - registers the tasks with Celery
