from django.apps import AppConfig


class WalletsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "wallets"

    def ready(self):
        from payments.hooks import register, register_clearing_balance
        from wallets import receivers  # noqa: F401 - a registered user gets a wallet
        from wallets.models import SystemAccount
        from wallets.selectors import system_wallet_balances
        from wallets.topups import PAYMENT_KIND, TOPUP_HOOKS

        register(PAYMENT_KIND, TOPUP_HOOKS)
        register_clearing_balance(lambda: system_wallet_balances()[SystemAccount.STRIPE_CLEARING])
