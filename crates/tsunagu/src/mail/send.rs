//! The `mail.send` job. A mail already delivered is not delivered again (the job may run twice
//! after a crash). Once the SMTP server has accepted a mail, recording that is retried, never
//! the send: within this process the accepted mail is remembered until it is recorded, so
//! another attempt of the job only records it. Only a process that dies between the
//! acceptance and the record leaves a mail that another worker sends again; the Message-ID is
//! fixed per cause, so that resend is recognisable as the same message.

use lettre::AsyncTransport;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use tsunagu_store::jobs::ClaimedJob;
use tsunagu_store::mails;

use super::Mailer;
use crate::app::App;
use crate::jobs::{JobError, Outcome};

pub async fn run(app: &App, job: &ClaimedJob) -> Result<Outcome, JobError> {
    let id = job
        .payload
        .get("mail_id")
        .and_then(|v| v.as_i64())
        .ok_or_else(|| JobError::Permanent("mail.send without mail_id".into()))?;
    let mut c = app.store.conn().await?;
    let Some(mail) = mails::get_for_delivery(&mut c, id).await? else {
        return Err(JobError::Permanent(format!("mail {id} does not exist")));
    };
    if matches!(mail.status.as_str(), "sent" | "stored") {
        return Ok(Outcome::Done);
    }
    if app.features.get::<Accepted>().contains(id) {
        drop(c);
        return record_sent(app, id).await;
    }
    match &app.mailer {
        Mailer::Database => {
            mails::mark_delivered(&mut c, id, "stored", "database", app.now()).await?;
            tracing::info!(mail_id = id, "mail kept in the database (no SMTP configured)");
            Ok(Outcome::Done)
        }
        Mailer::Smtp { transport, from } => {
            let to: Mailbox = match mail.to_address.parse() {
                Ok(m) => m,
                Err(e) => {
                    let msg = format!("宛先のメールアドレスが正しくありません: {e}");
                    mails::mark_error(&mut c, id, &msg, true).await?;
                    return Err(JobError::Permanent(msg));
                }
            };
            let builder = Message::builder()
                .from(from.clone())
                .to(to)
                .subject(mail.subject.clone())
                .message_id(Some(mail.message_id.clone()));
            let built = if mail.calendar.is_empty() {
                builder.header(ContentType::TEXT_PLAIN).body(mail.body_text.clone())
            } else {
                // The text, and the calendar entry as an attachment (a calendar app offers to add it).
                let calendar = ContentType::parse("text/calendar; charset=utf-8; method=PUBLISH")
                    .map_err(|e| JobError::Permanent(format!("calendar content type: {e}")))?;
                builder.multipart(
                    lettre::message::MultiPart::mixed()
                        .singlepart(lettre::message::SinglePart::plain(mail.body_text.clone()))
                        .singlepart(
                            lettre::message::Attachment::new("event.ics".to_string())
                                .body(mail.calendar.clone(), calendar),
                        ),
                )
            };
            let message = built.map_err(|e| JobError::Permanent(format!("cannot build mail {id}: {e}")))?;
            drop(c);
            // lettre bounds connecting but not every read: a server that stops answering
            // must not hold a worker (whose lease the heartbeat keeps alive) for ever.
            let limit = std::time::Duration::from_secs(app.config.mail.timeout_seconds.max(1) * 2);
            let result = match tokio::time::timeout(limit, transport.send(message)).await {
                Ok(r) => r,
                Err(_) => {
                    let msg = format!("SMTP: no answer within {} s", limit.as_secs());
                    let mut c = app.store.conn().await?;
                    mails::mark_error(&mut c, id, &msg, job.attempts >= job.max_attempts).await?;
                    return Err(JobError::Retry(msg));
                }
            };
            match result {
                Ok(_) => {
                    tracing::info!(mail_id = id, "mail handed to the SMTP server");
                    app.features.get::<Accepted>().insert(id);
                    record_sent(app, id).await
                }
                Err(e) => {
                    let mut c = app.store.conn().await?;
                    let permanent = e.is_permanent();
                    let last = permanent || job.attempts >= job.max_attempts;
                    let msg = format!("SMTP: {e}");
                    mails::mark_error(&mut c, id, &msg, last).await?;
                    if permanent { Err(JobError::Permanent(msg)) } else { Err(JobError::Retry(msg)) }
                }
            }
        }
    }
}

/// Record that the SMTP server accepted mail `id`, retrying while the database refuses. If it
/// still fails, the job is retried, and that attempt only records (see [`Accepted`]).
async fn record_sent(app: &App, id: i64) -> Result<Outcome, JobError> {
    let mut pause = std::time::Duration::from_millis(50);
    let mut tries = 0;
    loop {
        let result = async {
            let mut c = app.store.conn().await?;
            mails::mark_delivered(&mut c, id, "sent", "smtp", app.now()).await
        }
        .await;
        match result {
            Ok(()) => {
                app.features.get::<Accepted>().remove(id);
                return Ok(Outcome::Done);
            }
            Err(e) if tries < 12 => {
                tries += 1;
                app.metrics.count("mail_record_retried");
                tracing::warn!(mail_id = id, error = %e, "could not record a mail the SMTP server accepted; retrying the record, not the send");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
            }
            Err(e) => return Err(JobError::Retry(format!("mail {id} was sent but could not be recorded: {e}"))),
        }
    }
}

/// Mails the SMTP server accepted whose record is not written yet (this process only).
#[derive(Default)]
pub struct Accepted(std::sync::Mutex<std::collections::HashSet<i64>>);

impl Accepted {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<i64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn contains(&self, id: i64) -> bool {
        self.lock().contains(&id)
    }

    fn insert(&self, id: i64) {
        self.lock().insert(id);
    }

    fn remove(&self, id: i64) {
        self.lock().remove(&id);
    }
}
