-- Events (issue 12): an organizer's event with its ticket types, and the applications to it
-- with each person (the representative and their companions). Instants are UTC milliseconds.

CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    -- the unguessable part of the public URL
    public_key TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    -- 定員: people (representatives and companions) at most
    capacity BIGINT NOT NULL,
    -- people holding a seat: those of applications that are not cancelled
    seats_taken BIGINT NOT NULL DEFAULT 0,
    -- 申込受付期間
    apply_from BIGINT NOT NULL,
    apply_until BIGINT NOT NULL,
    -- companions allowed per application (0-9)
    companions_max BIGINT NOT NULL DEFAULT 0,
    -- draft, published or closed
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CHECK (seats_taken >= 0 AND seats_taken <= capacity)
);
CREATE INDEX events_account ON events (account_id, starts_at);

CREATE TABLE ticket_types (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id BIGINT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    name TEXT NOT NULL,
    price_yen BIGINT NOT NULL,
    -- people at most on this ticket; NULL: only 定員 limits it
    limit_count BIGINT,
    -- people holding this ticket in applications that are not cancelled
    taken BIGINT NOT NULL DEFAULT 0,
    CHECK (price_yen >= 0 AND taken >= 0)
);
CREATE INDEX ticket_types_event ON ticket_types (event_id, position);

CREATE TABLE applications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id BIGINT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    ticket_type_id BIGINT NOT NULL REFERENCES ticket_types(id),
    -- applied, awaiting_payment, completed or cancelled
    status TEXT NOT NULL,
    people BIGINT NOT NULL,
    amount_yen BIGINT NOT NULL,
    -- the participant's own link (cancel, receipt) carries this
    access_key TEXT NOT NULL UNIQUE,
    -- one application per submitted form, however often it is sent
    submit_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    completed_at BIGINT,
    cancelled_at BIGINT,
    UNIQUE (event_id, submit_key)
);
CREATE INDEX applications_event ON applications (event_id, id);

CREATE TABLE attendees (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    application_id BIGINT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    event_id BIGINT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    -- 0: the representative; 1..: companions in the order entered
    position BIGINT NOT NULL,
    name_kanji TEXT NOT NULL,
    name_kana TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    phone TEXT NOT NULL DEFAULT '',
    company TEXT NOT NULL DEFAULT '',
    -- the lower-cased email while it must stay unique in the event (a Zoom event with
    -- registration: Zoom takes an email once) and the person is not cancelled; else NULL
    email_key TEXT,
    cancelled_at BIGINT,
    created_at BIGINT NOT NULL,
    UNIQUE (event_id, email_key)
);
CREATE INDEX attendees_application ON attendees (application_id, position);
