//! The delivery log (per student and per message: when each step went, how, or why it did not)
//! and the channel's month: LINE's quota, what was consumed, and a forecast to the month's end.

use std::collections::{HashMap, HashSet};

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use tsunagu_store::courses as store;

use super::console::{NAV, owned};
use super::messages::{summary, timing_ja};
use crate::app::{App, SharedApp};
use crate::clock::format_local;
use crate::web::chrome::Chrome;
use crate::web::error::AppError;
use crate::web::session::Auth;

/// How many subscriptions a forecast reads at most; beyond that it scales what it read.
const FORECAST_SAMPLE: i64 = 5_000;
const LOG_ROWS: i64 = 500;

fn method_ja(method: Option<&str>) -> &'static str {
    match method {
        Some("reply") => "応答（無料）",
        Some("push") => "プッシュ",
        Some("multicast") => "マルチキャスト",
        _ => "—",
    }
}

fn outcome_ja(outcome: &str) -> &'static str {
    match outcome {
        "sent" => "送信済み",
        "skipped" => "スキップ（ブロック中）",
        "failed" => "失敗",
        _ => "送信中",
    }
}

struct Line {
    at: String,
    student: String,
    subscription: i64,
    message: String,
    outcome: &'static str,
    outcome_code: String,
    method: &'static str,
    reason: String,
    test: bool,
}

struct PerMessage {
    label: String,
    sent: usize,
    skipped: usize,
    failed: usize,
}

#[derive(Template)]
#[template(path = "course_log.html")]
struct LogPage {
    chrome: Chrome,
    id: i64,
    title: String,
    student: Option<String>,
    lines: Vec<Line>,
    per_message: Vec<PerMessage>,
}

#[derive(serde::Deserialize)]
pub struct Filter {
    #[serde(default)]
    student: Option<i64>,
}

/// 配信ログ.
pub async fn show(
    State(app): State<SharedApp>,
    auth: Auth,
    Path(id): Path<i64>,
    Query(f): Query<Filter>,
) -> Result<Html<String>, AppError> {
    let course = owned(&app, &auth, id).await?;
    let (rows, tests, steps) = {
        let mut c = app.store.read().await?;
        let rows = store::deliveries(&mut c, id, f.student, LOG_ROWS).await?;
        let tests = if f.student.is_none() { store::test_sends(&mut c, id, 50).await? } else { Vec::new() };
        (rows, tests, store::steps(&mut c, id).await?)
    };
    let tz = &course.time_zone;
    let mut lines: Vec<(i64, Line)> = rows
        .iter()
        .map(|r| {
            (
                r.at,
                Line {
                    at: format_local(r.at, tz),
                    student: if r.student_name.is_empty() {
                        "（名前なし）".into()
                    } else {
                        r.student_name.clone()
                    },
                    subscription: r.subscription_id,
                    message: format!("{}・{}通目", timing_ja(r.step_timing), r.step_position),
                    outcome: outcome_ja(&r.outcome),
                    outcome_code: r.outcome.clone(),
                    method: if r.outcome == "skipped" { "—" } else { method_ja(r.method.as_deref()) },
                    reason: r.reason.clone(),
                    test: false,
                },
            )
        })
        .collect();
    for t in tests {
        let (_, step_ids) = super::dispatch::body_parts(&t.body).unwrap_or_default();
        lines.push((
            t.created_at,
            Line {
                at: format_local(t.created_at, tz),
                student: "テスト配信先".into(),
                subscription: 0,
                message: format!("{} 件のメッセージ", step_ids.len()),
                outcome: super::test_send::send_state_ja(&t.state),
                outcome_code: t.state.clone(),
                method: method_ja(Some(&t.method)),
                reason: t.reason,
                test: true,
            },
        ));
    }
    lines.sort_by_key(|l| std::cmp::Reverse(l.0));
    let mut per: HashMap<i64, (usize, usize, usize)> = HashMap::new();
    for r in &rows {
        let e = per.entry(r.step_id).or_default();
        match r.outcome.as_str() {
            "sent" => e.0 += 1,
            "skipped" => e.1 += 1,
            "failed" => e.2 += 1,
            _ => {}
        }
    }
    let mut ordered = steps;
    ordered.sort_by_key(|s| super::dispatch::schedule_step(s).sort_key());
    let per_message = ordered
        .iter()
        .filter(|s| per.contains_key(&s.id) || s.valid_until.is_none())
        .map(|s| {
            let (sent, skipped, failed) = per.get(&s.id).copied().unwrap_or_default();
            PerMessage {
                label: format!("{}・{}通目・{}", timing_ja(s.timing), s.position, summary(s)),
                sent,
                skipped,
                failed,
            }
        })
        .collect();
    let student =
        f.student.and_then(|sid| rows.iter().find(|r| r.subscription_id == sid)).map(|r| r.student_name.clone());
    let page = LogPage {
        chrome: Chrome::console(&auth, NAV, "配信ログ"),
        id,
        title: course.title,
        student,
        lines: lines.into_iter().map(|l| l.1).collect(),
        per_message,
    };
    Ok(Html(page.render()?))
}

/// The channel's month as the LINE page shows it.
pub struct Month {
    /// LINE's monthly limit (`None`: no limit).
    pub quota: Option<i64>,
    pub used: i64,
    /// Requests still planned this month for students in the sequence now.
    pub planned: i64,
}

impl Month {
    pub fn forecast(&self) -> i64 {
        self.used + self.planned
    }

    pub fn over(&self) -> bool {
        self.quota.is_some_and(|q| self.forecast() > q)
    }
}

/// Requests still planned before the month ends in Japan for the channel's active students: each
/// instant at which a student has steps due costs one message per 5 steps (LINE counts a
/// request per recipient). Replies, which cost nothing, are not told apart here: an upper bound.
pub async fn planned_this_month(app: &App, channel_id: &str, now: i64) -> Result<i64, AppError> {
    let end = super::quota::next_month_start(now);
    let mut c = app.store.read().await?;
    let (subs, total) = store::active_on_channel(&mut c, channel_id, FORECAST_SAMPLE).await?;
    if subs.is_empty() {
        return Ok(0);
    }
    let mut courses: HashMap<i64, (jiff::tz::TimeZone, Vec<store::StepRow>)> = HashMap::new();
    for course in subs.iter().map(|s| s.1).collect::<HashSet<_>>() {
        let Some((tz, _)) = store::course_for_dispatch(&mut c, course).await? else { continue };
        let zone = jiff::tz::TimeZone::get(&tz).unwrap_or(jiff::tz::TimeZone::UTC);
        courses.insert(course, (zone, store::steps(&mut c, course).await?));
    }
    let ids: Vec<i64> = subs.iter().map(|s| s.0).collect();
    let mut handled: HashSet<(i64, i64)> = HashSet::new();
    for chunk in ids.chunks(500) {
        handled.extend(store::handled(&mut c, chunk).await?);
    }
    let mut planned = 0i64;
    for (sub, course, started) in &subs {
        let Some((zone, steps)) = courses.get(course) else { continue };
        let mine = super::dispatch::steps_for(steps, *started);
        for slot in super::schedule::plan(&mine, *started, zone) {
            if slot.at >= end {
                continue;
            }
            let left = slot.steps.iter().filter(|s| !handled.contains(&(*sub, **s))).count() as i64;
            planned += (left + 4) / 5;
        }
    }
    Ok(planned * total / subs.len() as i64)
}
