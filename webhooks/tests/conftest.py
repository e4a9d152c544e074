# A superuser, shared with the wallets tests (`reconcile` comes from paymentflow.testing.fixtures).
from wallets.tests.conftest import staff  # noqa: F401
