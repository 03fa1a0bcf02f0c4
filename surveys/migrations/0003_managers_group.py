"""Create the "Managers" group: the dashboard and working follow-up cases."""

from django.db import migrations

MANAGER_PERMISSIONS = [
    ("surveys", "view_dashboard"),
    ("surveys", "view_followupcase"),
    ("surveys", "change_followupcase"),
    ("surveys", "view_casenote"),
    ("surveys", "add_casenote"),
    ("surveys", "view_response"),
    ("surveys", "view_coupon"),
]


def create_managers_group(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations ran; make them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Managers")
    for app_label, codename in MANAGER_PERMISSIONS:
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


class Migration(migrations.Migration):
    dependencies = [
        ("surveys", "0002_promoters_referrals_cases"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_managers_group, migrations.RunPython.noop)]
