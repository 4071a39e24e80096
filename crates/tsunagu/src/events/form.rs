//! The event form: what the organizer typed, kept as typed so that a refused form comes back
//! whole, and its reading into the store's values (instants in the account's time zone, yen
//! amounts typed with full-width digits, commas or 円). Every refusal names the field and says
//! what to do, in Japanese.

use tsunagu_store::events::{Event, EventInput, EventState, NewTicket, TicketEdit};

/// Ticket rows offered on the form (blank rows are ignored).
pub const TICKET_ROWS: usize = 5;
pub const MAX_CAPACITY: i64 = 100_000;
pub const MAX_COMPANIONS: i64 = 9;
pub const MAX_PRICE_YEN: i64 = 10_000_000;

#[derive(Debug, Clone, Default)]
pub struct TicketRow {
    /// The stored ticket this row edits ("" for a new one).
    pub id: String,
    pub name: String,
    pub price: String,
    pub limit: String,
}

/// The お支払い方法 an event can offer, in the order the form lists them.
pub const METHODS: [&str; 3] = ["card", "konbini", "bank_transfer"];
/// Stripe's minimums and maximum in yen (NOTES §1).
pub const CARD_MIN_YEN: i64 = 50;
pub const KONBINI_MIN_YEN: i64 = 120;
pub const KONBINI_MAX_YEN: i64 = 300_000;

/// The form as typed.
#[derive(Debug, Clone, Default)]
pub struct EventForm {
    pub title: String,
    pub description: String,
    pub starts_at: String,
    pub ends_at: String,
    pub capacity: String,
    pub companions_max: String,
    pub apply_from: String,
    pub apply_until: String,
    pub cancel_until: String,
    pub payment_note: String,
    /// Checked boxes of the お支払い方法: `card`, `konbini`, `bank_transfer`.
    pub payment_methods: Vec<String>,
    pub konbini_days: String,
    pub state: String,
    pub tickets: Vec<TicketRow>,
}

/// A refusal: the field's name in the form and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: &'static str,
    pub message: String,
}

/// The form read: what the store takes.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub title: String,
    pub description: String,
    pub starts_at: i64,
    pub ends_at: i64,
    pub capacity: i64,
    pub companions_max: i64,
    pub apply_from: i64,
    pub apply_until: i64,
    pub cancel_until: Option<i64>,
    pub payment_note: String,
    /// `card`, `konbini`, `bank_transfer`, comma-separated.
    pub payment_methods: String,
    pub konbini_days: i64,
    pub state: EventState,
    pub tickets: Vec<(Option<i64>, String, i64, Option<i64>)>,
}

impl Parsed {
    pub fn input(&self) -> EventInput<'_> {
        EventInput {
            title: &self.title,
            description: &self.description,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            capacity: self.capacity,
            apply_from: self.apply_from,
            apply_until: self.apply_until,
            cancel_until: self.cancel_until,
            payment_note: &self.payment_note,
            companions_max: self.companions_max,
            payment_methods: &self.payment_methods,
            konbini_days: self.konbini_days,
            state: self.state,
        }
    }

    pub fn new_tickets(&self) -> Vec<NewTicket<'_>> {
        self.tickets
            .iter()
            .map(|(_, name, price, limit)| NewTicket { name, price_yen: *price, limit_count: *limit })
            .collect()
    }

    pub fn ticket_edits(&self) -> Vec<TicketEdit<'_>> {
        self.tickets
            .iter()
            .map(|(id, name, price, limit)| TicketEdit {
                id: *id,
                ticket: NewTicket { name, price_yen: *price, limit_count: *limit },
            })
            .collect()
    }
}

