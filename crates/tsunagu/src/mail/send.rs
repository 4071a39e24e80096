//! The `mail.send` job. A mail already delivered is not delivered again (the job may run twice
//! after a crash); the Message-ID is fixed per cause so any resend after a crash between the
//! SMTP hand-off and our bookkeeping is recognisable as the same message.

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
            let message = Message::builder()
                .from(from.clone())
                .to(to)
                .subject(mail.subject.clone())
                .message_id(Some(mail.message_id.clone()))
                .header(ContentType::TEXT_PLAIN)
                .body(mail.body_text.clone())
                .map_err(|e| JobError::Permanent(format!("cannot build mail {id}: {e}")))?;
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
            let mut c = app.store.conn().await?;
            match result {
                Ok(_) => {
                    mails::mark_delivered(&mut c, id, "sent", "smtp", app.now()).await?;
                    tracing::info!(mail_id = id, "mail handed to the SMTP server");
                    Ok(Outcome::Done)
                }
                Err(e) => {
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
