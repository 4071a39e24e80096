//! 基本設定 > 決済（Stripe）: the organizer pastes a secret key or a restricted key. Tsunagu checks
//! it at Stripe (what it may do, which payment methods the account can take), creates its
//! webhook endpoint there with the pinned API version and the events of NOTES §3, and seals the
//! key and the endpoint's signing secret. Neither is ever rendered back or logged.

use askama::Template;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use tsunagu_core::AccountId;
use tsunagu_store::stripe::{self as store, StripeConnection};
use tsunagu_store::{StoreError, secrets};
use tsunagu_stripe::ApiKey;
use tsunagu_stripe::client::Caller;

use super::{STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET};
use crate::app::SharedApp;
use crate::crypto::secret_aad;
use crate::web::chrome::Chrome;
use crate::web::context::flash_redirect;
use crate::web::error::AppError;
use crate::web::session::Auth;

#[derive(Template)]
#[template(path = "payments_settings.html")]
struct PaymentsPage {
    chrome: Chrome,
    error: Option<String>,
    /// What a restricted key lacks, as the key's settings name it.
    missing: Vec<String>,
    connection: Option<ConnectionView>,
    webhook_url: String,
}

struct ConnectionView {
    mode: String,
    live: bool,
    key_hint: String,
    restricted: bool,
    stripe_account_id: String,
    endpoint_url: String,
    methods: Vec<String>,
}

fn method_label(m: &str) -> String {
    match m {
        "card" => "カード".into(),
        "konbini" => "コンビニ".into(),
        other => other.to_string(),
    }
}

fn view(c: StripeConnection) -> ConnectionView {
    let live = c.mode == "live";
    ConnectionView {
        mode: if live { "本番モード".into() } else { "テストモード".into() },
        live,
        key_hint: c.key_hint,
        restricted: c.restricted,
        stripe_account_id: c.stripe_account_id,
        endpoint_url: c.endpoint_url,
        methods: c.methods.iter().map(|m| method_label(m)).collect(),
    }
}

async fn page(
    app: &SharedApp,
    auth: &Auth,
    error: Option<String>,
    missing: Vec<String>,
) -> Result<PaymentsPage, AppError> {
    let connection = {
        let mut c = app.store.read().await?;
        store::get_connection(&mut c, auth.account.id).await?
    };
    Ok(PaymentsPage {
        chrome: Chrome::console(auth, "payments", "決済（Stripe）"),
        error,
        missing,
        connection: connection.map(view),
        webhook_url: super::webhook_url(&app.config, auth.account.id),
    })
}

pub async fn show(State(app): State<SharedApp>, auth: Auth) -> Result<Html<String>, AppError> {
    Ok(Html(page(&app, &auth, None, Vec::new()).await?.render()?))
}

#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    secret_key: String,
}

async fn refuse(app: &SharedApp, auth: &Auth, msg: String, missing: Vec<String>) -> Result<Response, AppError> {
    let page = page(app, auth, Some(msg), missing).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response())
}

/// Why a key was not connected: what to do, and what a restricted key lacks.
pub struct Refusal {
    pub message: String,
    pub missing: Vec<String>,
}

/// Check `key` at Stripe, create Tsunagu's webhook endpoint there, and seal the key and the
/// endpoint's signing secret for `account`. Endpoints of the account for the same URL made
/// before are deleted afterwards.
pub async fn connect(app: &SharedApp, account: AccountId, key: ApiKey) -> Result<Result<(), Refusal>, AppError> {
    let refused = |message: String| Ok(Err(Refusal { message, missing: Vec::new() }));
    let caller = Caller { key: key.clone(), owner: super::owner(account) };
    let check = match app.stripe.check_key(&caller).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(account_id = %account, error = e.code(), "stripe key refused");
            return refused(e.message_ja());
        }
    };
    if !check.missing.is_empty() {
        return Ok(Err(Refusal {
            message: "この制限付きキーには、次の権限がありません。Stripeダッシュボードの［開発者］→［APIキー］でこのキーの［編集］を開き、権限を追加して保存してから、もう一度貼り付けてください。".into(),
            missing: check.missing.iter().map(|p| p.label_ja().to_string()).collect(),
        }));
    }
    // The new endpoint first, then the old ones for the same URL go: no event is sent to no
    // endpoint meanwhile (one sent to both is stored once).
    let url = super::webhook_url(&app.config, account);
    let now = app.now();
    let idem = format!("tsunagu-endpoint-{}-{now}", account.0);
    let created = match app.stripe.create_webhook_endpoint(&caller, &url, &idem).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(account_id = %account, error = e.code(), "stripe webhook endpoint not created");
            return refused(format!("Webhook の作成に失敗しました。{}", e.message_ja()));
        }
    };
    let Some(signing) = created.secret.clone() else {
        return refused("Stripe が Webhook の署名シークレットを返しませんでした。もう一度お試しください。".into());
    };
    let methods: Vec<String> = match &check.account {
        Some(a) => ["card", "konbini"].into_iter().filter(|m| a.can_take(m)).map(str::to_string).collect(),
        None => Vec::new(),
    };
    let connection = StripeConnection {
        mode: key.mode().as_str().into(),
        key_hint: key.masked(),
        restricted: key.restricted(),
        stripe_account_id: check.account.as_ref().map(|a| a.id.clone()).unwrap_or_default(),
        endpoint_id: created.id.clone(),
        endpoint_url: created.url.clone(),
        methods,
        updated_at: now,
    };
    {
        let mut tx = app.store.begin().await?;
        let (key_id, sealed) = app.keys.seal(key.expose(), &secret_aad(account, STRIPE_SECRET_KEY));
        secrets::put(&mut tx, account, STRIPE_SECRET_KEY, &key_id, &sealed, now).await?;
        let (key_id, sealed) = app.keys.seal(&signing, &secret_aad(account, STRIPE_WEBHOOK_SECRET));
        secrets::put(&mut tx, account, STRIPE_WEBHOOK_SECRET, &key_id, &sealed, now).await?;
        store::put_connection(&mut tx, account, &connection).await?;
        tx.commit().await.map_err(StoreError::from)?;
    }
    // Endpoints this account had for the same URL cannot sign for the secret just sealed.
    if let Ok(old) = app.stripe.webhook_endpoints(&caller).await {
        for e in old.into_iter().filter(|e| e.url == url && e.id != created.id) {
            if let Err(err) = app.stripe.delete_webhook_endpoint(&caller, &e.id).await {
                tracing::warn!(account_id = %account, error = err.code(), "old stripe webhook endpoint not deleted");
            }
        }
    }
    tracing::info!(account_id = %account, mode = key.mode().as_str(), restricted = key.restricted(), "stripe connected");
    Ok(Ok(()))
}

pub async fn save(State(app): State<SharedApp>, auth: Auth, Form(form): Form<KeyForm>) -> Result<Response, AppError> {
    const AGAIN: &str = "（安全のため、入力したキーはもう一度貼り付けてください。）";
    let key = match ApiKey::parse(&form.secret_key) {
        Ok(k) => k,
        Err(e) => return refuse(&app, &auth, e.0, Vec::new()).await,
    };
    let mode = key.mode();
    match connect(&app, auth.account.id, key).await? {
        Ok(()) => Ok(flash_redirect(
            &app,
            "/settings/payments",
            "success",
            &format!(
                "Stripe と接続しました（{}）。Webhook を作成し、キーと署名シークレットを暗号化して保存しました。",
                mode.label_ja()
            ),
        )),
        Err(r) => refuse(&app, &auth, format!("{}{AGAIN}", r.message), r.missing).await,
    }
}