impl EventForm {
    /// From the posted fields (`ticket_name_0` … for the ticket rows).
    pub fn from_fields(fields: &[(String, String)]) -> EventForm {
        let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
        let tickets = (0..TICKET_ROWS)
            .map(|i| TicketRow {
                id: get(&format!("ticket_id_{i}")),
                name: get(&format!("ticket_name_{i}")),
                price: get(&format!("ticket_price_{i}")),
                limit: get(&format!("ticket_limit_{i}")),
            })
            .collect();
        EventForm {
            title: get("title"),
            description: get("description"),
            starts_at: get("starts_at"),
            ends_at: get("ends_at"),
            capacity: get("capacity"),
            companions_max: get("companions_max"),
            apply_from: get("apply_from"),
            apply_until: get("apply_until"),
            cancel_until: get("cancel_until"),
            payment_note: get("payment_note"),
            // A form without the お支払い方法 boxes (posted by a script written before them) means
            // bank transfer, as every event was then.
            payment_methods: if fields.iter().any(|(k, _)| k == "payment_methods_shown") {
                fields
                    .iter()
                    .filter(|(k, v)| k == "payment_methods" && METHODS.contains(&v.as_str()))
                    .map(|(_, v)| v.clone())
                    .collect()
            } else {
                vec!["bank_transfer".into()]
            },
            konbini_days: get("konbini_days"),
            state: get("state"),
            tickets,
        }
    }

    /// A new event's form: one free ticket row, applications open until the start.
    pub fn blank() -> EventForm {
        let mut tickets = vec![TicketRow { name: "一般".into(), price: "0".into(), ..TicketRow::default() }];
        tickets.resize(TICKET_ROWS, TicketRow::default());
        EventForm {
            companions_max: "0".into(),
            state: "draft".into(),
            payment_methods: vec!["bank_transfer".into()],
            konbini_days: "3".into(),
            tickets,
            ..EventForm::default()
        }
    }

    /// The stored event, as the form shows it.
    pub fn of(e: &Event, tz: &str) -> EventForm {
        let mut tickets: Vec<TicketRow> = e
            .tickets
            .iter()
            .map(|t| TicketRow {
                id: t.id.to_string(),
                name: t.name.clone(),
                price: t.price_yen.to_string(),
                limit: t.limit_count.map(|n| n.to_string()).unwrap_or_default(),
            })
            .collect();
        tickets.resize(TICKET_ROWS.max(tickets.len()), TicketRow::default());
        EventForm {
            title: e.title.clone(),
            description: e.description.clone(),
            starts_at: local_input(e.starts_at, tz),
            ends_at: local_input(e.ends_at, tz),
            capacity: e.capacity.to_string(),
            companions_max: e.companions_max.to_string(),
            apply_from: local_input(e.apply_from, tz),
            apply_until: local_input(e.apply_until, tz),
            cancel_until: e.cancel_until.map(|t| local_input(t, tz)).unwrap_or_default(),
            payment_note: e.payment_note.clone(),
            payment_methods: e.payment_methods.clone(),
            konbini_days: e.konbini_days.to_string(),
            state: e.state.code().into(),
            tickets,
        }
    }

