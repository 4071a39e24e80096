//! Accounts: sign-up, log-in checks, password changes. Used by the console and the CLI.

pub mod admin;
pub mod password;
pub mod throttle;
pub mod web;

use tsunagu_core::{AccountId, Email, EmailError, Plan, Role};
use tsunagu_store::accounts::{self, Account, NewAccount};
use tsunagu_store::{StoreError, sessions};

use crate::app::App;
use crate::mail::{self, OutgoingMail, platform};

pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_CHARS: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Email(#[from] EmailError),
    #[error("お名前を入力してください。")]
    NameMissing,
    #[error("お名前は100文字以内で入力してください。")]
    NameTooLong,
    #[error("パスワードは{MIN_PASSWORD_CHARS}文字以上で入力してください。")]
    PasswordTooShort,
    #[error("パスワードは{MAX_PASSWORD_CHARS}文字以内で入力してください。")]
    PasswordTooLong,
    #[error("確認用のパスワードが一致しません。")]
    PasswordMismatch,
    #[error("このメールアドレスはすでに登録されています。ログインしてください。")]
    EmailTaken,
    #[error("現在のパスワードが正しくありません。")]
    WrongCurrentPassword,
    #[error("新しいパスワードが現在のパスワードと同じです。別のパスワードを入力してください。")]
    SamePassword,
    #[error("{0}")]
    Throttled(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl AccountError {
    /// True for mistakes the person can fix in the form (shown next to it, status 422).
    pub fn is_user_error(&self) -> bool {
        !matches!(self, AccountError::Store(_) | AccountError::Internal(_))
    }
}

pub struct SignupInput<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub password: &'a str,
    pub password_confirm: &'a str,
    pub plan: Plan,
    pub role: Role,
}

pub fn check_password(password: &str, confirm: &str) -> Result<(), AccountError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(AccountError::PasswordTooShort);
    }
    if n > MAX_PASSWORD_CHARS {
        return Err(AccountError::PasswordTooLong);
    }
    if password != confirm {
        return Err(AccountError::PasswordMismatch);
    }
    Ok(())
}

/// Create an account and, in the same transaction, its welcome mail.
pub async fn sign_up(app: &App, input: &SignupInput<'_>) -> Result<Account, AccountError> {
    let email = Email::parse(input.email)?;
    let name = input.name.trim();
    if name.is_empty() {
        return Err(AccountError::NameMissing);
    }
    if name.chars().count() > 100 {
        return Err(AccountError::NameTooLong);
    }
    check_password(input.password, input.password_confirm)?;
    let hash = password::hash(input.password.to_string()).await?;
    let mut tx = app.store.begin().await?;
    let account = accounts::create(
        &mut tx,
        &NewAccount {
            email: &email,
            display_name: name,
            password_hash: &hash,
            plan: input.plan,
            role: input.role,
            time_zone: &app.config.accounts.default_time_zone,
        },
        app.now(),
    )
    .await
    .map_err(|e| match e {
        StoreError::Conflict(_) => AccountError::EmailTaken,
        other => AccountError::Store(other),
    })?;
    let login_url = format!("{}/login", app.config.http.manager_url.trim_end_matches('/'));
    let ctx = serde_json::json!({"name": name, "email": email.as_str(), "login_url": login_url});
    mail_account(&mut tx, app, &account, &platform::WELCOME, &ctx, &format!("welcome:{}", account.id)).await?;
    tx.commit().await.map_err(StoreError::from)?;
    crate::jobs::wake(app);
    tracing::info!(account_id = %account.id, "account created");
    Ok(account)
}

/// Check a password; `None` when the email is unknown or the password wrong.
/// Unknown emails cost the same hashing work, so timing does not reveal who has an account.
pub async fn verify_login(app: &App, email: &Email, password: &str) -> Result<Option<Account>, AccountError> {
    let creds = {
        let mut c = app.store.conn().await?;
        accounts::credentials_by_email(&mut c, email).await?
    };
    match creds {
        Some(creds) => {
            let ok = password::verify(password.to_string(), creds.password_hash).await?;
            Ok(ok.then_some(creds.account))
        }
        None => {
            password::verify_dummy(password.to_string()).await?;
            Ok(None)
        }
    }
}

/// Change the password, end every other session, and tell the owner by mail — one transaction.
pub async fn change_password(
    app: &App,
    account: &Account,
    keep_session_hash: &str,
    current: &str,
    new: &str,
    confirm: &str,
) -> Result<(), AccountError> {
    // Guessing the current password from a stolen session is throttled like log-in.
    let email_key = throttle::email_key(&account.email);
    let gate = throttle::charge(&app.store, &[(email_key.clone(), throttle::EMAIL_LIMITS)], app.now()).await?;
    if let Some(msg) = gate.message() {
        return Err(AccountError::Throttled(msg));
    }
    let stored = {
        let mut c = app.store.conn().await?;
        accounts::password_hash(&mut c, account.id).await?.ok_or(AccountError::WrongCurrentPassword)?
    };
    if !password::verify(current.to_string(), stored).await? {
        return Err(AccountError::WrongCurrentPassword);
    }
    {
        let mut c = app.store.conn().await?;
        tsunagu_store::throttle::clear(&mut c, &email_key).await?;
    }
    check_password(new, confirm)?;
    if new == current {
        return Err(AccountError::SamePassword);
    }
    let hash = password::hash(new.to_string()).await?;
    let now = app.now();
    let mut tx = app.store.begin().await?;
    accounts::set_password_hash(&mut tx, account.id, &hash, now).await?;
    sessions::delete_others(&mut tx, account.id, keep_session_hash).await?;
    let changed_at = crate::clock::format_local(now, &account.time_zone);
    let ctx = serde_json::json!({"name": account.display_name, "changed_at": changed_at});
    let cause = format!("password-changed:{}:{now}", account.id);
    mail_account(&mut tx, app, account, &platform::PASSWORD_CHANGED, &ctx, &cause).await?;
    tx.commit().await.map_err(StoreError::from)?;
    crate::jobs::wake(app);
    tracing::info!(account_id = %account.id, "password changed");
    Ok(())
}

/// Render a platform mail for the account holder and enqueue it on the caller's transaction.
async fn mail_account(
    tx: &mut tsunagu_store::AnyConnection,
    app: &App,
    account: &Account,
    template: &platform::PlatformTemplate,
    ctx: &serde_json::Value,
    cause: &str,
) -> Result<(), AccountError> {
    let (subject, body) = template.render(ctx).map_err(|e| AccountError::Internal(e.to_string()))?;
    let mail = OutgoingMail {
        account_id: Some(account.id),
        cause,
        to: &account.email,
        subject: &subject,
        body: &body,
        calendar: None,
    };
    mail::enqueue(tx, app, &mail).await?;
    Ok(())
}

pub async fn set_plan(app: &App, id: AccountId, plan: Plan) -> Result<bool, AccountError> {
    let mut c = app.store.conn().await?;
    Ok(accounts::set_plan(&mut c, id, plan, app.now()).await?)
}

/// The accounts feature's pages: log-in, sign-up, password, and plans for administrators.
pub fn routes() -> axum::Router<crate::app::SharedApp> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/", get(web::root))
        .route("/login", get(web::login_form).post(web::login))
        .route("/signup", get(web::signup_form).post(web::signup))
        .route("/logout", post(web::logout))
        .route("/account/password", get(web::password_form).post(web::change_password))
        .merge(admin::routes())
}
