"""URL map: the survey pages, the JSON API, the admin and the login pages."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path, re_path

from surveys.api import v1 as api
from surveys.api.delighted import views as api_delighted
from surveys.web import cases as views_cases
from surveys.web import dashboard as views_dashboard
from surveys.web import survey as views

admin.site.site_header = "Loyal Promoters"
admin.site.site_title = "Loyal Promoters admin"
admin.site.index_title = "Surveys and customers"

urlpatterns = [
    path("", views.home, name="home"),
    path("s/<str:token>/", views.survey, name="survey"),
    path("u/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("r/<str:code>/", views.referral, name="referral"),
    path("dashboard/", views_dashboard.dashboard, name="dashboard"),
    path("dashboard/export.csv", views_dashboard.export_csv, name="dashboard-export"),
    path("cases/", views_cases.case_list, name="case-list"),
    path("cases/<int:case_id>/", views_cases.case_detail, name="case-detail"),
    path("api/v1/invitations", api.invitations_create, name="api-invitations"),
    path("api/v1/coupons/<str:code>/redeem", api.coupon_redeem, name="api-coupon-redeem"),
    path("api/v1/referrals/<str:code>/convert", api.referral_convert, name="api-referral-convert"),
    # Delighted-compatible API: every path with or without ".json".
    re_path(r"^v1/people(?:\.json)?$", api_delighted.people, name="delighted-people"),
    re_path(
        r"^v1/people/(?P<email>[^/]+)/survey_requests/pending(?:\.json)?$",
        api_delighted.pending_survey_requests_delete,
        name="delighted-pending-survey-requests",
    ),
    re_path(r"^v1/people/(?P<identifier>[^/]+?)(?:\.json)?$", api_delighted.person_delete, name="delighted-person"),
    re_path(r"^v1/survey_responses(?:\.json)?$", api_delighted.survey_responses, name="delighted-survey-responses"),
    re_path(
        r"^v1/survey_responses/(?P<pk>[0-9]{1,18})(?:\.json)?$",
        api_delighted.survey_response_detail,
        name="delighted-survey-response",
    ),
    re_path(r"^v1/metrics(?:\.json)?$", api_delighted.metrics, name="delighted-metrics"),
    re_path(r"^v1/unsubscribes(?:\.json)?$", api_delighted.unsubscribes, name="delighted-unsubscribes"),
    re_path(r"^v1/bounces(?:\.json)?$", api_delighted.bounces, name="delighted-bounces"),
    path("accounts/login/", auth_views.LoginView.as_view(template_name="registration/login.html"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]

handler404 = "surveys.web.survey.page_not_found"
handler500 = "surveys.web.survey.server_error"
