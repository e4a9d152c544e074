"""What accounts tells the apps above it, without knowing them (they connect receivers)."""

from django.dispatch import Signal

#: Sent by `user_register` inside its transaction, with `user`: a receiver's writes (the
#: user's wallet) commit or roll back with the user.
user_registered = Signal()
