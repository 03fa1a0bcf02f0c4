"""Managers work detractor follow-up cases here: list, assign, add notes, resolve.

Login and the case permissions are required; changing a case needs
`surveys.change_followupcase`, adding a note `surveys.add_casenote`.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from surveys.followups import selectors as cases
from surveys.followups import services as followups
from surveys.web.forms import CaseAssignForm, CaseNoteForm, CaseStatusForm


@login_required
@permission_required("surveys.view_followupcase", raise_exception=True)
def case_list(request: HttpRequest) -> HttpResponse:
    view = request.GET.get("view", "open")
    if view not in cases.CASE_FILTERS:
        view = "open"
    page = Paginator(cases.cases_list(user=request.user, view=view), 50).get_page(request.GET.get("page"))
    return render(
        request,
        "cases/list.html",
        {"nav": "cases", "page": page, "view": view, "filters": cases.CASE_FILTERS.items()},
    )


@login_required
@permission_required("surveys.view_followupcase", raise_exception=True)
@require_http_methods(["GET", "HEAD", "POST"])
def case_detail(request: HttpRequest, case_id: int) -> HttpResponse:
    case = cases.case_detail(case_id=case_id)
    if case is None:
        raise Http404("No such case.")
    assignees = cases.case_assignees()
    note_form = CaseNoteForm()
    assign_form = CaseAssignForm(initial={"assignee": case.assignee_id}, assignees=assignees)
    status_form = CaseStatusForm(initial={"status": case.status})

    if request.method == "POST":
        action = request.POST.get("action")
        if action == "note":
            if not request.user.has_perm("surveys.add_casenote"):
                raise PermissionDenied
            note_form = CaseNoteForm(request.POST)
            if note_form.is_valid():
                followups.case_note_add(case=case, author=request.user, text=note_form.cleaned_data["text"])
                messages.success(request, "Note added.")
                return redirect("case-detail", case_id=case.pk)
        elif action in ("assign", "status"):
            if not request.user.has_perm("surveys.change_followupcase"):
                raise PermissionDenied
            if action == "assign":
                assign_form = CaseAssignForm(request.POST, assignees=assignees)
                if assign_form.is_valid():
                    followups.case_assign(case=case, assignee=assign_form.cleaned_data["assignee"], by=request.user)
                    messages.success(request, "Case assigned.")
                    return redirect("case-detail", case_id=case.pk)
            else:
                status_form = CaseStatusForm(request.POST)
                if status_form.is_valid():
                    try:
                        followups.case_status_set(case=case, status=status_form.cleaned_data["status"], by=request.user)
                    except ValidationError as exc:
                        status_form.add_error("status", exc)
                    else:
                        messages.success(request, f"Case marked {status_form.cleaned_data['status']}.")
                        return redirect("case-detail", case_id=case.pk)
        else:
            messages.error(request, "Unknown action.")
    return render(
        request,
        "cases/detail.html",
        {
            "nav": "cases",
            "case": case,
            "notes": cases.case_notes(case=case),
            "note_form": note_form,
            "assign_form": assign_form,
            "status_form": status_form,
            "can_change": request.user.has_perm("surveys.change_followupcase"),
            "can_note": request.user.has_perm("surveys.add_casenote"),
        },
    )
