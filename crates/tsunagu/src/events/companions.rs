//! 同伴者入力設定 (manual 000, 同伴者設定 ①–③): which fields the application form asks of each
//! companion, each ［任意入力］ or ［必須入力］ or not asked. お名前(漢字) is always ［必須入力］
//! (everyone is named), and メールアドレス too while 参加者登録利用 is on: Zoom registers each
//! companion by name with their own email, and they are mailed their own join URL.

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::response::{Html, Response};
use serde::{Deserialize, Serialize};
use tsunagu_store::events as store;

use crate::app::SharedApp;
use crate::web::chrome::Chrome;
use crate::web::context::flash_redirect;
use crate::web::error::AppError;
use crate::web::session::Auth;

/// How a field is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ask {
    Off,
    Optional,
    Required,
}

impl Ask {
    fn parse(s: &str) -> Option<Ask> {
        match s {
            "off" => Some(Ask::Off),
            "optional" => Some(Ask::Optional),
            "required" => Some(Ask::Required),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Ask::Off => "off",
            Ask::Optional => "optional",
            Ask::Required => "required",
        }
    }
}

/// The companion fields of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fields {
    pub name_kanji: Ask,
    pub name_kana: Ask,
    pub email: Ask,
    pub phone: Ask,
    pub company: Ask,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            name_kanji: Ask::Required,
            name_kana: Ask::Optional,
            email: Ask::Required,
            phone: Ask::Optional,
            company: Ask::Off,
        }
    }
}

impl Fields {
    pub fn parse(json: &str) -> Fields {
        if json.trim().is_empty() { Fields::default() } else { serde_json::from_str(json).unwrap_or_default() }
    }

    /// As the form applies them: with registration, name and email are required whatever was
    /// saved (Zoom takes each companion by name and email).
    pub fn effective(mut self, registration: bool) -> Fields {
        self.name_kanji = Ask::Required;
        if registration {
            self.email = Ask::Required;
        }
        self
    }
}

/// The fields in the order the screen and the form show them: (form name, label).
pub const LABELS: [(&str, &str); 5] = [
    ("name_kanji", "お名前(漢字)"),
    ("name_kana", "お名前(カナ)"),
    ("email", "メールアドレス"),
    ("phone", "電話番号"),
    ("company", "会社名"),
];

impl Fields {
    pub fn get(&self, name: &str) -> Ask {
        match name {
            "name_kanji" => self.name_kanji,
            "name_kana" => self.name_kana,
            "email" => self.email,
            "phone" => self.phone,
            _ => self.company,
        }
    }
}

struct Line {
    name: &'static str,
    label: &'static str,
    ask: &'static str,
    locked: bool,
}

#[derive(Template)]
#[template(path = "event_companions.html")]
struct Page {
    chrome: Chrome,
    id: i64,
    event_title: String,
    registration: bool,
    lines: Vec<Line>,
}

async fn load(app: &SharedApp, auth: &Auth, id: i64) -> Result<(store::Event, Fields, bool), AppError> {
    let mut c = app.store.read().await?;
    let event = store::get(&mut c, auth.account.id, id).await?.ok_or(AppError::NotFound)?;
    let json = store::companion_fields(&mut c, auth.account.id, id).await?.unwrap_or_default();
    let zoom = store::zoom_settings(&mut c, auth.account.id, id).await?;
    let registration = zoom.is_some_and(|z| z.enabled && super::zoom::Options::parse(&z.options).registration);
    Ok((event, Fields::parse(&json), registration))
}

/// ［同伴者入力設定］.
pub async fn show(State(app): State<SharedApp>, auth: Auth, Path(id): Path<i64>) -> Result<Html<String>, AppError> {
    let (event, fields, registration) = load(&app, &auth, id).await?;
    let shown = fields.effective(registration);
    let lines = LABELS
        .iter()
        .map(|(name, label)| Line {
            name,
            label,
            ask: shown.get(name).code(),
            locked: *name == "name_kanji" || (registration && *name == "email"),
        })
        .collect();
    let page = Page {
        chrome: Chrome::console(&auth, "events", "同伴者入力設定"),
        id,
        event_title: event.title,
        registration,
        lines,
    };
    Ok(Html(page.render()?))
}

/// ［保存する］.
pub async fn save(
    State(app): State<SharedApp>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let (_, mut fields, registration) = load(&app, &auth, id).await?;
    let get = |k: &str| form.iter().find(|(n, _)| n == k).and_then(|(_, v)| Ask::parse(v));
    for (name, _) in LABELS {
        let Some(ask) = get(name) else { continue };
        // Locked while registration is on: what was saved stays (the screen says why).
        if name == "name_kanji" || (registration && name == "email") {
            continue;
        }
        match name {
            "name_kana" => fields.name_kana = ask,
            "email" => fields.email = ask,
            "phone" => fields.phone = ask,
            _ => fields.company = ask,
        }
    }
    let json = serde_json::to_string(&fields).map_err(|e| AppError::Internal(e.into()))?;
    let mut c = app.store.conn().await?;
    if !store::set_companion_fields(&mut c, auth.account.id, id, &json, app.now()).await? {
        return Err(AppError::NotFound);
    }
    Ok(flash_redirect(&app, &format!("/events/{id}/companions"), "success", "同伴者入力設定を保存しました。"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_keeps_name_and_email_required() {
        let saved = Fields { name_kanji: Ask::Optional, email: Ask::Off, ..Fields::default() };
        let on = saved.effective(true);
        assert_eq!((on.name_kanji, on.email), (Ask::Required, Ask::Required));
        let off = saved.effective(false);
        assert_eq!((off.name_kanji, off.email), (Ask::Required, Ask::Off), "everyone is named");
        assert_eq!(Fields::parse(""), Fields::default());
        assert_eq!(Fields::parse(r#"{"company":"required"}"#).company, Ask::Required);
    }
}
