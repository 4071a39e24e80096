//! The event mails (自動配信メール): each kind's name as the console lists it, its default
//! subject and body, whether it is sent and copied to the organizer by default, and the values a
//! template can use. Templates are minijinja in the subset `mail::template` allows; an
//! organizer's own version is checked against [`JoinContext::sample`] when saved.

use serde::Serialize;
use tsunagu_core::AccountId;
use tsunagu_store::{AnyConnection, StoreError, mail_templates};

/// One kind of event mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub code: &'static str,
    /// As the console lists it (the manual's names for the join mails).
    pub name: &'static str,
    /// When it is sent, for the organizer.
    pub when: &'static str,
    pub subject: &'static str,
    pub body: &'static str,
    pub admin_copy: bool,
}

pub const JOIN_REPRESENTATIVE: Kind = Kind {
    code: "join_representative",
    name: "(代表者)ZOOMイベント参加URLのお知らせ",
    when: "申込が完了したとき、代表者に（参加URLを Tsunagu から送る場合）",
    subject: "イベント参加URLのお知らせ",
    body: "{{ name }} 様

「{{ event_title }}」へのお申し込みありがとうございます。
お申し込みが完了しました。

■ 開催日時
{{ event_date }}

{% if join_url %}■ 参加URL{% if personal %}（{{ name }} 様専用です。ほかの方と共有しないでください）{% endif %}
{{ join_url }}
{% if meeting_id %}ミーティングID: {{ meeting_id }}
{% endif %}{% if passcode %}パスコード: {{ passcode }}
{% endif %}{% elif zoom_sends %}参加URLは Zoom からメールでお送りします。
{% endif %}{% if companions %}
■ 同伴者
{% for c in companions %}・{{ c }} 様
{% endfor %}{% if personal %}メールアドレスをご入力いただいた同伴者の方には、それぞれ専用の参加URLを別のメールでお送りしています。
{% endif %}{% endif %}
お申し込み内容の確認・キャンセルはこちら:
{{ application_url }}
",
    admin_copy: true,
};

pub const JOIN_COMPANION: Kind = Kind {
    code: "join_companion",
    name: "(同伴者専用)ZOOMイベント参加URLのお知らせ",
    when: "申込が完了したとき、メールアドレスのある同伴者に（参加URLを Tsunagu から送る場合）",
    subject: "イベント参加URLのお知らせ",
    body: "{{ name }} 様

{{ representative }} 様のお申し込みにより、「{{ event_title }}」にご参加いただけます。

■ 開催日時
{{ event_date }}

{% if join_url %}■ 参加URL{% if personal %}（{{ name }} 様専用です。ほかの方と共有しないでください）{% endif %}
{{ join_url }}
{% if meeting_id %}ミーティングID: {{ meeting_id }}
{% endif %}{% if passcode %}パスコード: {{ passcode }}
{% endif %}{% elif zoom_sends %}参加URLは Zoom からメールでお送りします。
{% endif %}",
    admin_copy: true,
};

pub const RECEIVED: Kind = Kind {
    code: "received",
    name: "申込受付のお知らせ",
    when: "有料チケットの申込を受け付けたとき（入金待ち）と、参加URLを Zoom から送る場合の申込完了時に、代表者に",
    subject: "お申し込みを受け付けました",
    body: "{{ name }} 様

「{{ event_title }}」へのお申し込みを受け付けました。

■ 開催日時
{{ event_date }}

{% if payment_note %}■ お支払いについて（金額 {{ amount }}）
{{ payment_note }}
ご入金を確認しましたら、参加URLをお送りします。
{% elif zoom_sends %}参加URLは Zoom からメールでお送りします。
{% endif %}
お申し込み内容の確認・キャンセルはこちら:
{{ application_url }}
",
    admin_copy: false,
};

pub const CANCELLED: Kind = Kind {
    code: "cancelled",
    name: "キャンセルのお知らせ",
    when: "申込や同伴者がキャンセルされたとき、その方に",
    subject: "キャンセルのお知らせ",
    body: "{{ name }} 様

「{{ event_title }}」（{{ event_date }}）へのお申し込みをキャンセルしました。
{% if personal %}お送りしていた参加URLは使えなくなりました。
{% endif %}{% if payment_note %}
■ お支払いについて
{{ payment_note }}
{% endif %}
またのお申し込みをお待ちしております。
",
    admin_copy: false,
};

