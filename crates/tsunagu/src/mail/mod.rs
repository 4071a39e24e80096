//! Mail: templates (minijinja), an outbox in the database, and a job that delivers each mail
//! by SMTP when `mail.smtp_url` is set, or keeps it in the database (送信済みメール) when not.

pub mod platform;
pub mod send;
pub mod template;
pub mod web;

use lettre::{AsyncSmtpTransport, Tokio1Executor};
use tsunagu_core::AccountId;
use tsunagu_store::{AnyConnection, StoreError, mails};

use crate::app::App;
use crate::config::MailConfig;
use crate::jobs;

/// How mails leave.
pub enum Mailer {
    /// Kept in the database and shown in the console.
    Database,
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: lettre::message::Mailbox,
    },
}

impl Mailer {
    pub fn from_config(cfg: &MailConfig) -> anyhow::Result<Mailer> {
        if cfg.smtp_url.is_empty() {
            return Ok(Mailer::Database);
        }
        let from =
            cfg.from.parse().map_err(|e| anyhow::anyhow!("mail.from {:?} is not a mail address: {e}", cfg.from))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(cfg.smtp_url.expose())
            .map_err(|e| anyhow::anyhow!("mail.smtp_url is not a valid SMTP URL: {e}"))?
            .timeout(Some(std::time::Duration::from_secs(cfg.timeout_seconds.max(1))))
            .build();
        Ok(Mailer::Smtp { transport, from })
    }

    /// For logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Mailer::Database => "database",
            Mailer::Smtp { .. } => "smtp",
        }
    }

    /// For people (送信済みメール).
    pub fn describe(&self) -> &'static str {
        match self {
            Mailer::Database => "メール送信の設定がないため、送信せずにここへ保存しています。",
            Mailer::Smtp { .. } => "メールサーバーから送信しています。",
        }
    }
}

pub struct OutgoingMail<'a> {
    pub account_id: Option<AccountId>,
    /// Names the cause; one cause, one mail. E.g. `password-changed:12:1795433460000`.
    pub cause: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    /// An iCalendar entry to attach (`None`: none).
    pub calendar: Option<&'a str>,
}

/// Store the mail and enqueue its delivery on the caller's connection or transaction.
/// Returns `None` when a mail for this cause exists already.
pub async fn enqueue(c: &mut AnyConnection, app: &App, m: &OutgoingMail<'_>) -> Result<Option<i64>, StoreError> {
    let domain = app.config.mail.from.rsplit('@').next().unwrap_or("tsunagu.invalid").trim_end_matches('>');
    let message_id = format!("<{}@{}>", &crate::crypto::sha256_hex(m.cause)[..32], domain);
    let new = mails::NewMail {
        account_id: m.account_id,
        idempotency_key: m.cause,
        message_id: &message_id,
        to_address: m.to,
        subject: m.subject,
        body_text: m.body,
        calendar: m.calendar.unwrap_or(""),
    };
    let Some(id) = mails::insert(c, &new, app.now()).await? else {
        return Ok(None);
    };
    let payload = serde_json::json!({ "mail_id": id });
    jobs::enqueue(c, app, jobs::kinds::MAIL_SEND, &payload, Some(&format!("mail:{id}")), 0).await?;
    Ok(Some(id))
}

/// The mail feature's job kinds.
pub fn job_kinds() -> Vec<jobs::JobKind> {
    // A send is bounded by `mail.timeout_seconds` (twice, see `send`); the deadline is a
    // backstop for anything else that hangs.
    vec![jobs::JobKind::new(
        jobs::kinds::MAIL_SEND,
        std::time::Duration::from_secs(600),
        |app, _worker, job| async move { send::run(&app, &job).await },
    )]
}

/// 送信済みメール.
pub fn routes() -> axum::Router<crate::app::SharedApp> {
    web::routes()
}
