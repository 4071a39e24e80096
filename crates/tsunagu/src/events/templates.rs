//! 自動配信メール (manual 000, 自動配信メールの編集 ①–⑧): the event mails listed with ［編集］,
//! and each one's editor: ［配信ステータス］, ［管理者向けメール］, 件名 and 本文, the variables
//! listed beside it, a preview with sample values, ［テスト送信］ to the organizer, and
//! ［既定の文面に戻す］. Saving checks the template (`mail::template::validate`) and says the line
//! and the reason.

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use tsunagu_store::StoreError;
use tsunagu_store::mail_templates::{self, SavedTemplate};

use super::mails::{self, JoinContext, Kind};
use crate::app::SharedApp;
use crate::web::chrome::Chrome;
use crate::web::context::flash_redirect;
use crate::web::error::AppError;
use crate::web::session::Auth;

const NAV: &str = "mail-templates";

struct Row {
    code: &'static str,
    name: &'static str,
    when: &'static str,
    enabled: bool,
    admin_copy: bool,
    customized: bool,
}

#[derive(Template)]
#[template(path = "mail_templates.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<Row>,
}

/// 自動配信メール: every event mail with its settings and ［編集］.
pub async fn list(State(app): State<SharedApp>, auth: Auth) -> Result<Html<String>, AppError> {
    let mut rows = Vec::new();
    let mut c = app.store.read().await?;
    for k in mails::KINDS {
        let t = mails::effective(&mut c, auth.account.id, k).await?;
        rows.push(Row {
            code: k.code,
            name: k.name,
            when: k.when,
            enabled: t.enabled,
            admin_copy: t.admin_copy,
            customized: t.customized,
        });
    }
    Ok(Html(ListPage { chrome: Chrome::console(&auth, NAV, "自動配信メール"), rows }.render()?))
}

#[derive(Debug, Clone)]
struct Draft {
    enabled: bool,
    admin_copy: bool,
    subject: String,
    body: String,
}

#[derive(Template)]
#[template(path = "mail_template_edit.html")]
struct EditPage {
    chrome: Chrome,
    kind: Kind,
    draft: Draft,
    variables: &'static [(&'static str, &'static str)],
    error: Option<String>,
    preview: Option<(String, String)>,
    organizer_email: String,
}

fn kind_of(code: &str) -> Result<Kind, AppError> {
    mails::kind(code).ok_or(AppError::NotFound)
}

fn page(auth: &Auth, kind: Kind, draft: Draft, error: Option<String>, preview: Option<(String, String)>) -> EditPage {
    EditPage {
        chrome: Chrome::console(auth, NAV, kind.name),
        kind,
        draft,
        variables: &mails::VARIABLES,
        error,
        preview,
        organizer_email: auth.account.email.clone(),
    }
}

/// ［編集］.
pub async fn edit(
    State(app): State<SharedApp>,
    auth: Auth,
    Path(code): Path<String>,
) -> Result<Html<String>, AppError> {
    let kind = kind_of(&code)?;
    let t = {
        let mut c = app.store.read().await?;
        mails::effective(&mut c, auth.account.id, kind).await?
    };
    let draft = Draft { enabled: t.enabled, admin_copy: t.admin_copy, subject: t.subject, body: t.body };
    Ok(Html(page(&auth, kind, draft, None, None).render()?))
}

/// ［保存する］, ［プレビュー］ or ［テスト送信］ (the button pressed is `action`).
pub async fn submit(
    State(app): State<SharedApp>,
    auth: Auth,
    Path(code): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let kind = kind_of(&code)?;
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let draft = Draft {
        enabled: get("status") != "off",
        admin_copy: get("admin_copy") == "on",
        subject: get("subject").trim().to_string(),
        body: get("body").replace("\r\n", "\n"),
    };
    if get("action") == "reset" {
        let mut c = app.store.conn().await?;
        mail_templates::reset(&mut c, auth.account.id, kind.code).await?;
        tracing::info!(account_id = %auth.account.id, kind = kind.code, "mail template reset to the default");
        return Ok(flash_redirect(
            &app,
            &format!("/mail-templates/{}", kind.code),
            "success",
            "既定の文面に戻しました。",
        ));
    }
    let sample = JoinContext::sample();
    if let Err(e) = crate::mail::template::validate(&draft.subject, &draft.body, &sample) {
        let msg = format!("{}の {} 行目: {}", e.field, e.line, e.reason);
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page(&auth, kind, draft, Some(msg), None).render()?))
            .into_response());
    }
    let rendered = crate::mail::template::render(&draft.subject, &draft.body, &sample)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("validated template failed: {e:?}")))?;
    match get("action").as_str() {
        "preview" => Ok(Html(page(&auth, kind, draft, None, Some(rendered)).render()?).into_response()),
        "test" => {
            let now = app.now();
            let mut tx = app.store.begin().await?;
            crate::mail::enqueue(
                &mut tx,
                &app,
                &crate::mail::OutgoingMail {
                    account_id: Some(auth.account.id),
                    cause: &format!("template-test:{}:{}:{now}", auth.account.id, kind.code),
                    to: &auth.account.email,
                    subject: &format!("【テスト送信】{}", rendered.0),
                    body: &rendered.1,
                    calendar: None,
                },
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            crate::jobs::wake(&app);
            let note = format!(
                "テスト送信しました（{} 宛、差し込み項目は見本の値です）。文面はまだ保存されていません。",
                auth.account.email
            );
            let mut p = page(&auth, kind, draft, None, Some(rendered));
            p.chrome.flash = Some(crate::web::context::Flash { kind: "success".into(), message: note });
            Ok(Html(p.render()?).into_response())
        }
        _ => {
            let saved = SavedTemplate {
                kind: kind.code.into(),
                enabled: draft.enabled,
                admin_copy: draft.admin_copy,
                subject: draft.subject,
                body: draft.body,
                updated_at: app.now(),
            };
            let mut c = app.store.conn().await?;
            mail_templates::put(&mut c, auth.account.id, &saved, app.now()).await?;
            tracing::info!(account_id = %auth.account.id, kind = kind.code, "mail template saved");
            Ok(flash_redirect(
                &app,
                "/mail-templates",
                "success",
                &format!("編集完了: 「{}」を保存しました。", kind.name),
            ))
        }
    }
}
