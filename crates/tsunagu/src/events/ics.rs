//! The calendar entry (.ics, RFC 5545) attached to an event mail: the event's time in UTC, its
//! title, and the person's own join URL. Its UID stays the same for the person, and a later
//! version (the date changed) carries a higher SEQUENCE, so a calendar updates the entry.

/// One entry.
pub struct Entry<'a> {
    /// Stable for the person and the event.
    pub uid: &'a str,
    pub start_ms: i64,
    pub end_ms: i64,
    pub title: &'a str,
    /// The person's join URL (empty without Zoom).
    pub url: &'a str,
    pub description: &'a str,
    pub sequence: i64,
    pub now_ms: i64,
}

fn utc(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|_| "19700101T000000Z".into())
}

/// TEXT value escaping (RFC 5545 §3.3.11).
fn text(s: &str) -> String {
    s.replace('\\', "\\\\").replace(';', "\\;").replace(',', "\\,").replace("\r\n", "\\n").replace('\n', "\\n")
}

/// Fold a content line at 75 octets, never inside a character (RFC 5545 §3.1).
fn fold(line: &str, out: &mut String) {
    let mut used = 0;
    for ch in line.chars() {
        let n = ch.len_utf8();
        if used + n > 75 {
            out.push_str("\r\n ");
            used = 1;
        }
        out.push(ch);
        used += n;
    }
    out.push_str("\r\n");
}

pub fn calendar(e: &Entry<'_>) -> String {
    let mut lines = vec![
        "BEGIN:VCALENDAR".to_string(),
        "VERSION:2.0".into(),
        "PRODID:-//Tsunagu//Events//JA".into(),
        "METHOD:PUBLISH".into(),
        "BEGIN:VEVENT".into(),
        format!("UID:{}", e.uid),
        format!("SEQUENCE:{}", e.sequence),
        format!("DTSTAMP:{}", utc(e.now_ms)),
        format!("DTSTART:{}", utc(e.start_ms)),
        format!("DTEND:{}", utc(e.end_ms.max(e.start_ms))),
        format!("SUMMARY:{}", text(e.title)),
    ];
    if !e.description.is_empty() {
        lines.push(format!("DESCRIPTION:{}", text(e.description)));
    }
    if !e.url.is_empty() {
        lines.push(format!("URL:{}", e.url));
        lines.push(format!("LOCATION:{}", text(e.url)));
    }
    lines.push("END:VEVENT".into());
    lines.push("END:VCALENDAR".into());
    let mut out = String::new();
    for l in &lines {
        fold(l, &mut out);
    }
    out
}

/// The entry for one person: the Zoom meeting's time when Zoom is used (its 開催日時 and
/// 所要時間), else the event's.
pub fn for_person(
    app: &crate::app::App,
    event: &tsunagu_store::events::Event,
    zoom: Option<&tsunagu_store::events::ZoomSettings>,
    person_id: i64,
    join_url: &str,
    sequence: i64,
) -> String {
    let (start, end) = match zoom.filter(|z| z.enabled) {
        Some(z) => (z.starts_at, z.starts_at + z.duration_minutes * 60_000),
        None => (event.starts_at, event.ends_at),
    };
    let domain = app.config.mail.from.rsplit('@').next().unwrap_or("tsunagu.invalid").trim_end_matches('>').to_string();
    let description = if join_url.is_empty() { String::new() } else { format!("参加URL: {join_url}") };
    calendar(&Entry {
        uid: &format!("tsunagu-event-{}-person-{person_id}@{domain}", event.id),
        start_ms: start,
        end_ms: end,
        title: &event.title,
        url: join_url,
        description: &description,
        sequence,
        now_ms: app.now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_escaped_folded_and_in_utc() {
        let long = "https://zoom.us/w/85123456789?tk=".to_string() + &"a".repeat(120);
        let ics = calendar(&Entry {
            uid: "tsunagu-1-2@example.com",
            start_ms: 1_800_000_000_000,
            end_ms: 1_800_007_200_000,
            title: "新春セミナー; 第1回, Zoom",
            url: &long,
            description: "参加URL:\nあなた専用です",
            sequence: 3,
            now_ms: 1_790_000_000_000,
        });
        assert!(ics.starts_with("BEGIN:VCALENDAR\r\n") && ics.ends_with("END:VCALENDAR\r\n"));
        assert!(ics.contains("DTSTART:20270115T080000Z\r\n") && ics.contains("DTEND:20270115T100000Z\r\n"));
        assert!(ics.contains("SUMMARY:新春セミナー\\; 第1回\\, Zoom\r\n"));
        assert!(ics.contains("DESCRIPTION:参加URL:\\nあなた専用です"));
        assert!(ics.contains("SEQUENCE:3\r\n"));
        for line in ics.split("\r\n") {
            assert!(line.len() <= 75, "folded: {line:?}");
        }
        let unfolded = ics.replace("\r\n ", "");
        assert!(unfolded.contains(&format!("URL:{long}\r\n")), "unfolds to the whole URL");
    }
}
