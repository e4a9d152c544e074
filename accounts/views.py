from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.serializers import (
    AuthResponseSerializer,
    LoginInputSerializer,
    RefreshInputSerializer,
    RegisterInputSerializer,
    TokenPairSerializer,
    UserSerializer,
)
from paymentflow.api.permissions import Public
from paymentflow.api.serializers import ErrorSerializer
from paymentflow.api.throttling import AuthRateThrottle


def _auth_payload(user) -> dict:
    return {"user": UserSerializer(user).data, **services.user_issue_tokens(user=user)}


class PublicAuthView(APIView):
    """Public auth endpoints ignore any Authorization header (a stale token must not block login)."""

    authentication_classes: list = []
    permission_classes = [Public]


class RegisterView(PublicAuthView):
    throttle_classes = [AuthRateThrottle]
    throttle_scope = "register"

    @extend_schema(request=RegisterInputSerializer, responses={201: AuthResponseSerializer}, tags=["auth"])
    def post(self, request):
        data = RegisterInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_register(**data.validated_data)
        return Response(_auth_payload(user), status=status.HTTP_201_CREATED)


class LoginView(PublicAuthView):
    throttle_classes = [AuthRateThrottle]
    throttle_scope = "login"

    @extend_schema(
        request=LoginInputSerializer, responses={200: AuthResponseSerializer, 401: ErrorSerializer}, tags=["auth"]
    )
    def post(self, request):
        data = LoginInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_login(**data.validated_data, request=request._request)
        return Response(_auth_payload(user))


class RefreshView(PublicAuthView):
    @extend_schema(
        request=RefreshInputSerializer,
        responses={200: TokenPairSerializer, 401: ErrorSerializer},  # a bad, expired or revoked refresh token
        tags=["auth"],
    )
    def post(self, request):
        data = RefreshInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(services.token_refresh(refresh_token=data.validated_data["refresh_token"]))


class LogoutView(APIView):
    @extend_schema(
        request=RefreshInputSerializer,
        responses={204: OpenApiResponse(description="The refresh token is revoked.")},
        tags=["auth"],
    )
    def post(self, request):
        data = RefreshInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.token_revoke(user=request.user, refresh_token=data.validated_data["refresh_token"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    @extend_schema(responses={200: UserSerializer}, tags=["auth"])
    def get(self, request):
        return Response(UserSerializer(request.user).data)
