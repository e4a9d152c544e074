from django.urls import path

from catalog import views

urlpatterns = [
    # Listed before the id route; <uuid:pk> could not match it anyway, but order says so.
    path("products/merchant/my-products", views.MyProductsView.as_view(), name="products-mine"),
    path("products", views.ProductListCreateView.as_view(), name="products"),
    path("products/<uuid:pk>", views.ProductDetailView.as_view(), name="product-detail"),
]
