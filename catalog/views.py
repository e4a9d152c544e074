from urllib.parse import urlencode

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog import selectors, services
from catalog.cache import cached_list_page
from catalog.serializers import ProductInputSerializer, ProductListQuerySerializer, ProductSerializer
from paymentflow.api.pagination import DEFAULT_LIMIT, MAX_LIMIT, PageRequest, page_request_from, total_pages
from paymentflow.api.permissions import IsMerchant, Public

_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

_LIST_PARAMETERS = [
    OpenApiParameter("page", OpenApiTypes.INT, description="Page number, from 1.", default=1),
    OpenApiParameter(
        "limit", OpenApiTypes.INT, description=f"Items per page (at most {MAX_LIMIT}).", default=DEFAULT_LIMIT
    ),
    ProductListQuerySerializer,
    OpenApiParameter(
        "X-Total-Count",
        OpenApiTypes.INT,
        location=OpenApiParameter.HEADER,
        response=[200],
        description="Number of products matching the filters, on all pages.",
    ),
    OpenApiParameter(
        "Link",
        OpenApiTypes.STR,
        location=OpenApiParameter.HEADER,
        response=[200],
        description='RFC 8288 links to the first, prev, next and last pages (rel="first" ...).',
    ),
]


def _link_header(request, filters, page: PageRequest, total: int) -> str:
    """`<url>; rel="first", ...` with the query in the contract's camelCase names."""
    base = request.build_absolute_uri(request.path)
    query = {
        "search": filters.search,
        "merchantId": str(filters.merchant_id) if filters.merchant_id else "",
        "minPrice": str(filters.min_price) if filters.min_price is not None else "",
        "maxPrice": str(filters.max_price) if filters.max_price is not None else "",
    }
    query = {k: v for k, v in query.items() if v}

    def url(number: int) -> str:
        return f"{base}?{urlencode({'page': number, 'limit': page.limit, **query})}"

    last = max(1, total_pages(total, page.limit))
    links = [(url(1), "first")]
    if page.page > 1:
        links.append((url(min(page.page - 1, last)), "prev"))
    if page.page < last:
        links.append((url(page.page + 1), "next"))
    links.append((url(last), "last"))
    return ", ".join(f'<{target}>; rel="{rel}"' for target, rel in links)


class ProductListCreateView(APIView):
    def get_permissions(self):
        return [Public()] if self.request.method in _SAFE_METHODS else [IsMerchant()]

    def perform_authentication(self, request):
        # The public list is the same for everyone: no token is read, so a stale one cannot
        # turn it into a 401, and a cache hit costs no database query at all.
        if request.method not in _SAFE_METHODS:
            super().perform_authentication(request)

    @extend_schema(
        operation_id="products_list",
        parameters=_LIST_PARAMETERS,
        responses={200: ProductSerializer(many=True)},
        tags=["products"],
        summary="Browse products",
        description="Lists active, in-stock products, newest first, filtered by `search` (in the name), "
        "`merchantId`, `minPrice` and `maxPrice`. A plain JSON array; the paging is in the `X-Total-Count` "
        "and `Link` headers. No token needed.",
    )
    def get(self, request):
        page = page_request_from(request)
        query = ProductListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.to_filters()

        def build() -> dict:
            products, total = selectors.product_public_page(filters=filters, page=page)
            return {"total": total, "items": [dict(item) for item in ProductSerializer(products, many=True).data]}

        result = cached_list_page(params={**filters.as_key(), "page": page.page, "limit": page.limit}, build=build)
        response = Response(result["items"])
        response["X-Total-Count"] = str(result["total"])
        response["Link"] = _link_header(request, filters, page, result["total"])
        return response

    @extend_schema(
        operation_id="products_create",
        request=ProductInputSerializer,
        responses={201: ProductSerializer},
        tags=["products"],
        summary="Create a product",
        description="A merchant puts a product on sale with its price and the units in stock. Other "
        "users get 403 `PERMISSION_DENIED`. The product is active unless `isActive` is false.",
    )
    def post(self, request):
        data = ProductInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        product = services.product_create(merchant=request.user, **data.validated_data)
        return Response(ProductSerializer(product).data, status=status.HTTP_201_CREATED)


class ProductDetailView(APIView):
    """GET is public (a valid token identifies the owner, who also sees an inactive
    product); PATCH and DELETE are the owner's."""

    def get_permissions(self):
        return [Public()] if self.request.method in _SAFE_METHODS else [IsMerchant()]

    @extend_schema(
        operation_id="products_retrieve",
        responses={200: ProductSerializer},
        tags=["products"],
        summary="A product",
        description="Returns one product. No token needed; an inactive product is 404 except to its own "
        "merchant (send the merchant's token).",
    )
    def get(self, request, pk):
        return Response(ProductSerializer(selectors.product_get_visible(product_id=pk, user=request.user)).data)

    @extend_schema(
        operation_id="products_partial_update",
        request=ProductInputSerializer(partial=True),
        responses={200: ProductSerializer},
        tags=["products"],
        summary="Change a product",
        description="The product's merchant changes any of its fields (name, description, price, units in "
        "stock, active). Another merchant's product is 403 `UNAUTHORIZED_PRODUCT_ACCESS`. Orders already "
        "placed keep the price they were placed at.",
    )
    def patch(self, request, pk):
        data = ProductInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        product = services.product_update(product_id=pk, actor=request.user, changes=dict(data.validated_data))
        return Response(ProductSerializer(product).data)

    @extend_schema(
        operation_id="products_destroy",
        responses={204: OpenApiResponse(description="Deactivated (never erased).")},
        tags=["products"],
        summary="Withdraw a product from sale",
        description="The product's merchant takes it off sale: it is deactivated, never erased, since "
        "orders refer to it. Another merchant's product is 403 `UNAUTHORIZED_PRODUCT_ACCESS`.",
    )
    def delete(self, request, pk):
        services.product_deactivate(product_id=pk, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MyProductsView(ListAPIView):
    permission_classes = [IsMerchant]
    serializer_class = ProductSerializer
    filter_backends: list = []

    def get_queryset(self):
        return selectors.product_merchant_queryset(merchant=self.request.user)

    @extend_schema(
        operation_id="products_merchant_mine",
        tags=["products"],
        summary="The caller's products",
        description="A merchant lists their own products, inactive and out-of-stock ones included, newest "
        "first, paged (`page`, `limit`).",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
