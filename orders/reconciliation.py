"""The stock check `manage.py reconcile_ledger` runs (registered on import by OrdersConfig.ready).

Per product: available units + units held by PENDING and COMPLETED orders
== initial units + the sum of its stock adjustments (catalog.selectors.stock_drift).
"""

from catalog.selectors import stock_drift
from orders.selectors import held_units_by_product
from wallets.reconciliation import Problem, reconciliation_check


@reconciliation_check("stock")
def check_stock(*, progress=None) -> list[Problem]:
    return [
        Problem(
            "stock",
            f"product {d.product_id}: available {d.available_units} + held by orders {d.held_units} "
            f"!= initial {d.initial_units} + adjustments {d.adjustments} (drift {d.drift:+d})",
        )
        for d in stock_drift(held_units_by_product=held_units_by_product())
    ]
