//! The organizer's Zoom設定 screen (manual 000) mapped to Zoom's request bodies (NOTES §2–3).
//! Combinations Zoom treats specially are resolved here, each with a note the screen shows:
//! a waiting room disables join-before-host; who sends the join URL only matters with
//! registration; multiple devices only apply with registration. `start_time` is sent in UTC
//! (`…Z`) together with the event's time zone, so Zoom cannot read local time as UTC.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde::Serialize;

/// Zoom's limit on `topic`.
pub const MAX_TOPIC_CHARS: usize = 200;

/// Zoom情報通知設定: who mails the join URL to registrants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlSender {
    /// Tsunagu sends it (the manual's recommended choice).
    Tsunagu,
    /// Zoom's own confirmation mail.
    Zoom,
}

/// 録画: 録画しない / ローカル / クラウド.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recording {
    None,
    Local,
    Cloud,
}

impl Recording {
    pub fn as_zoom(self) -> &'static str {
        match self {
            Recording::None => "none",
            Recording::Local => "local",
            Recording::Cloud => "cloud",
        }
    }
}

/// 開催日時 (wall-clock time in the event's zone) and 所要時間.
#[derive(Debug, Clone)]
pub struct Schedule<'a> {
    pub topic: &'a str,
    pub start: DateTime,
    pub time_zone: &'a str,
    pub duration_minutes: u32,
}

/// The meeting options of the Zoom設定 screen.
#[derive(Debug, Clone, Copy)]
pub struct MeetingOptions {
    pub waiting_room: bool,
    pub join_before_host: bool,
    pub registration: bool,
    pub url_sender: UrlSender,
    pub participant_video: bool,
    pub participant_mic: bool,
}

/// The webinar options of the Zoom設定 screen.
#[derive(Debug, Clone, Copy)]
pub struct WebinarOptions {
    pub registration: bool,
    pub url_sender: UrlSender,
    pub multiple_devices: bool,
    pub panelist_video: bool,
    pub q_and_a: bool,
    pub on_demand: bool,
    pub practice_session: bool,
    pub recording: Recording,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("イベント名を入力してください。Zoom のミーティング名になります。")]
    TopicEmpty,
    #[error("所要時間は1分から1440分（24時間）の間で入力してください。")]
    Duration,
    #[error("タイムゾーン「{0}」が分かりません。")]
    TimeZone(String),
    #[error("開催日時を Zoom に送れる形に変換できません。日時を確認してください。")]
    StartTime,
}

/// `POST /users/{userId}/meetings` body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeetingCreate {
    pub topic: String,
    #[serde(rename = "type")]
    pub kind: u8,
    pub start_time: String,
    pub timezone: String,
    pub duration: u32,
    /// No passcode unless the organizer's Zoom account forces one (the manual asks them not to).
    pub default_password: bool,
    pub settings: MeetingSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeetingSettings {
    pub waiting_room: bool,
    pub join_before_host: bool,
    /// 1 = manual approval (registration on: Tsunagu's adds pass `auto_approve`, so a
    /// stranger who finds Zoom's registration page waits for the host; NOTES §5.1),
    /// 2 = no registration.
    pub approval_type: u8,
    pub registrants_email_notification: bool,
    pub registrants_confirmation_email: bool,
    pub participant_video: bool,
    pub mute_upon_entry: bool,
    pub meeting_authentication: bool,
}

