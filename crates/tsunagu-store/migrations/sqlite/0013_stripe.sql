-- Payments through each organizer's own Stripe account (issue 14): the connection made in
-- 基本設定 > 決済（Stripe）, whose key and webhook signing secret are sealed in
-- encrypted_secrets (purposes stripe.secret_key and stripe.webhook_secret), and every webhook
-- event received, stored once per (account, Stripe event id) before the 200.

CREATE TABLE stripe_connections (
    account_id BIGINT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    -- test or live, as the key says
    mode TEXT NOT NULL,
    -- the key's prefix and last four characters (sk_test_…abcd), to recognise it
    key_hint TEXT NOT NULL,
    -- 1 for a restricted key (rk_…)
    restricted BIGINT NOT NULL,
    stripe_account_id TEXT NOT NULL DEFAULT '',
    -- the webhook endpoint Tsunagu created at Stripe
    endpoint_id TEXT NOT NULL,
    endpoint_url TEXT NOT NULL,
    -- payment methods whose capability is active, comma-separated (card,konbini); empty when
    -- the key may not read the account
    methods TEXT NOT NULL DEFAULT '',
    updated_at BIGINT NOT NULL
);

CREATE TABLE stripe_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    -- evt_…
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    -- the id of the object the event carries (cs_…, ch_…, re_…)
    object_id TEXT NOT NULL,
    livemode BIGINT NOT NULL,
    -- Stripe's creation time (Unix seconds) and the raw body as signed
    created BIGINT NOT NULL,
    body TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    handled_at BIGINT,
    UNIQUE (account_id, event_id)
);
CREATE INDEX stripe_events_unhandled ON stripe_events (handled_at, id);