pub const MOVED: Kind = Kind {
    code: "moved",
    name: "日時変更のお知らせ",
    when: "イベントの開催日時を変更したとき、参加URLをお送りした全員に",
    subject: "日時変更のお知らせ",
    body: "{{ name }} 様

「{{ event_title }}」の開催日時が変更になりました。

■ 新しい開催日時
{{ event_date }}

{% if join_url %}参加URLは変わりません{% if personal %}（{{ name }} 様専用です）{% endif %}:
{{ join_url }}
{% endif %}{% if application_url %}
お申し込み内容の確認・キャンセルはこちら:
{{ application_url }}
{% endif %}",
    admin_copy: false,
};

pub const REFUNDED: Kind = Kind {
    code: "refunded",
    name: "返金のお知らせ",
    when: "同伴者のキャンセルで返金するときと、キャンセル後に届いたお支払いを返金するとき、お支払いいただいた代表者に",
    subject: "返金のお知らせ",
    body: "{{ name }} 様

「{{ event_title }}」（{{ event_date }}）のお支払いについてお知らせします。

{{ payment_note }}
{% if application_url %}
お申し込み内容の確認はこちら:
{{ application_url }}
{% endif %}",
    admin_copy: false,
};

/// Every kind, in the order the console lists them.
pub const KINDS: [Kind; 6] = [JOIN_REPRESENTATIVE, JOIN_COMPANION, RECEIVED, CANCELLED, MOVED, REFUNDED];

pub fn kind(code: &str) -> Option<Kind> {
    KINDS.into_iter().find(|k| k.code == code)
}

/// The organizer's copy (［管理者向けメール］ = 配信する) goes out with this prefix.
pub const COPY_PREFIX: &str = "【控え】";

/// A kind as the account has it: its own version, or the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub enabled: bool,
    pub admin_copy: bool,
    pub subject: String,
    pub body: String,
    /// Saved by the organizer (not the default).
    pub customized: bool,
}

pub async fn effective(c: &mut AnyConnection, account: AccountId, k: Kind) -> Result<Effective, StoreError> {
    Ok(match mail_templates::get(c, account, k.code).await? {
        Some(t) => Effective {
            enabled: t.enabled,
            admin_copy: t.admin_copy,
            subject: t.subject,
            body: t.body,
            customized: true,
        },
        None => Effective {
            enabled: true,
            admin_copy: k.admin_copy,
            subject: k.subject.into(),
            body: k.body.into(),
            customized: false,
        },
    })
}

/// The values an event mail can use, with what each is (listed beside the editor).
pub const VARIABLES: [(&str, &str); 14] = [
    ("name", "受け取る方のお名前"),
    ("event_title", "イベント名"),
    ("event_date", "開催日時"),
    ("join_url", "参加URL（参加者登録利用がオンならその方専用）"),
    ("meeting_id", "ミーティングID"),
    ("passcode", "パスコード"),
    ("personal", "参加URLがその方専用か（参加者登録利用がオン）"),
    ("zoom_sends", "参加URLを Zoom から送るか"),
    ("representative", "代表者のお名前（同伴者向け）"),
    ("companions", "同伴者のお名前の一覧（代表者向け）"),
    ("application_url", "お申し込み内容の確認・キャンセルのページ"),
    ("amount", "金額"),
    ("payment_note", "お支払いについて（受付のお知らせ: お支払い方法の案内、キャンセルのお知らせ: 返金について）"),
    ("ticket", "チケット名"),
];

/// The values a mail is rendered with.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JoinContext {
    pub name: String,
    pub event_title: String,
    /// 開催日時 in the organizer's time zone, as people read it.
    pub event_date: String,
    /// The person's own join URL (or the event's shared one without registration); empty
    /// when Zoom sends it or Zoom is not used.
    pub join_url: String,
    pub meeting_id: String,
    pub passcode: String,
    /// `join_url` is this person's own.
    pub personal: bool,
    /// Zoom mails the join URL (［Zoomから送信］).
    pub zoom_sends: bool,
    pub representative: String,
    pub companions: Vec<String>,
    pub application_url: String,
    pub amount: String,
    pub payment_note: String,
    pub ticket: String,
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
            personal: true,
            zoom_sends: false,
            representative: "山田 太郎".into(),
            companions: vec!["山田 花子".into()],
            application_url: "https://example.com/a/sample".into(),
            amount: "3,000円".into(),
            payment_note: "○○銀行 △△支店 普通 1234567 カ）ツナグ".into(),
            ticket: "一般".into(),
        }
    }
}

