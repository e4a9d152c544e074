"""The wallet purchase as one PostgreSQL function: one round trip instead of seven.

Dropped by migration 0008: the purchase runs in Python again (the history of why is in
docs/decisions/0002-wallet-purchase-in-python.md). What follows describes it as it was.

`orders.services.order_purchase_with_wallet` calls it on PostgreSQL (see its docstring);
on other databases (the embedded SQLite of `make run`) the same purchase runs through the
ORM, statement by statement (`_purchase_with_orm`). Both are held to the same results by
`orders/tests/test_wallet_purchase_engines.py`, which runs every purchase case through
both on PostgreSQL and compares the books they leave.

It does what the ORM path does, in the same order and under the same rules
(wallets/services.py, "lock, then check, then write"):

1. take the stock: the conditional `UPDATE` of `catalog.services._TAKE_UNITS_SQL`, which
   also locks the product row; nothing matched -> returns outcome `STOCK`, nothing written
   (the caller reads the product to say why, and may try again);
2. refuse the merchant's own product (`OWN_PRODUCT`);
3. lock both user wallets `FOR UPDATE` in primary-key order, creating a missing one first
   (a user made outside registration), as `wallets_lock_for_users` does;
4. check: either wallet locked -> `WALLET_LOCKED`; the buyer short -> `INSUFFICIENT_FUNDS`;
5. write, every row stamped with one `clock_timestamp()` taken after the locks: the
   journal entry, both balances in one `UPDATE` (`balance = balance + delta`, next
   `last_sequence`), both legs (buyer PAYMENT, merchant REVENUE, before/after from the
   locked rows), the COMPLETED order.

It returns one row: the outcome (`COMPLETED`, `STOCK`, or the refusal's code), the product
as taken (merchant, name, price, currency, units left), the buyer's balance as locked
(for `INSUFFICIENT_FUNDS`) and the time stamped on the rows. Steps 1-5 run in a block with
an exception handler, i.e. a subtransaction: a refusal (2, 4) is raised in it, which undoes
everything the block wrote (the units taken, a wallet created), and caught, so the
function still returns normally. Nothing but a real error (a bug, a lost connection, a
lock wait beyond the function's `lock_timeout` of 5 s) ever fails the statement, and no
business refusal shows up as an ERROR in PostgreSQL's log.

That is what lets the caller run the function as a statement of its own, committed by
PostgreSQL as it returns (autocommit): the product and wallet locks are held for the
function's run only, never while a Python thread waits for the GIL to send a COMMIT.
Inside a caller's transaction (an Idempotency-Key's) it runs in a savepoint. The
connection's `client_connection_check_interval` (paymentflow/settings/base.py) makes
PostgreSQL cancel the statement if the client is gone while it waits on a lock, so a
web worker killed mid-purchase does not leave a purchase nobody was told about.

To change it, add a migration with a new `CREATE OR REPLACE FUNCTION` and change the ORM
path alongside; the engines test fails until both agree, and
`test_wallet_purchase_database.py` fails when a table it inserts into gains a column.
"""

from django.db import migrations

