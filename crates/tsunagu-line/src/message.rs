//! Message objects (NOTES §3) and their checks before sending. The official schema leaves the
//! limits out (NOTES §6), so they are enforced here: text ≤ 5,000 UTF-16 code units; media URLs
//! HTTPS, percent-encoded, ≤ 2,000 characters; video needs a preview image; audio needs its
//! duration in milliseconds; 1–5 objects per request.

use serde::{Deserialize, Serialize};

pub const MAX_TEXT_UTF16: usize = 5000;
pub const MAX_URL_CHARS: usize = 2000;
pub const MAX_MESSAGES_PER_REQUEST: usize = 5;
pub const MAX_TRACKING_ID: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", rename_all_fields = "camelCase")]
pub enum Message {
    Text {
        text: String,
    },
    Image {
        original_content_url: String,
        preview_image_url: String,
    },
    Video {
        original_content_url: String,
        preview_image_url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tracking_id: Option<String>,
    },
    Audio {
        original_content_url: String,
        /// Length in milliseconds.
        duration: i64,
    },
}

/// Why a message cannot be sent, with the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageError {
    /// Stable identifier, e.g. `line.message.text_too_long`.
    pub code: &'static str,
    /// For the instructor: what is wrong and what to do.
    pub message_ja: String,
}

impl std::fmt::Display for MessageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code)
    }
}

impl std::error::Error for MessageError {}

fn err(code: &'static str, message_ja: impl Into<String>) -> MessageError {
    MessageError { code, message_ja: message_ja.into() }
}

fn check_url(what: &str, url: &str, allow_http: bool) -> Result<(), MessageError> {
    if url.is_empty() {
        return Err(err("line.message.url_missing", format!("{what}の URL がありません。")));
    }
    let https = url.starts_with("https://") || (allow_http && url.starts_with("http://"));
    if !https {
        return Err(err(
            "line.message.url_not_https",
            format!("{what}の URL は https:// で始まる必要があります（LINE の決まりです）。"),
        ));
    }
    if url.chars().count() > MAX_URL_CHARS {
        return Err(err(
            "line.message.url_too_long",
            format!("{what}の URL が長すぎます（{MAX_URL_CHARS} 文字まで）。"),
        ));
    }
    if url.chars().any(|c| !c.is_ascii() || c.is_ascii_whitespace() || c.is_ascii_control()) {
        return Err(err(
            "line.message.url_not_encoded",
            format!("{what}の URL に空白や日本語などが含まれています。パーセントエンコードした URL にしてください。"),
        ));
    }
    Ok(())
}

impl Message {
    pub fn text(text: impl Into<String>) -> Message {
        Message::Text { text: text.into() }
    }

    pub fn validate(&self) -> Result<(), MessageError> {
        self.validate_with(false)
    }