/// `POST /users/{userId}/webinars` body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebinarCreate {
    pub topic: String,
    #[serde(rename = "type")]
    pub kind: u8,
    pub start_time: String,
    pub timezone: String,
    pub duration: u32,
    pub default_passcode: bool,
    pub settings: WebinarSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebinarSettings {
    /// 1 = manual approval (registration on): webinar adds take no `auto_approve`, so Tsunagu
    /// approves each person it registers with a status call, and anyone else who finds Zoom's
    /// registration page waits for the host. 2 = no registration.
    pub approval_type: u8,
    pub registrants_email_notification: bool,
    pub allow_multiple_devices: bool,
    pub panelists_video: bool,
    pub question_and_answer: QuestionAndAnswer,
    pub on_demand: bool,
    pub practice_session: bool,
    pub auto_recording: &'static str,
    pub meeting_authentication: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuestionAndAnswer {
    pub enable: bool,
}

/// `PATCH /webinars/{webinarId}` sent right after create: the 2025 schema accepts
/// `registrants_confirmation_email` only on update (NOTES §3).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebinarConfirmationPatch {
    pub settings: WebinarConfirmationSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebinarConfirmationSettings {
    pub registrants_confirmation_email: bool,
}

/// Something the mapping changed or ignored, said to the organizer when saving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Note(pub &'static str);

pub const NOTE_WAITING_ROOM_JBH: Note =
    Note("待機室を利用する場合、Zoom ではホストの前の参加ができません。ホストの前の参加はオフにして保存しました。");
pub const NOTE_SENDER_NEEDS_REGISTRATION: Note = Note(
    "参加者登録利用がオフのため、Zoom情報通知設定は使われません。参加URLは Tsunagu の自動配信メールでお送りします。",
);
pub const NOTE_DEVICES_NEED_REGISTRATION: Note =
    Note("複数のデバイスからの参加許可は、参加者登録利用がオンの場合のみ有効です。オフのため使われません。");
pub const NOTE_TOPIC_TRUNCATED: Note =
    Note("イベント名が Zoom の上限（200文字）を超えるため、200文字までを Zoom に送ります。");

impl MeetingCreate {
    /// The `PATCH /meetings/{id}` body that brings an existing meeting to these settings
    /// (`default_password` is a create-only field).
    pub fn as_update(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("a meeting body serializes");
        if let Some(o) = v.as_object_mut() {
            o.remove("default_password");
        }
        v
    }
}

impl WebinarCreate {
    /// The `PATCH /webinars/{id}` body that brings an existing webinar to these settings,
    /// who sends the confirmation mail included (`default_passcode` is create-only).
    pub fn as_update(&self, confirmation: &WebinarConfirmationPatch) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("a webinar body serializes");
        if let Some(o) = v.as_object_mut() {
            o.remove("default_passcode");
            if let Some(s) = o.get_mut("settings").and_then(|s| s.as_object_mut()) {
                s.insert(
                    "registrants_confirmation_email".into(),
                    confirmation.settings.registrants_confirmation_email.into(),
                );
            }
        }
        v
    }
}

struct Common {
    topic: String,
    start_time: String,
    timezone: String,
    duration: u32,
}

fn common(s: &Schedule<'_>, notes: &mut Vec<Note>) -> Result<Common, SettingsError> {
    let topic = s.topic.trim();
    if topic.is_empty() {
        return Err(SettingsError::TopicEmpty);
    }
    let topic: String = if topic.chars().count() > MAX_TOPIC_CHARS {
        notes.push(NOTE_TOPIC_TRUNCATED);
        topic.chars().take(MAX_TOPIC_CHARS).collect()
    } else {
        topic.to_string()
    };
    if !(1..=1440).contains(&s.duration_minutes) {
        return Err(SettingsError::Duration);
    }
    let tz = TimeZone::get(s.time_zone).map_err(|_| SettingsError::TimeZone(s.time_zone.to_string()))?;
    let zoned = s.start.to_zoned(tz).map_err(|_| SettingsError::StartTime)?;
    let start_time = zoned.with_time_zone(TimeZone::UTC).strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    Ok(Common { topic, start_time, timezone: s.time_zone.to_string(), duration: s.duration_minutes })
}

/// (registrants_email_notification, registrants_confirmation_email)
fn mail_flags(registration: bool, sender: UrlSender, notes: &mut Vec<Note>) -> (bool, bool) {
    match (registration, sender) {
        (true, UrlSender::Zoom) => (true, true),
        // Tsunagu mails the personal URL; Zoom must not send its own (nor cancellation mails).
        (true, UrlSender::Tsunagu) => (false, false),
        (false, UrlSender::Zoom) => {
            notes.push(NOTE_SENDER_NEEDS_REGISTRATION);
            (false, false)
        }
        (false, UrlSender::Tsunagu) => (false, false),
    }
}

