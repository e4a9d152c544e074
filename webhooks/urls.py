from django.urls import path

from webhooks import views

urlpatterns = [
    path("webhooks/stripe", views.StripeWebhookView.as_view(), name="stripe-webhook"),
    path("webhook-endpoints", views.WebhookEndpointListCreateView.as_view(), name="webhook-endpoints"),
    path("webhook-endpoints/<uuid:pk>", views.WebhookEndpointDetailView.as_view(), name="webhook-endpoint-detail"),
    path(
        "webhook-endpoints/<uuid:pk>/deliveries",
        views.WebhookDeliveryListView.as_view(),
        name="webhook-endpoint-deliveries",
    ),
]