    /// [`Message::validate`]; `allow_http` also lets `http://` media URLs through (development
    /// and sandboxes only: LINE itself refuses them).
    pub fn validate_with(&self, allow_http: bool) -> Result<(), MessageError> {
        let check_url = |what: &str, url: &str| check_url(what, url, allow_http);
        match self {
            Message::Text { text } => {
                if text.trim().is_empty() {
                    return Err(err("line.message.text_empty", "テキストが空です。本文を入力してください。"));
                }
                let units = text.encode_utf16().count();
                if units > MAX_TEXT_UTF16 {
                    return Err(err(
                        "line.message.text_too_long",
                        format!(
                            "テキストが長すぎます（LINE の上限は {MAX_TEXT_UTF16} 文字相当、今は {units}）。絵文字や一部の漢字は2文字分に数えられます。分けて送ってください。"
                        ),
                    ));
                }
                Ok(())
            }
            Message::Image { original_content_url, preview_image_url } => {
                check_url("画像", original_content_url)?;
                check_url("画像のプレビュー", preview_image_url)
            }
            Message::Video { original_content_url, preview_image_url, tracking_id } => {
                check_url("動画", original_content_url)?;
                if preview_image_url.is_empty() {
                    return Err(err(
                        "line.message.video_preview_missing",
                        "動画にはプレビュー画像が必要です（LINE の決まりです）。",
                    ));
                }
                check_url("動画のプレビュー画像", preview_image_url)?;
                if let Some(t) = tracking_id {
                    let allowed = |c: char| c.is_ascii_alphanumeric() || "-.=,+*()%$&;:@{}!?<>[]".contains(c);
                    if t.is_empty() || t.chars().count() > MAX_TRACKING_ID || !t.chars().all(allowed) {
                        return Err(err("line.message.tracking_id_invalid", "動画の計測IDが正しくありません。"));
                    }
                }
                Ok(())
            }
            Message::Audio { original_content_url, duration } => {
                check_url("音声", original_content_url)?;
                if *duration <= 0 {
                    return Err(err(
                        "line.message.audio_duration_missing",
                        "音声の長さ（ミリ秒）がありません。ファイルの処理が終わるまでお待ちください。",
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Check a request's messages: 1–5 objects, each valid.
pub fn validate_all(messages: &[Message]) -> Result<(), MessageError> {
    validate_all_with(messages, false)
}

/// [`validate_all`], with [`Message::validate_with`]'s `allow_http`.
pub fn validate_all_with(messages: &[Message], allow_http: bool) -> Result<(), MessageError> {
    if messages.is_empty() {
        return Err(err("line.message.none", "送るメッセージがありません。"));
    }
    if messages.len() > MAX_MESSAGES_PER_REQUEST {
        return Err(err(
            "line.message.too_many",
            format!("1回に送れるメッセージは {MAX_MESSAGES_PER_REQUEST} 件までです。"),
        ));
    }
    messages.iter().try_for_each(|m| m.validate_with(allow_http))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_as_line_expects() {
        let v = serde_json::to_value(Message::Video {
            original_content_url: "https://a.example/v.mp4".into(),
            preview_image_url: "https://a.example/p.jpg".into(),
            tracking_id: None,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"video","originalContentUrl":"https://a.example/v.mp4","previewImageUrl":"https://a.example/p.jpg"})
        );
        let a = serde_json::to_value(Message::Audio {
            original_content_url: "https://a.example/a.m4a".into(),
            duration: 61_000,
        })
        .unwrap();
        assert_eq!(
            a,
            serde_json::json!({"type":"audio","originalContentUrl":"https://a.example/a.m4a","duration":61000})
        );
    }

    #[test]
    fn limits_are_enforced_with_reasons() {
        // 5,000 UTF-16 units: an emoji outside the BMP counts twice.
        assert!(Message::text("あ".repeat(5000)).validate().is_ok());
        assert_eq!(Message::text("あ".repeat(5001)).validate().unwrap_err().code, "line.message.text_too_long");
        assert_eq!(Message::text("😀".repeat(2501)).validate().unwrap_err().code, "line.message.text_too_long");
        assert!(Message::text("😀".repeat(2500)).validate().is_ok());
        assert_eq!(Message::text("  ").validate().unwrap_err().code, "line.message.text_empty");
        let img = |u: &str| Message::Image {
            original_content_url: u.into(),
            preview_image_url: "https://a.example/p.jpg".into(),
        };
        assert_eq!(img("http://a.example/i.jpg").validate().unwrap_err().code, "line.message.url_not_https");
        assert_eq!(img("https://a.example/画像.jpg").validate().unwrap_err().code, "line.message.url_not_encoded");
        let long = format!("https://a.example/{}", "x".repeat(2000));
        assert_eq!(img(&long).validate().unwrap_err().code, "line.message.url_too_long");
        let video = Message::Video {
            original_content_url: "https://a.example/v.mp4".into(),
            preview_image_url: String::new(),
            tracking_id: None,
        };
        assert_eq!(video.validate().unwrap_err().code, "line.message.video_preview_missing");
        let audio = Message::Audio { original_content_url: "https://a.example/a.m4a".into(), duration: 0 };
        assert_eq!(audio.validate().unwrap_err().code, "line.message.audio_duration_missing");
        assert_eq!(validate_all(&[]).unwrap_err().code, "line.message.none");
        assert_eq!(validate_all(&vec![Message::text("x"); 6]).unwrap_err().code, "line.message.too_many");
        assert!(validate_all(&vec![Message::text("x"); 5]).is_ok());
        for e in [Message::text("").validate().unwrap_err(), audio.validate().unwrap_err()] {
            assert!(e.message_ja.chars().any(|c| ('\u{3040}'..='\u{30ff}').contains(&c)));
        }
    }
}