/// A scheduled meeting (type 2).
pub fn meeting(s: &Schedule<'_>, o: &MeetingOptions) -> Result<(MeetingCreate, Vec<Note>), SettingsError> {
    let mut notes = Vec::new();
    let c = common(s, &mut notes)?;
    let join_before_host = if o.waiting_room && o.join_before_host {
        notes.push(NOTE_WAITING_ROOM_JBH);
        false
    } else {
        o.join_before_host
    };
    let (notify, confirm) = mail_flags(o.registration, o.url_sender, &mut notes);
    let body = MeetingCreate {
        topic: c.topic,
        kind: 2,
        start_time: c.start_time,
        timezone: c.timezone,
        duration: c.duration,
        default_password: false,
        settings: MeetingSettings {
            waiting_room: o.waiting_room,
            join_before_host,
            approval_type: if o.registration { 1 } else { 2 },
            registrants_email_notification: notify,
            registrants_confirmation_email: confirm,
            participant_video: o.participant_video,
            mute_upon_entry: !o.participant_mic,
            meeting_authentication: false,
        },
    };
    Ok((body, notes))
}

/// A webinar (type 5) and the update that sets who sends the confirmation mail.
pub fn webinar(
    s: &Schedule<'_>,
    o: &WebinarOptions,
) -> Result<(WebinarCreate, WebinarConfirmationPatch, Vec<Note>), SettingsError> {
    let mut notes = Vec::new();
    let c = common(s, &mut notes)?;
    let multiple_devices = if o.multiple_devices && !o.registration {
        notes.push(NOTE_DEVICES_NEED_REGISTRATION);
        false
    } else {
        o.multiple_devices
    };
    let (notify, confirm) = mail_flags(o.registration, o.url_sender, &mut notes);
    let body = WebinarCreate {
        topic: c.topic,
        kind: 5,
        start_time: c.start_time,
        timezone: c.timezone,
        duration: c.duration,
        default_passcode: false,
        settings: WebinarSettings {
            approval_type: if o.registration { 1 } else { 2 },
            registrants_email_notification: notify,
            allow_multiple_devices: multiple_devices,
            panelists_video: o.panelist_video,
            question_and_answer: QuestionAndAnswer { enable: o.q_and_a },
            on_demand: o.on_demand,
            practice_session: o.practice_session,
            auto_recording: o.recording.as_zoom(),
            meeting_authentication: false,
        },
    };
    let patch =
        WebinarConfirmationPatch { settings: WebinarConfirmationSettings { registrants_confirmation_email: confirm } };
    Ok((body, patch, notes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schedule(topic: &str) -> Schedule<'_> {
        Schedule {
            topic,
            start: jiff::civil::date(2026, 12, 5).at(19, 30, 0, 0),
            time_zone: "Asia/Tokyo",
            duration_minutes: 90,
        }
    }

    const MEETING: MeetingOptions = MeetingOptions {
        waiting_room: false,
        join_before_host: false,
        registration: true,
        url_sender: UrlSender::Tsunagu,
        participant_video: true,
        participant_mic: false,
    };

    #[test]
    fn meeting_is_sent_in_utc_with_its_time_zone() {
        let (m, notes) = meeting(&schedule("年末セミナー"), &MEETING).unwrap();
        assert!(notes.is_empty());
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["start_time"], "2026-12-05T10:30:00Z", "19:30 in Tokyo is 10:30 UTC");
        assert_eq!(v["timezone"], "Asia/Tokyo");
        assert_eq!(v["type"], 2);
        assert_eq!(v["duration"], 90);
        assert_eq!(v["default_password"], false);
        assert_eq!(
            v["settings"],
            json!({
                "waiting_room": false,
                "join_before_host": false,
                "approval_type": 1,
                "registrants_email_notification": false,
                "registrants_confirmation_email": false,
                "participant_video": true,
                "mute_upon_entry": true,
                "meeting_authentication": false
            })
        );
    }

    #[test]
    fn waiting_room_wins_over_join_before_host() {
        let o = MeetingOptions { waiting_room: true, join_before_host: true, ..MEETING };
        let (m, notes) = meeting(&schedule("x"), &o).unwrap();
        assert!(m.settings.waiting_room && !m.settings.join_before_host);
        assert_eq!(notes, vec![NOTE_WAITING_ROOM_JBH]);
        let o = MeetingOptions { waiting_room: false, join_before_host: true, ..MEETING };
        assert!(meeting(&schedule("x"), &o).unwrap().0.settings.join_before_host);
    }

    #[test]
    fn who_sends_the_url_and_registration() {
        let zoom = MeetingOptions { url_sender: UrlSender::Zoom, ..MEETING };
        let s = meeting(&schedule("x"), &zoom).unwrap().0.settings;
        assert_eq!(
            (s.approval_type, s.registrants_email_notification, s.registrants_confirmation_email),
            (1, true, true)
        );
        let off = MeetingOptions { registration: false, url_sender: UrlSender::Zoom, ..MEETING };
        let (m, notes) = meeting(&schedule("x"), &off).unwrap();
        assert_eq!((m.settings.approval_type, m.settings.registrants_confirmation_email), (2, false));
        assert_eq!(notes, vec![NOTE_SENDER_NEEDS_REGISTRATION]);
    }

    #[test]
    fn webinar_maps_every_option() {
        let o = WebinarOptions {
            registration: true,
            url_sender: UrlSender::Zoom,
            multiple_devices: true,
            panelist_video: true,
            q_and_a: true,
            on_demand: false,
            practice_session: true,
            recording: Recording::Cloud,
        };
        let (w, patch, notes) = webinar(&schedule("ウェビナー"), &o).unwrap();
        assert!(notes.is_empty());
        let v = serde_json::to_value(&w).unwrap();
        assert_eq!((v["type"].as_u64(), v["default_passcode"].as_bool()), (Some(5), Some(false)));
        assert_eq!(
            v["settings"],
            json!({
                "approval_type": 1,
                "registrants_email_notification": true,
                "allow_multiple_devices": true,
                "panelists_video": true,
                "question_and_answer": {"enable": true},
                "on_demand": false,
                "practice_session": true,
                "auto_recording": "cloud",
                "meeting_authentication": false
            })
        );
        assert!(v["settings"].get("registrants_confirmation_email").is_none(), "not accepted on create");
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!({"settings": {"registrants_confirmation_email": true}})
        );
        let off =
            WebinarOptions { registration: false, url_sender: UrlSender::Tsunagu, recording: Recording::None, ..o };
        let (w, patch, notes) = webinar(&schedule("x"), &off).unwrap();
        assert_eq!(
            (w.settings.approval_type, w.settings.allow_multiple_devices, w.settings.auto_recording),
            (2, false, "none")
        );
        assert!(!patch.settings.registrants_confirmation_email);
        assert_eq!(notes, vec![NOTE_DEVICES_NEED_REGISTRATION]);
    }

    #[test]
    fn bad_input_is_explained() {
        assert_eq!(meeting(&schedule("  "), &MEETING).unwrap_err(), SettingsError::TopicEmpty);
        let mut s = schedule("x");
        s.duration_minutes = 0;
        assert_eq!(meeting(&s, &MEETING).unwrap_err(), SettingsError::Duration);
        s.duration_minutes = 1441;
        assert_eq!(meeting(&s, &MEETING).unwrap_err(), SettingsError::Duration);
        s.duration_minutes = 60;
        s.time_zone = "Mars/Olympus";
        assert!(matches!(meeting(&s, &MEETING).unwrap_err(), SettingsError::TimeZone(_)));
        let long = "講".repeat(250);
        let (m, notes) = meeting(&schedule(&long), &MEETING).unwrap();
        assert_eq!(m.topic.chars().count(), MAX_TOPIC_CHARS);
        assert_eq!(notes, vec![NOTE_TOPIC_TRUNCATED]);
    }
}