/// Where one event mail goes: the person, the cause that names it, and its calendar entry.
pub struct Delivery<'a> {
    pub to: &'a str,
    pub cause: &'a str,
    pub calendar: Option<&'a str>,
}

/// Queue one event mail to `to` on the caller's transaction, as the account has the kind: not
/// at all when ［配信ステータス］ is 配信しない, with the organizer's copy when ［管理者向けメール］
/// is 配信する. `cause` names the mail (one mail per cause, however often this runs);
/// `calendar` is attached to the person's mail. Returns whether the person's mail was queued now.
pub async fn queue(
    c: &mut AnyConnection,
    app: &crate::app::App,
    organizer: &tsunagu_store::accounts::Account,
    k: Kind,
    ctx: &JoinContext,
    d: Delivery<'_>,
) -> Result<bool, crate::jobs::JobError> {
    let Delivery { to, cause, calendar } = d;
    let t = effective(c, organizer.id, k).await?;
    if !t.enabled || to.trim().is_empty() {
        return Ok(false);
    }
    let (subject, text) = crate::mail::template::render(&t.subject, &t.body, ctx).map_err(|e| {
        // Checked when saved; a template that no longer renders is the organizer's to fix.
        crate::jobs::JobError::Permanent(format!(
            "mail template {} does not render: line {}: {}",
            k.code, e.line, e.reason
        ))
    })?;
    let made = crate::mail::enqueue(
        c,
        app,
        &crate::mail::OutgoingMail {
            account_id: Some(organizer.id),
            cause,
            to: to.trim(),
            subject: &subject,
            body: &text,
            calendar,
        },
    )
    .await?;
    if t.admin_copy {
        crate::mail::enqueue(
            c,
            app,
            &crate::mail::OutgoingMail {
                account_id: Some(organizer.id),
                cause: &format!("{cause}:copy"),
                to: &organizer.email,
                subject: &format!("{COPY_PREFIX}{subject}（{} 様）", ctx.name),
                body: &text,
                calendar: None,
            },
        )
        .await?;
    }
    Ok(made.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::template;

    #[test]
    fn the_defaults_are_valid_templates_and_read_well() {
        let s = JoinContext::sample();
        for k in KINDS {
            template::validate(k.subject, k.body, &s).unwrap_or_else(|e| panic!("{}: {e:?}", k.code));
        }
        let (subject, body) = template::render(JOIN_REPRESENTATIVE.subject, JOIN_REPRESENTATIVE.body, &s).unwrap();
        assert_eq!(subject, "イベント参加URLのお知らせ");
        assert!(body.contains("山田 太郎 様") && body.contains("https://zoom.us/w/85123456789?tk=sample"));
        assert!(body.contains("・山田 花子 様") && body.contains("パスコード: 123456"));
        assert!(body.contains("山田 太郎 様専用"));
        // Zoom sends the URL: said so; no Zoom at all: nothing about Zoom.
        let zoom_sends = JoinContext { join_url: String::new(), zoom_sends: true, companions: vec![], ..s.clone() };
        let (_, body) = template::render(JOIN_REPRESENTATIVE.subject, JOIN_REPRESENTATIVE.body, &zoom_sends).unwrap();
        assert!(body.contains("Zoom からメールでお送りします") && !body.contains("同伴者"));
        let no_zoom = JoinContext { join_url: String::new(), zoom_sends: false, ..zoom_sends };
        let (_, body) = template::render(JOIN_REPRESENTATIVE.subject, JOIN_REPRESENTATIVE.body, &no_zoom).unwrap();
        assert!(!body.contains("Zoom から") && !body.contains("参加URL"), "{body}");
        // A shared link is not called personal, and does not stop working on cancel.
        let shared = JoinContext { personal: false, ..s };
        let (_, body) = template::render(JOIN_REPRESENTATIVE.subject, JOIN_REPRESENTATIVE.body, &shared).unwrap();
        assert!(!body.contains("様専用") && !body.contains("別のメールでお送りしています"));
        let (_, body) = template::render(CANCELLED.subject, CANCELLED.body, &shared).unwrap();
        assert!(!body.contains("使えなくなりました"));
    }
}