    /// Read the form: the values, or every problem found (each field once).
    pub fn parse(&self, tz: &str, now: i64) -> Result<Parsed, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut problem = |field: &'static str, message: String| problems.push(Problem { field, message });
        let title = self.title.trim().to_string();
        if title.is_empty() {
            problem("title", "イベント名を入力してください。".into());
        } else if title.chars().count() > 200 {
            problem("title", "イベント名は 200 文字以内で入力してください。".into());
        }
        let description = self.description.replace("\r\n", "\n");
        if description.chars().count() > 20_000 {
            problem("description", "説明は 20,000 文字以内で入力してください。".into());
        }
        let starts_at = match instant(&self.starts_at, tz) {
            Some(t) => Some(t),
            None => {
                problem("starts_at", "開催日時を「2026-12-24 19:00」のように入力してください。".into());
                None
            }
        };
        let ends_at = match instant(&self.ends_at, tz) {
            Some(t) => Some(t),
            None => {
                problem("ends_at", "終了日時を「2026-12-24 21:00」のように入力してください。".into());
                None
            }
        };
        if let (Some(s), Some(e)) = (starts_at, ends_at)
            && e <= s
        {
            problem("ends_at", "終了日時は開催日時より後にしてください。".into());
        }
        let capacity = match number(&self.capacity) {
            Some(n) if (1..=MAX_CAPACITY).contains(&n) => n,
            _ => {
                problem("capacity", format!("定員は 1〜{} の数字で入力してください。", group(MAX_CAPACITY)));
                0
            }
        };
        let companions_max = match number(&self.companions_max) {
            Some(n) if (0..=MAX_COMPANIONS).contains(&n) => n,
            _ => {
                problem("companions_max", "同伴者の人数は 0〜9 人から選んでください。".into());
                0
            }
        };
        // 申込受付期間: from now (when left empty) until the start (when left empty).
        let apply_from = if self.apply_from.trim().is_empty() {
            Some(now)
        } else {
            let t = instant(&self.apply_from, tz);
            if t.is_none() {
                problem("apply_from", "申込受付開始日時を「2026-12-01 10:00」のように入力してください。".into());
            }
            t
        };
        let apply_until = if self.apply_until.trim().is_empty() {
            starts_at
        } else {
            let t = instant(&self.apply_until, tz);
            if t.is_none() {
                problem("apply_until", "申込受付終了日時を「2026-12-24 18:00」のように入力してください。".into());
            }
            t
        };
        if let (Some(f), Some(u)) = (apply_from, apply_until)
            && u <= f
        {
            let message = if self.apply_from.trim().is_empty() && self.apply_until.trim().is_empty() {
                // Both left to their defaults (now, and the start): the start has passed.
                "開催日時が過ぎているため、申込受付期間を決められません。開催日時か申込受付期間を入力してください。"
            } else {
                "申込受付の終了は開始より後にしてください。"
            };
            problem("apply_until", message.into());
        }
        if let (Some(u), Some(e)) = (apply_until, ends_at)
            && u > e
        {
            problem("apply_until", "申込受付の終了は、イベントの終了日時までにしてください。".into());
        }
        // 参加者によるキャンセルの受付期限: empty = until 申込受付 ends.
        let cancel_until = if self.cancel_until.trim().is_empty() {
            None
        } else {
            let t = instant(&self.cancel_until, tz);
            if t.is_none() {
                problem("cancel_until", "キャンセル受付期限を「2026-12-24 18:00」のように入力してください。".into());
            }
            if let (Some(c), Some(s)) = (t, starts_at)
                && c > s
            {
                problem("cancel_until", "キャンセル受付期限は、開催日時までにしてください。".into());
            }
            t
        };
        let payment_note = self.payment_note.trim().replace("\r\n", "\n");
        if payment_note.chars().count() > 2000 {
            problem("payment_note", "お支払い方法の案内は 2000 文字以内で入力してください。".into());
        }
        let state = EventState::from_code(&self.state).unwrap_or_else(|| {
            problem("state", "公開状態を選んでください。".into());
            EventState::Draft
        });
        let mut tickets = Vec::new();
        for (i, row) in self.tickets.iter().enumerate() {
            let name = row.name.trim();
            if name.is_empty() && row.price.trim().is_empty() && row.limit.trim().is_empty() {
                continue;
            }
            let n = i + 1;
            if name.is_empty() {
                problem("tickets", format!("チケット {n} の名前を入力してください。"));
            } else if name.chars().count() > 100 {
                problem("tickets", format!("チケット {n} の名前は 100 文字以内で入力してください。"));
            }
            let price = match yen(&row.price) {
                Some(p) if (0..=MAX_PRICE_YEN).contains(&p) => p,
                _ => {
                    problem("tickets", format!("チケット {n} の料金は 0 円以上の数字で入力してください（無料は 0）。"));
                    0
                }
            };
            let limit = if row.limit.trim().is_empty() {
                None
            } else {
                match number(&row.limit) {
                    Some(l) if l >= 0 => Some(l),
                    _ => {
                        problem(
                            "tickets",
                            format!(
                                "チケット {n} の販売数の上限は 0 以上の数字で入力してください（0 は販売停止、上限なしは空欄）。"
                            ),
                        );
                        None
                    }
                }
            };
            let id = row.id.trim().parse::<i64>().ok();
            tickets.push((id, name.to_string(), price, limit));
        }
        let blank = |r: &TicketRow| r.name.trim().is_empty() && r.price.trim().is_empty() && r.limit.trim().is_empty();
        if self.tickets.iter().all(blank) {
            problem("tickets", "チケットを 1 つ以上入力してください（無料なら料金 0）。".into());
        }
        // お支払い方法: Stripe's minimums per ticket (NOTES §1), and the voucher's days.
        let offers = |m: &str| self.payment_methods.iter().any(|x| x == m);
        let priced: Vec<&(Option<i64>, String, i64, Option<i64>)> = tickets.iter().filter(|t| t.2 > 0).collect();
        if !priced.is_empty() && self.payment_methods.is_empty() {
            problem("payment_methods", "有料のチケットがあるときは、お支払い方法を 1 つ以上選んでください。".into());
        }
        for t in &priced {
            if offers("card") && t.2 < CARD_MIN_YEN {
                problem(
                    "payment_methods",
                    format!(
                        "カード払いは 1 回 {CARD_MIN_YEN} 円以上です。「{}」の料金を {CARD_MIN_YEN} 円以上にするか、カードを外してください。",
                        t.1
                    ),
                );
            }
            if offers("konbini") && !(KONBINI_MIN_YEN..=KONBINI_MAX_YEN).contains(&t.2) {
                problem(
                    "payment_methods",
                    format!(
                        "コンビニ払いは 1 回 {KONBINI_MIN_YEN} 円以上 {} 円以下です。「{}」の料金を変えるか、コンビニを外してください。",
                        group(KONBINI_MAX_YEN),
                        t.1
                    ),
                );
            }
        }
        let konbini_days = if self.konbini_days.trim().is_empty() {
            3
        } else {
            match number(&self.konbini_days) {
                Some(d) if (1..=60).contains(&d) => d,
                _ => {
                    problem("payment_methods", "コンビニ払いの支払期限は 1〜60 日で入力してください。".into());
                    3
                }
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Parsed {
            title,
            description,
            starts_at: starts_at.unwrap_or_default(),
            ends_at: ends_at.unwrap_or_default(),
            capacity,
            companions_max,
            apply_from: apply_from.unwrap_or_default(),
            apply_until: apply_until.unwrap_or_default(),
            cancel_until,
            payment_note,
            payment_methods: METHODS.iter().filter(|m| offers(m)).copied().collect::<Vec<_>>().join(","),
            konbini_days,
            state,
            tickets,
        })
    }
}

