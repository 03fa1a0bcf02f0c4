"""URL map: the survey pages, the JSON API, the admin and the login pages."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from surveys import api, views, views_cases, views_dashboard

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
    path("accounts/login/", auth_views.LoginView.as_view(template_name="registration/login.html"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]

handler404 = "surveys.views.page_not_found"
handler500 = "surveys.views.server_error"
