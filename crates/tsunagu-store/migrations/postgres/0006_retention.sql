-- Retention and paging. The hourly purge finds old handled webhook events and old finished
-- mails by these indexes instead of scanning the tables; a channel's events are paged by id.
CREATE INDEX line_webhook_events_handled ON line_webhook_events (handled_at);
CREATE INDEX line_webhook_events_channel_id ON line_webhook_events (channel_id, id);
CREATE INDEX mails_created ON mails (created_at);
