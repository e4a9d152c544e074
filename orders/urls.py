from django.urls import path

from orders import views

urlpatterns = [
    # Before the id route (which could not match it anyway: <uuid:pk>).
    path("orders/merchant/sales", views.MerchantSalesView.as_view(), name="orders-merchant-sales"),
    path("orders", views.OrderListCreateView.as_view(), name="orders"),
    path("orders/<uuid:pk>", views.OrderDetailView.as_view(), name="order-detail"),
    path("orders/<uuid:pk>/refund", views.OrderRefundView.as_view(), name="order-refund"),
    path("orders/<uuid:pk>/cancel", views.OrderCancelView.as_view(), name="order-cancel"),
]
