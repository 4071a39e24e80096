-- Each person's Zoom registration and join mail (issue 12), and what the sync job learns of
-- the hosts Zoom refuses as registrants.

-- none (Zoom not used or not yet completed), waiting (queued), adding (a POST to Zoom may
-- have been sent: look the email up before any repeat), registered, failed
ALTER TABLE attendees ADD COLUMN zoom_state TEXT NOT NULL DEFAULT 'none';
ALTER TABLE attendees ADD COLUMN zoom_registrant_id TEXT NOT NULL DEFAULT '';
-- the person's own join URL (or the event's shared one without registration)
ALTER TABLE attendees ADD COLUMN join_url TEXT NOT NULL DEFAULT '';
-- Japanese, for the organizer, when failed or waiting for a Zoom limit
ALTER TABLE attendees ADD COLUMN zoom_reason TEXT NOT NULL DEFAULT '';
-- when the person's join mail was queued
ALTER TABLE attendees ADD COLUMN mailed_at BIGINT;

-- the host's and alternative hosts' emails, lower-cased and separated by spaces: Zoom refuses
-- them as registrants (3027), so the application form refuses them first
ALTER TABLE event_zoom ADD COLUMN host_emails TEXT NOT NULL DEFAULT '';
-- one events.zoom run at a time per event: held until this instant by the run
ALTER TABLE event_zoom ADD COLUMN sync_lease_until BIGINT;
-- a create was sent and its answer may have been lost: a later create may duplicate it
ALTER TABLE event_zoom ADD COLUMN create_attempted BIGINT NOT NULL DEFAULT 0;

-- how a priced application is paid: '' (free), bank_transfer
ALTER TABLE applications ADD COLUMN payment_method TEXT NOT NULL DEFAULT '';

-- until when a participant may cancel from their own page; NULL: until 申込受付 ends
ALTER TABLE events ADD COLUMN cancel_until BIGINT;

-- how to pay a priced ticket until card payments exist (銀行振込の振込先), shown to applicants
ALTER TABLE events ADD COLUMN payment_note TEXT NOT NULL DEFAULT '';

-- 自動配信メール: an organizer's own subject and body for each event mail, with
-- ［配信ステータス］ and ［管理者向けメール］; a kind without a row uses Tsunagu's default
CREATE TABLE mail_templates (
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    admin_copy BIGINT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, kind)
);

-- 同伴者入力設定: which fields companions are asked for, as JSON ('' = the defaults)
ALTER TABLE events ADD COLUMN companion_fields TEXT NOT NULL DEFAULT '';

-- an iCalendar entry sent with the mail as an attachment ('' = none)
ALTER TABLE mails ADD COLUMN calendar TEXT NOT NULL DEFAULT '';
