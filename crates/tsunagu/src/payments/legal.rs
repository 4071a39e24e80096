//! 特定商取引法に基づく表記: the organizer fills in the labelled fields once
//! (`/settings/legal`); every event of theirs shows them publicly at `/e/{key}/legal`, linked
//! from the event page, the application form and the payment step. Stripe requires the page
//! for konbini, and so does Japanese law for selling online. The organizer's
//! 適格請求書発行事業者登録番号 (T and 13 digits), when given, is printed on receipts.

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use tsunagu_core::AccountId;
use tsunagu_store::StoreError;
use tsunagu_store::stripe as store;

use crate::app::SharedApp;
use crate::web::chrome::Chrome;
use crate::web::context::{RequestContext, flash_redirect};
use crate::web::error::AppError;
use crate::web::session::Auth;

/// The fields, in the order the page lists them: (form name, label, example).
pub const FIELDS: [(&str, &str, &str); 10] = [
    ("seller", "販売事業者名", "株式会社つなぐ"),
    ("manager", "運営統括責任者", "山田 太郎"),
    ("address", "所在地", "東京都千代田区丸の内1-1-1"),
    ("phone", "電話番号", "03-1234-5678（平日 10:00〜17:00）"),
    ("email", "メールアドレス", "info@example.com"),
    ("price", "販売価格", "各イベントのページに記載しています（消費税込み）。"),
    ("payment", "支払方法", "クレジットカード、コンビニ払い、銀行振込"),
    ("timing", "支払時期", "カード: お申し込み時。コンビニ: お申し込みから 3 日以内。"),
    (
        "delivery",
        "提供時期",
        "イベントの開催日時に Zoom で提供します。参加URLはお支払いの確認後にメールでお送りします。",
    ),
    (
        "cancellation",
        "キャンセル・返金について",
        "開催日の前日までのキャンセルは全額返金します。当日のキャンセルは返金できません。",
    ),
];

/// The notice as stored: each field's value by name, and the invoice number.
#[derive(Debug, Clone, Default)]
pub struct Notice {
    pub values: Vec<(String, String)>,
    pub invoice_number: String,
}

impl Notice {
    pub fn get(&self, name: &str) -> &str {
        self.values.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }

    /// Every field filled in.
    pub fn complete(&self) -> bool {
        FIELDS.iter().all(|(name, ..)| !self.get(name).trim().is_empty())
    }
}

pub async fn load(app: &SharedApp, account: AccountId) -> Result<Option<Notice>, StoreError> {
    let mut c = app.store.read().await?;
    load_on(&mut c, account).await
}

pub async fn load_on(c: &mut tsunagu_store::AnyConnection, account: AccountId) -> Result<Option<Notice>, StoreError> {
    let Some((fields, invoice_number)) = store::legal_notice(c, account).await? else { return Ok(None) };
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&fields).unwrap_or_default();
    let values = FIELDS
        .iter()
        .map(|(name, ..)| (name.to_string(), map.get(*name).and_then(|v| v.as_str()).unwrap_or("").to_string()))
        .collect();
    Ok(Some(Notice { values, invoice_number }))
}

/// `T` and 13 digits; the `T` is added when only the digits are typed (full-width digits and spaces or hyphens typed in between are accepted).
pub fn invoice_number(s: &str) -> Result<String, String> {
    let cleaned: String = s
        .trim()
        .chars()
        .filter_map(|c| match c {
            '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32),
            'Ｔ' | 'ｔ' | 't' => Some('T'),
            ' ' | '　' | '-' | '－' => None,
            c => Some(c),
        })
        .collect();
    if cleaned.is_empty() {
        return Ok(String::new());
    }
    // The 13 digits typed without their "T".
    let cleaned = if cleaned.len() == 13 && cleaned.bytes().all(|b| b.is_ascii_digit()) {
        format!("T{cleaned}")
    } else {
        cleaned
    };
    let ok = cleaned.len() == 14 && cleaned.starts_with('T') && cleaned[1..].bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(cleaned)
    } else {
        Err("適格請求書発行事業者登録番号は「T」と 13 桁の数字です（例: T1234567890123）。お持ちでない場合は空欄にしてください。".into())
    }
}

struct FieldView {
    name: &'static str,
    label: &'static str,
    example: &'static str,
    value: String,
    long: bool,
}

#[derive(Template)]
#[template(path = "legal_settings.html")]
struct SettingsPage {
    chrome: Chrome,
    fields: Vec<FieldView>,
    invoice_number: String,
    problems: Vec<String>,
}

fn views(values: &[(String, String)]) -> Vec<FieldView> {
    FIELDS
        .iter()
        .map(|(name, label, example)| FieldView {
            name,
            label,
            example,
            value: values.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default(),
            long: matches!(*name, "price" | "payment" | "timing" | "delivery" | "cancellation"),
        })
        .collect()
}

