-- Upstream limits shared by every process on this database (issue 11 §5). A rate budget is a
-- schedule of slots (the next free one, in microseconds on the database's clock) that processes
-- reserve in chunks; a daily allowance counts uses per key and day, so that a restart keeps
-- them. Old days are purged by day.
CREATE TABLE rate_budgets (
    budget_key TEXT PRIMARY KEY,
    next_slot_us BIGINT NOT NULL
);
CREATE TABLE daily_allowances (
    allowance_key TEXT NOT NULL,
    day BIGINT NOT NULL,
    used BIGINT NOT NULL,
    PRIMARY KEY (allowance_key, day)
);
CREATE INDEX daily_allowances_day ON daily_allowances (day);
