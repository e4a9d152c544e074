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

    @extend_schema(
        request=RegisterInputSerializer,
        responses={201: AuthResponseSerializer},
        tags=["auth"],
        summary="Register a buyer or a merchant",
        description="Creates an account (`role` USER to buy, MERCHANT to sell) with its wallet, and returns "
        "the user with a first pair of tokens. The email is stored in its normal form (lower case, the domain "
        "in ASCII); one that is already registered in any spelling is 409 `EMAIL_TAKEN`. Throttled per "
        "client address.",
    )
    def post(self, request):
        data = RegisterInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_register(**data.validated_data)
        return Response(_auth_payload(user), status=status.HTTP_201_CREATED)


class LoginView(PublicAuthView):
    throttle_classes = [AuthRateThrottle]
    throttle_scope = "login"

    @extend_schema(
        request=LoginInputSerializer,
        responses={200: AuthResponseSerializer, 401: ErrorSerializer},
        tags=["auth"],
        summary="Log in",
        description="Exchanges an email and password for the user and a pair of tokens: an access token "
        "(15 minutes) for `Authorization: Bearer`, and a refresh token (7 days) for `POST /auth/refresh`. "
        "A wrong password, an unknown email and a staff account (staff use the back office, /admin/) are the "
        "same 401 `INVALID_CREDENTIALS`. Throttled per "
        "client address (429 with `Retry-After`).",
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
        summary="Refresh the tokens",
        description="Exchanges a refresh token for a new pair. The refresh token sent is revoked at once: "
        "use the new one next time. A refresh token that is invalid, expired, revoked or already used is 401 "
        "`TOKEN_NOT_VALID`.",
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
        summary="Log out",
        description="Revokes the caller's refresh token. One rule: any refresh token issued to the caller is "
        "answered 204, whatever its state (live, already revoked or expired), and is unusable afterwards; "
        "anything else (not a token, an access token, another user's token) is 401 `TOKEN_NOT_VALID`, "
        "because the client sent the wrong token and its own is still alive. Access tokens stay valid until "
        "they expire (15 minutes).",
    )
    def post(self, request):
        data = RefreshInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.token_revoke(user=request.user, refresh_token=data.validated_data["refresh_token"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    @extend_schema(
        responses={200: UserSerializer},
        tags=["auth"],
        summary="The caller's profile",
        description="Returns the user the access token belongs to: id, email, role and names.",
    )
    def get(self, request):
        return Response(UserSerializer(request.user).data)