CREATE_FUNCTION = """
CREATE OR REPLACE FUNCTION orders_wallet_purchase(
    p_order_id uuid,
    p_buyer_id uuid,
    p_product_id uuid,
    p_quantity integer,
    p_currency varchar  -- for a wallet created on first use
) RETURNS TABLE (
    r_outcome text,
    r_merchant_id uuid,
    r_product_name varchar,
    r_unit_price numeric,
    r_currency varchar,
    r_available_units integer,
    r_buyer_balance numeric,
    r_at timestamptz
) LANGUAGE plpgsql
  SET lock_timeout = '5s'
AS $$
DECLARE
    v_product catalog_product%ROWTYPE;
    v_wallet wallets_wallet%ROWTYPE;
    v_buyer wallets_wallet%ROWTYPE;
    v_merchant wallets_wallet%ROWTYPE;
    v_amount numeric;  -- unbounded: an amount beyond any balance is INSUFFICIENT_FUNDS, not an overflow
    v_journal_id uuid := gen_random_uuid();
    v_now timestamptz;
    v_outcome text := 'COMPLETED';
BEGIN
    IF p_quantity IS NULL OR p_quantity < 1 THEN
        RAISE EXCEPTION 'quantity must be a positive integer' USING ERRCODE = 'check_violation';
    END IF;

    -- A block with an exception handler is a subtransaction: a refusal raised in it undoes
    -- everything it wrote (the stock taken, a wallet created) and is returned, not raised.
    BEGIN
        -- 1. The stock, taken and the product row locked in one statement.
        UPDATE catalog_product
           SET available_units = available_units - p_quantity, updated_at = clock_timestamp()
         WHERE id = p_product_id AND is_active AND available_units >= p_quantity
        RETURNING * INTO v_product;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'STOCK'::text, NULL::uuid, NULL::varchar, NULL::numeric, NULL::varchar,
                                NULL::integer, NULL::numeric, NULL::timestamptz;
            RETURN;
        END IF;

        -- 2. Not one's own product.
        IF v_product.merchant_id = p_buyer_id THEN
            RAISE EXCEPTION 'OWN_PRODUCT' USING ERRCODE = 'PF001';
        END IF;
        v_amount := v_product.price * p_quantity;

        -- 3. Both wallets, locked in primary-key order (the ORDER BY runs before the locks).
        FOR attempt IN 1..2 LOOP
            FOR v_wallet IN
                SELECT * FROM wallets_wallet
                 WHERE user_id IN (p_buyer_id, v_product.merchant_id) AND kind = 'USER'
                 ORDER BY id
                   FOR UPDATE
            LOOP
                IF v_wallet.user_id = p_buyer_id THEN
                    v_buyer := v_wallet;
                ELSE
                    v_merchant := v_wallet;
                END IF;
            END LOOP;
            EXIT WHEN v_buyer.id IS NOT NULL AND v_merchant.id IS NOT NULL;
            INSERT INTO wallets_wallet
                   (id, kind, code, balance, currency, is_locked, last_sequence, created_at, updated_at, user_id)
            SELECT gen_random_uuid(), 'USER', NULL, 0, p_currency, false, 0, clock_timestamp(), clock_timestamp(),
                   owner
              FROM unnest(ARRAY[p_buyer_id, v_product.merchant_id]) AS owner
            ON CONFLICT (user_id) DO NOTHING;
        END LOOP;

        -- 4. Checks, on the rows just locked.
        IF v_buyer.is_locked OR v_merchant.is_locked THEN
            RAISE EXCEPTION 'WALLET_LOCKED' USING ERRCODE = 'PF001';
        END IF;
        IF v_buyer.balance < v_amount THEN
            RAISE EXCEPTION 'INSUFFICIENT_FUNDS' USING ERRCODE = 'PF001';
        END IF;

        -- 5. The writes: journal entry, balances, legs, order. Stamped after the locks, so a
        --    wallet's legs are in time order as they are in sequence order.
        v_now := clock_timestamp();
        INSERT INTO wallets_journalentry
               (id, reference_type, reference_id, description, created_at, created_by_id)
        VALUES (v_journal_id, 'order', p_order_id::text,
                left(format('Order %s: %s x %s', p_order_id, p_quantity, v_product.name), 255), v_now, NULL);

        UPDATE wallets_wallet
           SET balance = balance + CASE id WHEN v_buyer.id THEN -v_amount ELSE v_amount END,
               last_sequence = last_sequence + 1,
               updated_at = v_now
         WHERE id IN (v_buyer.id, v_merchant.id);

        INSERT INTO wallets_ledgerentry
               (id, type, amount, delta, balance_before, balance_after, sequence, currency, created_at,
                journal_id, wallet_id)
        VALUES (gen_random_uuid(), 'PAYMENT', v_amount, -v_amount, v_buyer.balance,
                v_buyer.balance - v_amount, v_buyer.last_sequence + 1, v_buyer.currency, v_now,
                v_journal_id, v_buyer.id),
               (gen_random_uuid(), 'REVENUE', v_amount, v_amount, v_merchant.balance,
                v_merchant.balance + v_amount, v_merchant.last_sequence + 1, v_merchant.currency, v_now,
                v_journal_id, v_merchant.id);

        INSERT INTO orders_order
               (id, quantity, unit_price, amount, currency, status, payment_method, stripe_session_id,
                stripe_payment_intent_id, checkout_url, checkout_expires_at, stripe_refund_id,
                refund_requested_at, failure_reason, refund_reason, completed_at, cancelled_at, refunded_at,
                created_at, updated_at, merchant_id, product_id, user_id, refund_required)
        VALUES (p_order_id, p_quantity, v_product.price, v_amount, v_product.currency, 'COMPLETED', 'WALLET', NULL,
                NULL, NULL, NULL, NULL,
                NULL, NULL, NULL, v_now, NULL, NULL,
                v_now, v_now, v_product.merchant_id, v_product.id, p_buyer_id, false);
    EXCEPTION WHEN SQLSTATE 'PF001' THEN
        v_outcome := SQLERRM;  -- the refusal's code; the variables keep what was read
    END;

    RETURN QUERY SELECT v_outcome, v_product.merchant_id, v_product.name, v_product.price, v_product.currency,
                        v_product.available_units, v_buyer.balance, v_now;
END;
$$;
"""


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(CREATE_FUNCTION, params=None)  # the body has literal % signs


def drop_function(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "DROP FUNCTION IF EXISTS orders_wallet_purchase(uuid, uuid, uuid, integer, varchar);"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0002_order_refund_required"),
        ("catalog", "0001_initial"),
        ("wallets", "0004_topup"),
    ]

    operations = [migrations.RunPython(create_function, drop_function, elidable=False)]
