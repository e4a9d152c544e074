"""Every write on the catalog.

All stock changes go through here, under a row lock, with `F()` expressions:

- outside an order (merchant PATCH of `availableUnits`, the back office's "adjust stock"):
  `product_adjust_stock` / `product_update`, which also append a `StockAdjustment`;
- by an order: `product_take_units` (reserve or sell) and `product_return_units` (cancel,
  expiry, refund), which record nothing here because the order itself holds the units.

Every write that can change what the public list shows invalidates the list cache once
the transaction commits.
"""

from uuid import UUID

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from catalog.cache import invalidate_product_list_on_commit
from catalog.exceptions import (
    InvalidStockAdjustment,
    NotAMerchant,
    ProductNotFound,
    ProductOutOfStock,
    ProductUnavailable,
    UnauthorizedProductAccess,
)
from catalog.models import MAX_UNITS, Product, StockAdjustment
from paymentflow import sql

UPDATABLE_FIELDS = ("name", "description", "price", "available_units", "is_active")
MERCHANT_STOCK_REASON = "Merchant set available units"


def product_create(
    *, merchant, name: str, price, available_units: int, description: str = "", is_active: bool = True
) -> Product:
    """A new product; its starting stock is `initial_units` (no adjustment row)."""
    if not getattr(merchant, "is_merchant", False):
        raise NotAMerchant()
    product = Product.objects.create(
        merchant=merchant,
        name=name,
        description=description,
        price=price,
        available_units=available_units,
        initial_units=available_units,
        is_active=is_active,
    )
    invalidate_product_list_on_commit()
    return product


def product_lock(*, product_id: UUID) -> Product:
    """The product row, locked FOR UPDATE until the caller's transaction ends.

    Call inside `transaction.atomic()`. Several products: lock them in primary-key order.
    """
    product = Product.objects.select_for_update().filter(pk=product_id).first()
    if product is None:
        raise ProductNotFound()
    return product


def _check_owner(product: Product, actor) -> None:
    if product.merchant_id != actor.pk:
        raise UnauthorizedProductAccess()


def _stock_adjustment(*, product: Product, delta: int, reason: str, actor, source: str) -> StockAdjustment:
    """Validate a manual change of stock on a locked product and build its record."""
    if not isinstance(delta, int) or isinstance(delta, bool) or delta == 0:
        raise InvalidStockAdjustment("The change of stock must be a non-zero whole number.")
    reason = (reason or "").strip()
    if not reason:
        raise InvalidStockAdjustment("A reason is required.")
    before = product.available_units
    after = before + delta
    if after < 0:
        raise InvalidStockAdjustment(f"Stock cannot go below zero (available: {before}, change: {delta}).")
    if delta > 0 and after > MAX_UNITS:
        raise InvalidStockAdjustment(f"Stock cannot exceed {MAX_UNITS} units.")
    return StockAdjustment(
        product=product,
        delta=delta,
        units_before=before,
        units_after=after,
        reason=reason[:255],
        source=source,
        actor=actor,
    )


@transaction.atomic
def product_update(
    *,
    product_id: UUID,
    actor,
    changes: dict,
    require_owner: bool = True,
    stock_reason: str = MERCHANT_STOCK_REASON,
    stock_source: str = StockAdjustment.Source.MERCHANT,
) -> Product:
    """Change any of `UPDATABLE_FIELDS`. A new `available_units` is recorded as a
    `StockAdjustment` of the difference, computed under the lock (so units an order took a
    moment before are never written out of the books).

    `require_owner`: the actor must be the product's merchant (the API); the back office
    passes False and acts as staff.
    """
    unknown = set(changes) - set(UPDATABLE_FIELDS)
    if unknown:
        raise ValueError(f"Not updatable: {sorted(unknown)}")
    product = product_lock(product_id=product_id)
    if require_owner:
        _check_owner(product, actor)
    return _apply_changes(
        product=product, actor=actor, changes=changes, stock_reason=stock_reason, stock_source=stock_source
    )


def _apply_changes(*, product: Product, actor, changes: dict, stock_reason: str, stock_source: str) -> Product:
    """One UPDATE on a product the caller has locked; no-op when nothing changes."""
    values = {
        name: value for name, value in changes.items() if name != "available_units" and getattr(product, name) != value
    }
    adjustment = None
    if "available_units" in changes and changes["available_units"] != product.available_units:
        adjustment = _stock_adjustment(
            product=product,
            delta=changes["available_units"] - product.available_units,
            reason=stock_reason,
            actor=actor,
            source=stock_source,
        )
    if not values and adjustment is None:
        return product

    now = timezone.now()
    update = {**values, "updated_at": now}
    if adjustment is not None:
        update["available_units"] = F("available_units") + adjustment.delta
    Product.objects.filter(pk=product.pk).update(**update)
    if adjustment is not None:
        adjustment.save()
        product.available_units = adjustment.units_after
    for name, value in values.items():
        setattr(product, name, value)
    product.updated_at = now
    invalidate_product_list_on_commit()
    return product


