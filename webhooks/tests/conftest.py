# The ledger's reconciliation and a superuser, shared with the wallets tests.
from wallets.tests.conftest import reconcile, staff  # noqa: F401
