from django.contrib import admin
from django.urls import include, path, re_path

from paymentflow.api.health import healthz, readyz
from paymentflow.api.views import ApiIndexView, RedocView, SchemaView, SwaggerView, api_not_found
from paymentflow.metrics import metrics_view

# Each app's urls.py spells its paths out in full (`wallet/deposit`, `products/<id>`), as the
# contract lists them, with no trailing slash.
api_v1 = [
    path("", ApiIndexView.as_view(), name="api-index"),
    path("auth/", include("accounts.urls")),
    path("", include("wallets.urls")),
    path("", include("catalog.urls")),
    path("", include("orders.urls")),
    path("", include("webhooks.urls")),
]

# The back office's name, and "View site" goes to the API docs (there is no site at `/`).
admin.site.site_header = admin.site.site_title = "Payment Flow back office"
admin.site.index_title = "Operations"
admin.site.site_url = "/api/docs/"

urlpatterns = [
    path("api/v1/", include(api_v1)),
    # drf-spectacular's views, with their errors in the JSON envelope (api/views.py).
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", RedocView.as_view(url_name="schema"), name="redoc"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    # Anything else under /api/ is a 404 in the contract's envelope, even with DEBUG on.
    re_path(r"^api/", api_not_found),
]

handler400 = "paymentflow.api.views.handler400"
handler404 = "paymentflow.api.views.handler404"
handler500 = "paymentflow.api.views.handler500"
