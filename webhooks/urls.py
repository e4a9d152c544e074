from django.urls import path

from webhooks import views

urlpatterns = [
    path("webhooks/stripe", views.StripeWebhookView.as_view(), name="stripe-webhook"),
]
