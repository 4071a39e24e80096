//! Mail through a real SMTP server (aiosmtpd on loopback, see scripts/smtp_sink.py).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::helpers::{TempDir, TestApp, eventually, free_port};

pub struct Sink {
    child: tokio::process::Child,
    dir: PathBuf,
    pub port: u16,
}

impl Sink {
    /// `None` locally without the test Python; under CI it must be there.
    pub async fn start(out: &Path, auth: Option<(&str, &str)>) -> Option<Sink> {
        let python = crate::helpers::test_python("the SMTP test")?;
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/smtp_sink.py");
        let mut cmd = tokio::process::Command::new(python);
        cmd.arg(script).arg(port.to_string()).arg(out).kill_on_drop(true).stdout(std::process::Stdio::piped());
        if let Some((u, p)) = auth {
            cmd.arg(u).arg(p);
        }
        let mut child = cmd.spawn().expect("start the SMTP sink");
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
        assert!(matches!(ready, Ok(Ok(Some(ref l))) if l == "ready"), "sink did not start: {ready:?}");
        Some(Sink { child, dir: out.to_path_buf(), port })
    }

    pub fn received(&self) -> Vec<serde_json::Value> {
        let mut files: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files.iter().map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()).collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn japanese_mail_arrives_once_over_smtp_with_auth() {
    let out = TempDir::new("tsunagu-smtp");
    let Some(sink) = Sink::start(out.path(), Some(("mailer", "s3cret-pass"))).await else { return };
    let url = format!("smtp://mailer:s3cret-pass@127.0.0.1:{}", sink.port);
    let t = TestApp::spawn_with(|c| {
        c.mail.smtp_url = tsunagu::config::Secret::new(url);
        c.mail.from = "つなぐ事務局 <office@tsunagu.example>".into();
    })
    .await;
    t.signup("yamada@example.com", "山田 太郎").await;
    assert_eq!(t.run_jobs().await, 1);
    eventually(10, "the mail arrives", || async { sink.received().len() == 1 }).await;
    let m = &sink.received()[0];
    assert_eq!(m["subject"], "【Tsunagu】アカウントを作成しました");
    let raw_subject = m["raw_subject"].as_str().unwrap();
    assert!(raw_subject.to_ascii_lowercase().contains("=?utf-8?"), "RFC 2047 encoded: {raw_subject}");
    assert!(raw_subject.is_ascii());
    let body = m["body"].as_str().unwrap();
    assert!(body.contains("山田 太郎 様") && body.contains("yamada@example.com"), "{body}");
    assert_eq!(m["rcpt_tos"][0], "yamada@example.com");
    assert!(m["from"].as_str().unwrap().contains("office@tsunagu.example"));
    assert_eq!(m["authenticated"], true);

    let mut c = t.app.store.read().await.unwrap();
    let stored = &tsunagu_store::mails::list_all(&mut c, 10).await.unwrap()[0];
    assert_eq!(stored.status, "sent");
    assert_eq!(m["message_id"].as_str().unwrap(), stored.message_id, "Message-ID fixed by the cause");

    // The same job running again (say, after a crash) does not send a second mail…
    let payload = serde_json::json!({"mail_id": stored.id});
    drop(c);
    let mut c = t.app.store.conn().await.unwrap();
    tsunagu::jobs::enqueue(&mut c, &t.app, "mail.send", &payload, None, 0).await.unwrap();
    drop(c);
    assert_eq!(t.run_jobs().await, 1);
    // …and the same cause cannot create a second mail.
    let mut c = t.app.store.conn().await.unwrap();
    let again = tsunagu::mail::enqueue(
        &mut c,
        &t.app,
        &tsunagu::mail::OutgoingMail {
            account_id: None,
            cause: &stored.idempotency_key,
            to: "yamada@example.com",
            subject: "x",
            body: "y",
            calendar: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(again, None);
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received().len(), 1, "exactly one mail arrived");
    t.assert_no_jobs_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_smtp_credentials_fail_visibly_not_silently() {
    let out = TempDir::new("tsunagu-smtp-auth");
    let Some(sink) = Sink::start(out.path(), Some(("mailer", "right"))).await else { return };
    let url = format!("smtp://mailer:wrong@127.0.0.1:{}", sink.port);
    let t = TestApp::spawn_with(|c| {
        c.mail.smtp_url = tsunagu::config::Secret::new(url);
        c.mail.timeout_seconds = 3;
    })
    .await;
    t.signup("who@example.com", "誰か").await;
    t.run_jobs().await;
    assert!(sink.received().is_empty());
    let mut c = t.app.store.read().await.unwrap();
    let m = &tsunagu_store::mails::list_all(&mut c, 1).await.unwrap()[0];
    assert_ne!(m.status, "sent");
    assert!(m.last_error.as_deref().unwrap_or("").contains("SMTP"), "{:?}", m.last_error);
    let counts = t.job_counts().await;
    assert!(!counts.is_empty(), "the job is kept (queued for retry or failed), not dropped: {counts:?}");
}

/// A server that accepts the connection and then never answers must not hang the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_smtp_server_times_out_and_is_retried() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock); // accept, say nothing
        }
    });
    let t = TestApp::spawn_with(|c| {
        c.mail.smtp_url = tsunagu::config::Secret::new(format!("smtp://127.0.0.1:{port}"));
        c.mail.timeout_seconds = 1;
    })
    .await;
    t.signup("silent@example.com", "無言").await;
    assert_eq!(t.run_jobs().await, 1, "the attempt ends instead of hanging");
    let mut c = t.app.store.read().await.unwrap();
    let m = &tsunagu_store::mails::list_all(&mut c, 1).await.unwrap()[0];
    assert_eq!(m.status, "queued", "kept for another attempt");
    assert!(m.last_error.as_deref().unwrap_or("").contains("SMTP"), "{:?}", m.last_error);
    assert_eq!(t.job_counts().await, vec![("queued".to_string(), 1)]);
    holder.abort();
}

