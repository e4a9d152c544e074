from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import ReadOnlyPasswordHashField

from accounts.emails import InvalidEmail, normalize_email
from accounts.models import User


def _normal_email(value: str) -> str:
    try:
        return normalize_email(value)
    except InvalidEmail as exc:
        raise forms.ValidationError(str(exc)) from exc


class UserCreationForm(forms.ModelForm):
    password1 = forms.CharField(label="Password", widget=forms.PasswordInput, strip=False)
    password2 = forms.CharField(label="Password confirmation", widget=forms.PasswordInput, strip=False)

    class Meta:
        model = User
        fields = ["email", "role", "first_name", "last_name"]

    def clean_email(self):
        email = _normal_email(self.cleaned_data["email"])
        if User.objects.filter(email=email).exists():
            raise forms.ValidationError("An account with this email already exists.")
        return email

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password1") != cleaned.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        return cleaned

    def save(self, commit=True):
        user = super().save(commit=False)
        user.set_password(self.cleaned_data["password1"])
        if commit:
            user.save()
        return user


class UserChangeForm(forms.ModelForm):
    password = ReadOnlyPasswordHashField(label="Password")

    class Meta:
        model = User
        fields = [
            "email",
            "password",
            "role",
            "first_name",
            "last_name",
            "is_active",
            "is_staff",
            "is_superuser",
            "groups",
            "user_permissions",
        ]

    def clean_email(self):
        return _normal_email(self.cleaned_data["email"])


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Users are never deleted (their wallets, ledger and orders refer to them): staff
    deactivate them instead, which refuses their logins and tokens from then on."""

    form = UserChangeForm
    add_form = UserCreationForm
    actions = ["deactivate_users"]
    ordering = ["-created_at"]
    list_display = ["email", "role", "first_name", "last_name", "is_staff", "is_active", "created_at"]
    list_filter = ["role", "is_staff", "is_active"]
    search_fields = ["email", "first_name", "last_name"]
    readonly_fields = ["id", "created_at", "updated_at", "last_login"]
    fieldsets = [
        (None, {"fields": ["id", "email", "password"]}),
        ("Profile", {"fields": ["role", "first_name", "last_name"]}),
        ("Access", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["last_login", "created_at", "updated_at"]}),
    ]
    add_fieldsets = [
        (None, {"classes": ["wide"], "fields": ["email", "role", "first_name", "last_name", "password1", "password2"]}),
    ]

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Deactivate selected users (no more logins; nothing is deleted)", permissions=["change"])
    def deactivate_users(self, request, queryset):
        others = queryset.exclude(pk=request.user.pk)
        if others.count() < queryset.count():
            self.message_user(request, "You cannot deactivate yourself; the others were.", messages.WARNING)
        count = others.filter(is_active=True).update(is_active=False)
        self.message_user(request, f"Deactivated {count} user(s).", messages.SUCCESS)
