"""Wallets' answers to other apps' signals (connected by importing this module in
`WalletsConfig.ready()`)."""

from django.dispatch import receiver

from accounts.signals import user_registered
from wallets.services import wallet_create


@receiver(user_registered, dispatch_uid="wallets.create_wallet_for_registered_user")
def create_wallet_for_registered_user(sender, *, user, **kwargs):
    wallet_create(user=user)
