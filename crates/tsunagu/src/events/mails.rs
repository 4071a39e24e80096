//! The event mails (自動配信メール): their default subject and body, and the values a template
//! can use. Templates are minijinja in the subset `mail::template` allows; a template saved by
//! the organizer is validated against [`JoinContext::sample`] and rendered with the real values.

use serde::Serialize;

/// 「(代表者)ZOOMイベント参加URLのお知らせ」 and 「(同伴者専用)ZOOMイベント参加URLのお知らせ」.
pub const JOIN_SUBJECT: &str = "イベント参加URLのお知らせ";

pub const JOIN_BODY_REPRESENTATIVE: &str = "{{ name }} 様

「{{ event_title }}」へのお申し込みありがとうございます。
お申し込みが完了しました。

■ 開催日時
{{ event_date }}

{% if join_url %}■ 参加URL（{{ name }} 様専用です。ほかの方と共有しないでください）
{{ join_url }}
{% if meeting_id %}ミーティングID: {{ meeting_id }}
{% endif %}{% if passcode %}パスコード: {{ passcode }}
{% endif %}{% else %}参加URLは Zoom からメールでお送りします。
{% endif %}{% if companions %}
■ 同伴者
{% for c in companions %}・{{ c }} 様
{% endfor %}同伴者の方には、それぞれ専用の参加URLを別のメールでお送りしています。
{% endif %}
お申し込み内容の確認はこちら:
{{ application_url }}
";

pub const JOIN_BODY_COMPANION: &str = "{{ name }} 様

{{ representative }} 様のお申し込みにより、「{{ event_title }}」にご参加いただけます。

■ 開催日時
{{ event_date }}

{% if join_url %}■ 参加URL（{{ name }} 様専用です。ほかの方と共有しないでください）
{{ join_url }}
{% if meeting_id %}ミーティングID: {{ meeting_id }}
{% endif %}{% if passcode %}パスコード: {{ passcode }}
{% endif %}{% else %}参加URLは Zoom からメールでお送りします。
{% endif %}";

/// The cancellation mail.
pub const CANCEL_SUBJECT: &str = "キャンセルのお知らせ";

pub const CANCEL_BODY: &str = "{{ name }} 様

「{{ event_title }}」（{{ event_date }}）へのお申し込みをキャンセルしました。
{% if join_url %}お送りしていた参加URLは使えなくなりました。
{% endif %}
またのお申し込みをお待ちしております。
";

/// 日時変更のお知らせ.
pub const MOVED_SUBJECT: &str = "日時変更のお知らせ";

pub const MOVED_BODY: &str = "{{ name }} 様

「{{ event_title }}」の開催日時が変更になりました。

■ 新しい開催日時
{{ event_date }}

{% if join_url %}参加URLは変わりません（{{ name }} 様専用です）:
{{ join_url }}
{% endif %}{% if application_url %}
お申し込み内容の確認はこちら:
{{ application_url }}
{% endif %}";

/// The organizer's copy (［管理者向けメール］ = 配信する) goes out with this prefix.
pub const COPY_PREFIX: &str = "【控え】";

/// The values a join mail can use.
#[derive(Debug, Clone, Serialize)]
pub struct JoinContext {
    /// The person's name (お名前(漢字)).
    pub name: String,
    pub event_title: String,
    /// 開催日時 in the organizer's time zone, as people read it.
    pub event_date: String,
    /// The person's own join URL (or the event's shared one without registration); empty
    /// when Zoom sends it.
    pub join_url: String,
    pub meeting_id: String,
    pub passcode: String,
    /// The representative's name (for a companion's mail).
    pub representative: String,
    /// The companions' names (for the representative's mail).
    pub companions: Vec<String>,
    /// The participant's page of the application (its status, cancellation).
    pub application_url: String,
}

impl JoinContext {
    /// What a template is checked against when saved, and the preview shows.
    pub fn sample() -> JoinContext {
        JoinContext {
            name: "山田 太郎".into(),
            event_title: "Zoom 入門セミナー".into(),
            event_date: "2027年01月20日 19:00 〜 21:00".into(),
            join_url: "https://zoom.us/w/85123456789?tk=sample".into(),
            meeting_id: "851 2345 6789".into(),
            passcode: "123456".into(),
            representative: "山田 太郎".into(),
            companions: vec!["山田 花子".into()],
            application_url: "https://example.com/a/sample".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::template;

    #[test]
    fn the_defaults_are_valid_templates_and_read_well() {
        let s = JoinContext::sample();
        for body in [JOIN_BODY_REPRESENTATIVE, JOIN_BODY_COMPANION] {
            template::validate(JOIN_SUBJECT, body, &s).unwrap();
        }
        template::validate(CANCEL_SUBJECT, CANCEL_BODY, &s).unwrap();
        template::validate(MOVED_SUBJECT, MOVED_BODY, &s).unwrap();
        let (subject, body) = template::render(JOIN_SUBJECT, JOIN_BODY_REPRESENTATIVE, &s).unwrap();
        assert_eq!(subject, "イベント参加URLのお知らせ");
        assert!(body.contains("山田 太郎 様") && body.contains("https://zoom.us/w/85123456789?tk=sample"));
        assert!(body.contains("・山田 花子 様") && body.contains("パスコード: 123456"));
        let zoom_sends = JoinContext { join_url: String::new(), companions: vec![], ..s };
        let (_, body) = template::render(JOIN_SUBJECT, JOIN_BODY_REPRESENTATIVE, &zoom_sends).unwrap();
        assert!(body.contains("Zoom からメールでお送りします") && !body.contains("同伴者"));
    }
}
