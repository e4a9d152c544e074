"""One address, one account (API.md, Authentication): emails are compared and stored after
normalisation (NFKC, lower case, the domain in IDNA ASCII), and addresses with invisible or
control characters are refused."""

import importlib

import pytest
from django.apps import apps

from accounts.emails import InvalidEmail, normalize_email
from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from paymentflow.testing.assertions import assert_error

pytestmark = pytest.mark.django_db

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"


def register(client, email):
    return client.post(REGISTER, {"email": email, "password": DEFAULT_PASSWORD, "role": "USER"}, format="json")


class TestNormalForm:
    @pytest.mark.parametrize(
        ("raw", "normal"),
        [
            ("Buyer@Example.COM", "buyer@example.com"),
            ("  buyer@example.com\n", "buyer@example.com"),
            ("x@exämple.com", "x@xn--exmple-cua.com"),
            ("x@EXÄMPLE.com", "x@xn--exmple-cua.com"),
            ("x@xn--exmple-cua.com", "x@xn--exmple-cua.com"),
            ("ｘ@ｅｘａｍｐｌｅ．ｃｏｍ", "x@example.com"),  # full-width forms (NFKC)
            ("ﬁle@example.com", "file@example.com"),  # a ligature (NFKC)
        ],
    )
    def test_normal_form(self, raw, normal):
        assert normalize_email(raw) == normal
        assert normalize_email(normal) == normal  # idempotent

    @pytest.mark.parametrize(
        "raw",
        [
            "x@example.com\u200b",  # zero-width space
            "x\u200d@example.com",  # zero-width joiner
            "x@ex\u00adample.com",  # soft hyphen
            "x@example.com\x00",  # NUL
            "x\x1f@example.com",  # a control character
            "\u202ex@example.com",  # right-to-left override
            "x@exa\ufe0fmple.com",  # a variation selector
            "x\u3164@example.com",  # Hangul filler
            "x y@example.com",
        ],
    )
    def test_invisible_or_control_characters_are_refused(self, raw):
        with pytest.raises(InvalidEmail):
            normalize_email(raw)


class TestRegistration:
    def test_a_zero_width_space_is_refused(self, api_client):
        assert register(api_client, "x@example.com").status_code == 201
        body = assert_error(register(api_client, "x@example.com\u200b"), 400, "VALIDATION_ERROR")
        assert "invisible" in body["details"]["email"][0]
        assert User.objects.count() == 1

    @pytest.mark.parametrize("lookalike", ["x@xn--exmple-cua.com", "X@EXÄMPLE.COM", "ｘ@exämple.com"])
    def test_an_idn_domain_and_its_ascii_form_are_one_account(self, api_client, lookalike):
        created = register(api_client, "x@exämple.com")
        assert created.status_code == 201 and created.json()["user"]["email"] == "x@xn--exmple-cua.com"
        assert_error(register(api_client, lookalike), 409, "EMAIL_TAKEN")
        assert User.objects.count() == 1

    @pytest.mark.parametrize("typed", ["x@exämple.com", "x@xn--exmple-cua.com", "X@Exämple.com"])
    def test_login_finds_the_account_whichever_form_is_typed(self, api_client, typed):
        register(api_client, "x@exämple.com")
        response = api_client.post(LOGIN, {"email": typed, "password": DEFAULT_PASSWORD}, format="json")
        assert response.status_code == 200, response.content

    @pytest.mark.parametrize("typed", ["x@example.com\u200b", "x@exa\u202emple.com", "not an email", "x@-bad-.com"])
    def test_login_with_an_impossible_address_is_the_usual_401(self, api_client, typed):
        UserFactory(email="x@example.com")
        response = api_client.post(LOGIN, {"email": typed, "password": DEFAULT_PASSWORD}, format="json")
        assert_error(response, 401, "INVALID_CREDENTIALS")

    def test_an_address_too_long_once_encoded_is_refused(self, api_client):
        email = "x" * 60 + "@" + ".".join(["ä" * 30] * 6) + ".com"  # each label grows when IDNA-encoded
        assert len(email) <= 254 < len(normalize_email(email))
        assert_error(register(api_client, email), 400, "VALIDATION_ERROR")
        assert not User.objects.exists()


