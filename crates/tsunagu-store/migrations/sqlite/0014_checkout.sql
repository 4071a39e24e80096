-- Paying for an application through Stripe Checkout (issue 14): which methods an event offers
-- (card, konbini, bank_transfer; comma-separated) and for how many days a konbini voucher runs,
-- and one order per application paid through Stripe, with its checkout session and its state:
-- open (to be paid), konbini (a voucher waits to be paid at the store), paid, expired; and each
-- refund, asked for by the organizer's cancellation (queued until the job sends it, with the
-- row's id in its idempotency key) or made in Stripe's dashboard (learnt from its events).

ALTER TABLE events ADD COLUMN payment_methods TEXT NOT NULL DEFAULT 'bank_transfer';
ALTER TABLE events ADD COLUMN konbini_days BIGINT NOT NULL DEFAULT 3;

CREATE TABLE stripe_orders (
    application_id BIGINT PRIMARY KEY REFERENCES applications(id) ON DELETE CASCADE,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    amount_yen BIGINT NOT NULL,
    state TEXT NOT NULL,
    session_id TEXT UNIQUE,
    checkout_url TEXT,
    payment_intent TEXT,
    -- card or konbini, once known
    method TEXT,
    -- the voucher's deadline (UTC milliseconds)
    konbini_expires_at BIGINT,
    konbini_voucher_url TEXT,
    -- refunded so far, or on its way (pending, or a konbini refund waiting for bank details)
    refunded_yen BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX stripe_orders_account ON stripe_orders (account_id, application_id);

CREATE TABLE stripe_refunds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    application_id BIGINT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    amount_yen BIGINT NOT NULL,
    -- キャンセル料 kept by the organizer (0 for a refund made in Stripe's dashboard)
    fee_yen BIGINT NOT NULL DEFAULT 0,
    -- queued, pending, requires_action, succeeded, failed, canceled
    state TEXT NOT NULL,
    stripe_refund_id TEXT UNIQUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX stripe_refunds_application ON stripe_refunds (application_id, id);

-- 特定商取引法に基づく表記: the organizer's legal notice (the labelled fields as a JSON object),
-- shown publicly with their paid events, and their 適格請求書発行事業者登録番号 for receipts.
CREATE TABLE legal_notices (
    account_id BIGINT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    fields TEXT NOT NULL,
    invoice_number TEXT NOT NULL DEFAULT '',
    updated_at BIGINT NOT NULL
);
