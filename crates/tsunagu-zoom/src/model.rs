//! Typed requests and answers of the calls Tsunagu makes (fields as in the official schema,
//! `zoom-meetings-api.openapi.json`; users from the 2023-10 file). Ids of meetings and webinars
//! are 64-bit integers (they exceed 10 digits); registrant ids are strings. Only the fields
//! Tsunagu uses are read; unknown fields are ignored.

use serde::{Deserialize, Serialize};

/// A meeting or a webinar on Zoom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventRef {
    Meeting(i64),
    Webinar(i64),
}

impl EventRef {
    pub fn id(self) -> i64 {
        match self {
            EventRef::Meeting(id) | EventRef::Webinar(id) => id,
        }
    }

    pub(crate) fn path(self) -> String {
        match self {
            EventRef::Meeting(id) => format!("/meetings/{id}"),
            EventRef::Webinar(id) => format!("/webinars/{id}"),
        }
    }
}

/// `GET /users/{userId}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub id: String,
    pub email: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    /// 1 basic, 2 licensed, …
    #[serde(rename = "type", default)]
    pub kind: i64,
    #[serde(default)]
    pub account_id: String,
    #[serde(default)]
    pub timezone: String,
}

/// A meeting or webinar as Zoom answers create and get. Meetings call the encrypted passcode
/// `encrypted_password`, webinars `encrypted_passcode` (NOTES §3); both are read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ZoomEvent {
    pub id: i64,
    #[serde(default)]
    pub uuid: String,
    #[serde(default)]
    pub host_id: String,
    #[serde(default)]
    pub host_email: String,
    #[serde(default)]
    pub topic: String,
    #[serde(rename = "type", default)]
    pub kind: i64,
    /// UTC (`…Z`).
    #[serde(default)]
    pub start_time: String,
    #[serde(default)]
    pub timezone: String,
    #[serde(default)]
    pub duration: i64,
    #[serde(default)]
    pub join_url: String,
    #[serde(default)]
    pub start_url: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub registration_url: Option<String>,
    #[serde(default)]
    pub settings: EventSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventSettings {
    /// 0 automatic, 1 manual, 2 no registration.
    #[serde(default = "no_registration")]
    pub approval_type: i64,
    /// Emails separated by `;` or `,`.
    #[serde(default)]
    pub alternative_hosts: String,
}

fn no_registration() -> i64 {
    2
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings { approval_type: no_registration(), alternative_hosts: String::new() }
    }
}

impl ZoomEvent {
    pub fn registration_enabled(&self) -> bool {
        matches!(self.settings.approval_type, 0 | 1)
    }

    /// The host and alternative hosts: Zoom refuses them as registrants (3027).
    pub fn host_emails(&self) -> Vec<String> {
        let mut out = vec![self.host_email.to_lowercase()];
        out.extend(
            self.settings
                .alternative_hosts
                .split([';', ','])
                .map(|s| s.trim().to_lowercase())
                .filter(|s| !s.is_empty()),
        );
        out.retain(|s| !s.is_empty());
        out
    }
}

/// `POST …/registrants` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewRegistrant {
    pub first_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub last_name: String,
    pub email: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom_questions: Vec<CustomAnswer>,
    /// Meetings only: approve this person at once on a meeting with manual approval
    /// (`approval_type` 1). Webinar adds do not take it (NOTES §5.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_approve: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomAnswer {
    pub title: String,
    pub value: String,
}

/// `POST …/registrants` answer (201). `join_url` is absent when the registrant waits for
/// manual approval.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AddedRegistrant {
    pub id: i64,
    pub registrant_id: String,
    #[serde(default)]
    pub join_url: Option<String>,
    #[serde(default)]
    pub participant_pin_code: Option<i64>,
    #[serde(default)]
    pub start_time: String,
    #[serde(default)]
    pub topic: String,
}

/// Registrant status as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrantStatus {
    Approved,
    Pending,
    Denied,
}

impl RegistrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrantStatus::Approved => "approved",
            RegistrantStatus::Pending => "pending",
            RegistrantStatus::Denied => "denied",
        }
    }
}

/// An item of `GET …/registrants`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Registrant {
    pub id: String,
    pub email: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default = "approved")]
    pub status: RegistrantStatus,
    #[serde(default)]
    pub join_url: Option<String>,
    #[serde(default)]
    pub create_time: Option<String>,
}

fn approved() -> RegistrantStatus {
    RegistrantStatus::Approved
}

#[derive(Debug, Deserialize)]
pub(crate) struct RegistrantPage {
    #[serde(default)]
    pub registrants: Vec<Registrant>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// `PUT …/registrants/status` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusAction {
    Approve,
    Cancel,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrantRef {
    pub id: String,
    pub email: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct StatusBody<'a> {
    pub action: StatusAction,
    pub registrants: &'a [RegistrantRef],
}

/// `GET …/registrants/questions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Questions {
    #[serde(default)]
    pub questions: Vec<StandardQuestion>,
    #[serde(default)]
    pub custom_questions: Vec<CustomQuestion>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StandardQuestion {
    pub field_name: String,
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CustomQuestion {
    pub title: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub required: bool,
}

impl Questions {
    /// Required questions Tsunagu cannot answer (it sends a name and an email only): the
    /// manual says to remove them in Zoom, so the Zoom設定 screen warns about each.
    pub fn blocking(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .questions
            .iter()
            .filter(|q| q.required && !matches!(q.field_name.as_str(), "first_name" | "last_name" | "email"))
            .map(|q| q.field_name.clone())
            .collect();
        out.extend(self.custom_questions.iter().filter(|q| q.required).map(|q| q.title.clone()));
        out
    }
}

/// Options of `DELETE /meetings/{id}` and `/webinars/{id}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Ask Zoom to mail registrants that the event is cancelled (Zoom's default: no).
    pub notify_registrants: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_emails_include_alternative_hosts() {
        let e: ZoomEvent = serde_json::from_str(
            r#"{"id":85746065432,"host_email":"Owner@Example.com","settings":{"approval_type":0,"alternative_hosts":"a@example.com; B@example.com"}}"#,
        )
        .unwrap();
        assert_eq!(e.id, 85_746_065_432);
        assert!(e.registration_enabled());
        assert_eq!(e.host_emails(), vec!["owner@example.com", "a@example.com", "b@example.com"]);
        let off: ZoomEvent = serde_json::from_str(r#"{"id":1}"#).unwrap();
        assert!(!off.registration_enabled());
    }

    #[test]
    fn blocking_questions_are_the_required_ones_beyond_name_and_email() {
        let q: Questions = serde_json::from_str(
            r#"{"questions":[{"field_name":"last_name","required":true},{"field_name":"phone","required":true},{"field_name":"city","required":false}],
                "custom_questions":[{"title":"会社名","type":"short","required":true},{"title":"任意","type":"short","required":false}]}"#,
        )
        .unwrap();
        assert_eq!(q.blocking(), vec!["phone", "会社名"]);
    }
}
