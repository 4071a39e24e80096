//! Console pages every account shares: ホーム, and the places the manuals name that are not
//! built yet (honest 「準備中」 pages until their issues land; each moves to its feature then).

use askama::Template;
use axum::response::Html;
use tsunagu_core::Feature;
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

#[derive(Template)]
#[template(path = "pending.html")]
struct PendingPage {
    chrome: Chrome,
    breadcrumb: &'static str,
    heading: &'static str,
    planned: &'static [&'static str],
    plan_message: Option<&'static str>,
}

fn pending(
    auth: &Auth,
    nav: &'static str,
    breadcrumb: &'static str,
    heading: &'static str,
    planned: &'static [&'static str],
    feature: Option<Feature>,
) -> Result<Html<String>, AppError> {
    let plan_message = feature.filter(|f| !auth.account.plan.allows(*f)).map(|f| f.upgrade_message());
    let page = PendingPage { chrome: Chrome::console(auth, nav, heading), breadcrumb, heading, planned, plan_message };
    Ok(Html(page.render()?))
}

pub async fn courses(auth: Auth) -> Result<Html<String>, AppError> {
    pending(
        &auth,
        "courses",
        "オンライン講座（LINE）",
        "コース",
        &[
            "［LINEステップ配信設定］: Messaging API チャネルの登録",
            "［+メッセージ追加］: テキスト／画像／音声／動画のステップメッセージ（購読開始直後・時刻指定）",
            "［テスト配信先登録］と［テスト配信先選択］によるテスト配信",
        ],
        Some(Feature::LineLink),
    )
}

pub async fn line_link(auth: Auth) -> Result<Html<String>, AppError> {
    pending(
        &auth,
        "line",
        "設定",
        "公式LINE連携",
        &[
            "［新規公式 LINE 登録］: 連携するコースの選択と LINE ログインチャネルの登録",
            "受講生への公式LINEアカウントの友だち追加のご案内",
        ],
        Some(Feature::LineLink),
    )
}