class TestNonAsciiLocalPart:
    """The part before the @ must be ASCII after NFKC (internationalised mailboxes, RFC 6531,
    are not supported); the domain keeps its IDNA handling."""

    @pytest.mark.parametrize("raw", ["jösé@example.com", "jösé@exämple.com", "用户@example.com", "ｊöse@example.com"])
    def test_normal_form_refuses_it(self, raw):
        with pytest.raises(InvalidEmail, match="before the @"):
            normalize_email(raw)

    @pytest.mark.parametrize("raw", ["jösé@example.com", "Jösé@Example.com"])
    def test_registration_is_a_clear_400(self, api_client, raw):
        body = assert_error(register(api_client, raw), 400, "VALIDATION_ERROR")
        message = body["details"]["email"][0]
        assert "before the @" in message and "ASCII" in message
        assert "ASCII" in body["message"]
        assert not User.objects.exists()

    def test_login_with_it_is_the_wrong_password_401(self, api_client):
        response = api_client.post(LOGIN, {"email": "jösé@example.com", "password": DEFAULT_PASSWORD}, format="json")
        assert_error(response, 401, "INVALID_CREDENTIALS")

    @pytest.mark.parametrize(
        ("raw", "normal"), [("jose@exämple.com", "jose@xn--exmple-cua.com"), ("ｊose@example.com", "jose@example.com")]
    )
    def test_an_ascii_local_part_after_nfkc_is_accepted(self, api_client, raw, normal):
        created = register(api_client, raw)
        assert created.status_code == 201, created.content
        assert created.json()["user"]["email"] == normal


class TestBackOffice:
    def test_admin_login_with_an_invisible_character_is_a_normal_refusal(self, client):
        UserFactory(email="staff@example.com", is_staff=True)
        response = client.post("/admin/login/", {"username": "staff@example.com\u200b", "password": DEFAULT_PASSWORD})
        assert response.status_code == 200  # the login form again, with its error
        assert "_auth_user_id" not in client.session

    def test_admin_cannot_create_a_lookalike_account(self, client):
        admin = User.objects.create_superuser("root@example.com", DEFAULT_PASSWORD)
        client.force_login(admin)
        UserFactory(email="x@xn--exmple-cua.com")
        form = {"email": "x@exämple.com", "role": "USER", "password1": "Zx9!long-pass", "password2": "Zx9!long-pass"}
        response = client.post("/admin/accounts/user/add/", form)
        assert response.status_code == 200
        assert "already exists" in response.content.decode()
        assert User.objects.filter(email__startswith="x@").count() == 1


class TestExistingAddresses:
    """Migration accounts/0002 normalises stored addresses and reports, never merges, clashes."""

    @pytest.fixture
    def migration(self):
        return importlib.import_module("accounts.migrations.0002_normalize_emails")

    def insert(self, email):
        user = UserFactory()
        User.objects.filter(pk=user.pk).update(email=email)  # as stored before normalisation existed
        return user

    def test_clashes_are_reported_and_left_alone(self, migration, capsys):
        unicode_form = self.insert("x@exämple.com")
        ascii_form = self.insert("x@xn--exmple-cua.com")
        lonely = self.insert("y@exämple.com")
        invisible = self.insert("z@example.com\u200b")
        plain = self.insert("z@example.com")
        untouched = self.insert("w@example.com")

        migration.normalize_stored_emails(apps, schema_editor=None)

        stored = dict(User.objects.values_list("pk", "email"))
        assert stored[lonely.pk] == "y@xn--exmple-cua.com"  # normalised: nobody else has it
        assert stored[unicode_form.pk] == "x@exämple.com" and stored[ascii_form.pk] == "x@xn--exmple-cua.com"
        assert stored[invisible.pk] == "z@example.com\u200b" and stored[plain.pk] == "z@example.com"
        assert stored[untouched.pk] == "w@example.com"
        report = capsys.readouterr().out
        assert "x@xn--exmple-cua.com" in report and str(unicode_form.pk) in report and str(ascii_form.pk) in report
        assert str(invisible.pk) in report and str(plain.pk) in report
        assert str(untouched.pk) not in report

    def test_nothing_to_report_says_so(self, migration, capsys):
        self.insert("a@example.com")
        migration.normalize_stored_emails(apps, schema_editor=None)
        assert "CLASH" not in capsys.readouterr().out
