from django.urls import path

from leaderboard import policy_views, views

app_name = "leaderboard"

urlpatterns = [
    path("", views.index, name="index"),
    path("policy/", policy_views.policy_page, name="policy"),
    path("plots/<int:snapshot_id>/<str:kind>.svg", views.plot, name="plot"),
    path("speed/<int:snapshot_id>.svg", views.speed_plot, name="speed_plot"),
    path("models/<slug:key>/", views.model, name="model"),
    path("models/<slug:key>/history.svg", views.model_plot, name="model_plot"),
]
