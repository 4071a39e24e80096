//! Console pages every account shares: ホーム.

use askama::Template;
use axum::response::Html;
use tsunagu_store::accounts::Account;

use super::chrome::Chrome;
use super::error::AppError;
use super::session::Auth;

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    chrome: Chrome,
    account: Account,
}

pub async fn home(auth: Auth) -> Result<Html<String>, AppError> {
    let page = HomePage { chrome: Chrome::console(&auth, "home", "ホーム"), account: auth.account.clone() };
    Ok(Html(page.render()?))
}