pub async fn show(State(app): State<SharedApp>, auth: Auth) -> Result<Html<String>, AppError> {
    let n = load(&app, auth.account.id).await?.unwrap_or_default();
    let page = SettingsPage {
        chrome: Chrome::console(&auth, "legal", "特定商取引法に基づく表記"),
        fields: views(&n.values),
        invoice_number: n.invoice_number,
        problems: Vec::new(),
    };
    Ok(Html(page.render()?))
}

pub async fn save(
    State(app): State<SharedApp>,
    auth: Auth,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let get =
        |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim().replace("\r\n", "\n")).unwrap_or_default();
    let values: Vec<(String, String)> = FIELDS.iter().map(|(name, ..)| (name.to_string(), get(name))).collect();
    let mut problems = Vec::new();
    for ((_, label, _), (_, v)) in FIELDS.iter().zip(&values) {
        if v.chars().count() > 2000 {
            problems.push(format!("{label}は 2000 文字以内で入力してください。"));
        }
    }
    let email = get("email");
    if !email.is_empty() && tsunagu_core::Email::parse(&email).is_err() {
        problems.push("メールアドレスの形式が正しくありません（例: info@example.com）。".into());
    }
    let empty: Vec<&str> =
        FIELDS.iter().zip(&values).filter(|(_, (_, v))| v.is_empty()).map(|((_, label, _), _)| *label).collect();
    let complete = empty.is_empty();
    if !complete && sells_now(&app, auth.account.id).await? {
        // The page is linked from events that sell now: emptying it would leave them selling
        // without the notice the law requires.
        problems.push(format!(
            "有料チケットのあるイベントを公開しているため、すべての項目が必要です。空欄の項目（{}）を入力してください（項目を空にするには、先にそのイベントを下書きにしてください）。",
            empty.join("・")
        ));
    }
    let invoice = match invoice_number(&get("invoice_number")) {
        Ok(n) => n,
        Err(e) => {
            problems.push(e);
            get("invoice_number")
        }
    };
    if !problems.is_empty() {
        let page = SettingsPage {
            chrome: Chrome::console(&auth, "legal", "特定商取引法に基づく表記"),
            fields: views(&values),
            invoice_number: invoice,
            problems,
        };
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response());
    }
    let json: serde_json::Map<String, serde_json::Value> =
        values.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    let mut tx = app.store.begin().await?;
    store::put_legal_notice(
        &mut tx,
        auth.account.id,
        &serde_json::Value::Object(json).to_string(),
        &invoice,
        app.now(),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    let msg = if complete {
        "保存しました。有料チケットのイベントのページに表示します。".to_string()
    } else {
        format!(
            "保存しました。空欄の項目（{}）があるため、有料チケットのあるイベントはまだ公開できません。",
            empty.join("・")
        )
    };
    Ok(flash_redirect(&app, "/settings/legal", "success", &msg))
}

/// Whether the organizer has an event with a priced ticket that is not a draft.
async fn sells_now(app: &SharedApp, account: tsunagu_core::AccountId) -> Result<bool, AppError> {
    let mut c = app.store.read().await?;
    Ok(tsunagu_store::events::sells_priced(&mut c, account).await?)
}

#[derive(Template)]
#[template(path = "legal_public.html")]
struct PublicPage {
    chrome: Chrome,
    event_title: String,
    event_key: String,
    rows: Vec<(&'static str, String)>,
}

/// `GET /e/{key}/legal`: the event's organizer's notice.
pub async fn public(
    State(app): State<SharedApp>,
    ctx: RequestContext,
    Path(key): Path<String>,
) -> Result<Html<String>, AppError> {
    let (event, notice) = {
        let mut c = app.store.read().await?;
        let e = tsunagu_store::events::public(&mut c, &key).await?.ok_or(AppError::NotFound)?;
        let n = load_on(&mut c, e.account_id).await?;
        (e, n)
    };
    let notice = notice.filter(Notice::complete).ok_or(AppError::NotFound)?;
    let page = PublicPage {
        chrome: Chrome::public(&ctx, "特定商取引法に基づく表記"),
        event_title: event.title.clone(),
        event_key: event.public_key.clone(),
        rows: FIELDS.iter().map(|(name, label, _)| (*label, notice.get(name).to_string())).collect(),
    };
    Ok(Html(page.render()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoice_numbers_are_t_and_13_digits() {
        assert_eq!(invoice_number("T1234567890123").unwrap(), "T1234567890123");
        assert_eq!(invoice_number(" ｔ１２３４-５６７８-９０１２３ ").unwrap(), "T1234567890123");
        assert_eq!(invoice_number("").unwrap(), "");
        assert_eq!(invoice_number("1234567890123").unwrap(), "T1234567890123", "the T added");
        for bad in ["T123456789012", "T12345678901234", "X1234567890123", "T12345678901a3"] {
            assert!(invoice_number(bad).is_err(), "{bad}");
        }
    }
}
