"""Django admin: Follow-up cases: status, assignee and notes through the same services as the cases pages."""


from django import forms
from django.contrib import admin
from django.db.models import Q

from surveys.followups import services as followups
from surveys.followups.selectors import case_assignees
from surveys.models import (
    CaseNote,
    FollowUpCase,
)


class CaseNoteInline(admin.TabularInline):
    """Notes are added through followups.case_note_add (FollowUpCaseAdmin.save_formset), never edited or removed."""

    model = CaseNote
    extra = 0
    fields = ["created_at", "author", "text"]
    readonly_fields = ["created_at", "author"]
    can_delete = False

    def has_change_permission(self, request, obj=None):
        return False


class FollowUpCaseAdminForm(forms.ModelForm):
    class Meta:
        model = FollowUpCase
        fields = ["status", "assignee"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The same people the cases pages offer (those who may work cases), and whoever has the case now,
        # so that saving another change does not unassign someone who has since lost the permission.
        assignees = case_assignees()
        if self.instance.assignee_id:
            assignees = assignees.model.objects.filter(
                Q(pk__in=assignees.values("pk")) | Q(pk=self.instance.assignee_id)
            ).order_by("username")
        self.fields["assignee"].queryset = assignees


@admin.register(FollowUpCase)
class FollowUpCaseAdmin(admin.ModelAdmin):
    list_display = ["__str__", "touchpoint", "score", "status", "assignee", "due_at", "resolved_at", "won_back_at"]
    list_filter = ["status", "touchpoint", ("won_back_at", admin.EmptyFieldListFilter)]
    search_fields = ["customer__email", "customer__name", "response__reason"]
    list_select_related = ["customer", "touchpoint", "response", "assignee"]
    form = FollowUpCaseAdminForm
    fields = ["customer", "touchpoint", "response", "status", "assignee", "opened_at", "due_at", "contacted_at",
              "resolved_at", "won_back_at", "alert_sent_at"]
    # Times are set by the rules of the cases pages (followups.case_status_set), never typed in.
    readonly_fields = ["customer", "touchpoint", "response", "opened_at", "due_at", "contacted_at", "resolved_at",
                       "won_back_at", "alert_sent_at"]
    inlines = [CaseNoteInline]

    def has_add_permission(self, request):
        return False

    @admin.display(description="score", ordering="response__score")
    def score(self, obj):
        return obj.response.score

    def save_model(self, request, obj, form, change):
        """Status and assignee through the same services as the cases pages: times, notes, statistics."""
        case = FollowUpCase.objects.get(pk=obj.pk)
        if "assignee" in form.changed_data:
            followups.case_assign(case=case, assignee=form.cleaned_data["assignee"], by=request.user)
        if "status" in form.changed_data:
            followups.case_status_set(case=case, status=form.cleaned_data["status"], by=request.user)
        obj.refresh_from_db()

    def save_formset(self, request, form, formset, change):
        for note in formset.save(commit=False):
            if note.pk is None:
                followups.case_note_add(case=form.instance, author=request.user, text=note.text)