@transaction.atomic
def product_deactivate(*, product_id: UUID, actor, require_owner: bool = True) -> Product:
    """DELETE: the product stops being sold but stays, since orders refer to it. Idempotent."""
    product = product_lock(product_id=product_id)
    if require_owner:
        _check_owner(product, actor)
    return _apply_changes(product=product, actor=actor, changes={"is_active": False}, stock_reason="", stock_source="")


@transaction.atomic
def product_adjust_stock(
    *, product_id: UUID, delta: int, reason: str, actor, source: str = StockAdjustment.Source.ADMIN
) -> StockAdjustment:
    """Add (delta > 0) or remove (delta < 0) units by hand, recording who and why."""
    product = product_lock(product_id=product_id)
    adjustment = _stock_adjustment(product=product, delta=delta, reason=reason, actor=actor, source=source)
    Product.objects.filter(pk=product.pk).update(
        available_units=F("available_units") + delta, updated_at=timezone.now()
    )
    adjustment.save()
    invalidate_product_list_on_commit()
    return adjustment


def _check_quantity(quantity: int) -> None:
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
        raise ValueError("quantity must be a positive integer")


#: `product_take_units` in one statement, written out (paymentflow/sql.py says why).
_TAKE_UNITS_SQL = """
    UPDATE catalog_product
       SET available_units = available_units - %s, updated_at = %s
     WHERE id = %s AND is_active AND available_units >= %s
 RETURNING {columns}
"""
_TAKE_ATTEMPTS = 3


def _take_units(*, product_id: UUID, quantity: int) -> Product | None:
    """One conditional UPDATE: the units taken and the row locked, or None (nothing written)."""
    meta = Product._meta
    now = meta.get_field("updated_at").get_db_prep_value(timezone.now(), connection)
    with connection.cursor() as cursor:
        cursor.execute(
            _TAKE_UNITS_SQL.format(columns=sql.columns(Product)),
            [quantity, now, meta.pk.get_db_prep_value(product_id, connection), quantity],
        )
        row = cursor.fetchone()
    return None if row is None else sql.load(Product, row)


def product_take_units(*, product_id: UUID, quantity: int) -> Product:
    """For orders: take `quantity` units of an active product that has them, in one
    statement (a conditional `UPDATE ... WHERE is_active AND available_units >= quantity
    RETURNING`: the row count is the check, and the row stays locked until the caller's
    transaction ends, like a `SELECT ... FOR UPDATE`).

    Call it inside the caller's transaction, so the order row and the stock change commit
    or roll back together. It opens no savepoint: it writes in one statement or not at
    all, so a refusal leaves the caller's transaction as it was. Returns the product with
    its new `available_units`. When nothing was taken, the product is read (unlocked) to
    say why: ProductNotFound, ProductUnavailable, ProductOutOfStock; if it changed in
    between so that it would now match, the take is tried again.
    """
    _check_quantity(quantity)
    for _ in range(_TAKE_ATTEMPTS):
        taken = _take_units(product_id=product_id, quantity=quantity)
        if taken is not None:
            invalidate_product_list_on_commit()
            return taken
        product = Product.objects.filter(pk=product_id).first()
        if product is None:
            raise ProductNotFound()
        if not product.is_active:
            raise ProductUnavailable()
        if product.available_units < quantity:
            break
    raise ProductOutOfStock(
        f"Not enough units in stock. Requested: {quantity}, available: {product.available_units}.",
        details={"available_units": product.available_units, "requested": quantity},
    )


@transaction.atomic
def product_return_units(*, product_id: UUID, quantity: int) -> Product:
    """For orders: put back units an order held (cancel, expiry, failure, refund).

    Works on inactive products too, and may take stock past MAX_UNITS.
    """
    _check_quantity(quantity)
    product = product_lock(product_id=product_id)
    now = timezone.now()
    Product.objects.filter(pk=product.pk).update(available_units=F("available_units") + quantity, updated_at=now)
    product.available_units += quantity
    product.updated_at = now
    invalidate_product_list_on_commit()
    return product