/// Digits as people type them: full-width digits become ASCII; spaces and separators go.
fn ascii_digits(s: &str) -> String {
    s.trim()
        .chars()
        .filter_map(|c| match c {
            '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32),
            ',' | '，' | ' ' | '\u{3000}' => None,
            c => Some(c),
        })
        .collect()
}

fn number(s: &str) -> Option<i64> {
    let d = ascii_digits(s);
    (!d.is_empty() && d.chars().all(|c| c.is_ascii_digit()) && d.len() <= 12).then(|| d.parse().ok()).flatten()
}

/// Yen as typed: `3000`, `3,000`, `３０００円`, `¥3,000`.
fn yen(s: &str) -> Option<i64> {
    let d = ascii_digits(s);
    let d = d.trim_start_matches(['¥', '￥']).trim_end_matches('円');
    number(d)
}

/// `1,000` style.
pub fn group(n: i64) -> String {
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A local date and time as a browser's `datetime-local` sends it (`2026-12-24T19:00`), or as
/// typed with a space or slashes, in the account's zone.
pub fn instant(s: &str, tz: &str) -> Option<i64> {
    let t: String = s
        .trim()
        .chars()
        .map(|c| match c {
            '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
            '：' => ':',
            '／' | '/' => '-',
            '\u{3000}' | ' ' => 'T',
            c => c,
        })
        .collect();
    if !t.contains('T') {
        return None;
    }
    let dt: jiff::civil::DateTime = t.parse().ok()?;
    let zone = jiff::tz::TimeZone::get(tz).ok()?;
    Some(dt.to_zoned(zone).ok()?.timestamp().as_millisecond())
}

/// `2027年01月20日 19:00 〜 21:00`, with the end's date only when it is another day.
pub fn span(start: i64, end: i64, tz: &str) -> String {
    let (s, e) = (crate::clock::format_local(start, tz), crate::clock::format_local(end, tz));
    match (s.split_once(' '), e.split_once(' ')) {
        (Some((sd, _)), Some((ed, et))) if sd == ed => format!("{s} 〜 {et}"),
        _ => format!("{s} 〜 {e}"),
    }
}

/// An instant as a `datetime-local` input's value in the account's zone.
pub fn local_input(ms: i64, tz: &str) -> String {
    let Ok(ts) = jiff::Timestamp::from_millisecond(ms) else { return String::new() };
    let zone = jiff::tz::TimeZone::get(tz).unwrap_or(jiff::tz::TimeZone::UTC);
    ts.to_zoned(zone).strftime("%Y-%m-%dT%H:%M").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> EventForm {
        let mut f = EventForm::blank();
        f.title = "Zoom セミナー".into();
        f.starts_at = "2026-12-24T19:00".into();
        f.ends_at = "2026-12-24T21:00".into();
        f.capacity = "３０".into();
        f
    }

    #[test]
    fn reads_what_people_type() {
        let mut f = form();
        f.tickets[1] =
            TicketRow {
                name: "懇親会つき".into(), price: "￥3,000円".into(), limit: "１０".into(), id: "".into()
            };
        let p = f.parse("Asia/Tokyo", 0).unwrap();
        // 19:00 in Tokyo is 10:00 UTC.
        assert_eq!(p.starts_at, jiff::Timestamp::from_second(1_798_106_400).unwrap().as_millisecond());
        assert_eq!((p.capacity, p.apply_until), (30, p.starts_at), "applications close at the start by default");
        assert_eq!(p.tickets[1], (None, "懇親会つき".to_string(), 3000, Some(10)));
        assert_eq!(local_input(p.starts_at, "Asia/Tokyo"), "2026-12-24T19:00");
        assert_eq!(span(p.starts_at, p.ends_at, "Asia/Tokyo"), "2026年12月24日 19:00 〜 21:00");
        assert_eq!(
            span(p.starts_at, p.ends_at + 86_400_000, "Asia/Tokyo"),
            "2026年12月24日 19:00 〜 2026年12月25日 21:00"
        );
        let mut g = form();
        g.starts_at = "2026/12/24 19:00".into();
        assert_eq!(g.parse("Asia/Tokyo", 0).unwrap().starts_at, p.starts_at);
    }

    #[test]
    fn says_what_is_wrong_with_each_field() {
        let mut f = form();
        f.title = " ".into();
        f.ends_at = "2026-12-24T18:00".into();
        f.capacity = "0".into();
        f.tickets[0].price = "-100".into();
        f.tickets[1].limit = "5".into();
        let problems = f.parse("Asia/Tokyo", 0).unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            ["title", "ends_at", "capacity", "apply_until", "tickets", "tickets", "tickets"],
            "{problems:?}"
        );
        assert!(problems[1].message.contains("開催日時より後"));
        assert!(problems[5].message.contains("チケット 2 の名前"));
        assert_eq!(group(1_234_567), "1,234,567");
        // An event already started, with the application period left blank: said as such.
        let late = form().parse("Asia/Tokyo", 1_900_000_000_000).unwrap_err();
        assert_eq!(late.len(), 1);
        assert!(late[0].message.starts_with("開催日時が過ぎているため"), "{late:?}");
        // A limit of 0 stops a ticket's sales.
        let mut stop = form();
        stop.tickets[0].limit = "0".into();
        assert_eq!(stop.parse("Asia/Tokyo", 0).unwrap().tickets[0].3, Some(0));
    }
}