/// The SMTP server accepts a mail and the database then refuses to record it: the record is
/// retried, never the send. Exactly one mail arrives, and it ends recorded as sent.
async fn an_accepted_mail_is_recorded_never_resent(db: crate::helpers::Db) {
    let out = TempDir::new("tsunagu-smtp-record");
    let Some(sink) = Sink::start(out.path(), None).await else { return };
    let url = format!("smtp://127.0.0.1:{}", sink.port);
    let Some(t) = TestApp::spawn_on(db, |c| c.mail.smtp_url = tsunagu::config::Secret::new(url)).await else {
        return;
    };
    crate::helpers::install_fault(&t.app.store, "record", "mails", "UPDATE", "NEW.status = 'sent'").await;
    crate::helpers::set_fault(&t.app.store, "record", true).await;
    t.signup("record@example.com", "記録").await;
    let worker = t.worker.clone();
    let drain = tokio::spawn(async move { worker.drain().await });
    eventually(20, "the SMTP server accepted the mail", || async { sink.received().len() == 1 }).await;
    // Recording is refused for a while (not waited for by a condition: an implementation that
    // gives up on the record and retries the job must get its chance to send again).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while t.app.metrics.counter("mail_record_retried") == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    crate::helpers::set_fault(&t.app.store, "record", false).await;
    drain.await.unwrap();
    // Whatever is left of the job runs now, and again after any lease.
    for _ in 0..3 {
        t.clock.advance(10 * 60 * 1000);
        t.run_jobs().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received().len(), 1, "sent exactly once");
    assert!(t.app.metrics.counter("mail_record_retried") >= 1, "the record was retried");
    let mut c = t.app.store.read().await.unwrap();
    let stored = &tsunagu_store::mails::list_all(&mut c, 10).await.unwrap()[0];
    assert_eq!(stored.status, "sent");
    drop(c);
    t.assert_no_jobs_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_mail_is_recorded_never_resent_sqlite() {
    an_accepted_mail_is_recorded_never_resent(crate::helpers::Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_mail_is_recorded_never_resent_postgres() {
    an_accepted_mail_is_recorded_never_resent(crate::helpers::Db::Postgres).await;
}
