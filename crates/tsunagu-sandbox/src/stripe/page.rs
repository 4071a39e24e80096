//! The sandbox's Stripe pages: the hosted checkout page a buyer is sent to, the konbini
//! voucher, and a small dashboard where the organizer sees payments and refunds one.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::StripeSandbox;
use crate::zoom::page::esc;

fn wrap(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"ja\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t}</title>\
         <style>body{{font-family:system-ui,'Noto Sans CJK JP',sans-serif;margin:0;background:#f6f9fc;color:#1a1f36;line-height:1.6}}\
         main{{max-width:30rem;margin:0 auto;padding:1.25rem}}.card{{background:#fff;border-radius:.5rem;box-shadow:0 1px 3px #0002;padding:1rem 1.25rem;margin:1rem 0}}\
         .wide{{max-width:72rem}}label{{display:block;margin:.6rem 0 .2rem;font-size:.9rem}}\
         input{{width:100%;box-sizing:border-box;font-size:1rem;padding:.55rem;border:1px solid #c4cdd5;border-radius:.35rem}}\
         button{{width:100%;font-size:1rem;padding:.7rem;margin-top:.9rem;border:0;border-radius:.35rem;background:#635bff;color:#fff;cursor:pointer}}\
         button.sub{{background:#fff;color:#635bff;border:1px solid #635bff}}.err{{color:#c0123c;font-weight:bold}}.note{{color:#555;font-size:.85rem}}\
         .amount{{font-size:1.8rem;font-weight:bold}}table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #e3e8ee;padding:.35rem .4rem;text-align:left;font-size:.9rem;word-break:break-all}}\
         form.inline{{display:inline}}form.inline button,form.inline input{{width:auto;margin:0 .25rem}}</style></head>\
         <body><main{w}>{body}</main></body></html>",
        t = esc(title),
        w = if title.contains("ダッシュボード") { " class=\"wide\"" } else { "" },
    )
}

fn yen(n: i64) -> String {
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{}¥{out}", if n < 0 { "-" } else { "" })
}

fn jst(t: i64) -> String {
    jiff::Timestamp::from_second(t)
        .ok()
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(9))).strftime("%Y年%-m月%-d日 %H:%M").to_string()
        })
        .unwrap_or_default()
}

/// The buyer pays (card) or takes a voucher (konbini). `Ok`: where the page sends them next.
/// `Err`: what the page shows (a declined card, a closed session).
pub(crate) fn pay(
    sb: &StripeSandbox,
    session: &str,
    method: &str,
    card: &str,
    email: Option<&str>,
) -> Result<String, String> {
    let made = {
        let mut g = sb.lock();
        let mut made = g.sweep();
        let Some(s) = g.sessions.get(session).cloned() else {
            return Err("この支払いページは存在しません。".into());
        };
        if s.status != "open" {
            return Err("この支払いページは期限切れか、すでに完了しています。".into());
        }
        if !s.methods.iter().any(|m| m == method) {
            return Err("この支払い方法は使えません。".into());
        }
        let pi = s.payment_intent.clone();
        let success = s.success_url.replace("{CHECKOUT_SESSION_ID}", &s.id);
        match method {
            "card" => {
                let digits: String = card.chars().filter(char::is_ascii_digit).collect();
                let decline = match digits.as_str() {
                    "4000000000000002" => Some(("card_declined", "Your card was declined.")),
                    "4000000000009995" => Some(("card_declined", "Your card has insufficient funds.")),
                    d if d.len() < 12 => Some(("incorrect_number", "Your card number is incorrect.")),
                    _ => None,
                };
                if let Some((code, msg)) = decline {
                    if let Some(i) = g.intents.get_mut(&pi) {
                        i.last_error = Some((code.into(), msg.into()));
                    }
                    let shown = if code == "incorrect_number" {
                        "カード番号が正しくありません。"
                    } else {
                        "カードが拒否されました。別のカードをお試しください。"
                    };
                    g.sessions.get_mut(session).expect("exists").declined = Some(shown.into());
                    return Err(shown.into());
                }
                if let Some(e) = email.filter(|e| !e.is_empty()) {
                    g.intents.get_mut(&pi).expect("exists").email = Some(e.into());
                }
                g.settle(&pi, "card");
                let (account, live) = (s.account.clone(), s.livemode);
                let obj = g.session_json(session);
                made.push(g.emit(&account, live, "checkout.session.completed", obj, None));
            }
            "konbini" => {
                if let Some(e) = email.filter(|e| !e.is_empty()) {
                    g.intents.get_mut(&pi).expect("exists").email = Some(e.into());
                    let s = g.sessions.get_mut(session).expect("exists");
                    s.customer_email.get_or_insert_with(|| e.into());
                }
                super::api::issue_voucher(&mut g, &pi);
                let s = g.sessions.get_mut(session).expect("exists");
                s.status = "complete";
                s.payment_status = "unpaid";
                let (account, live) = (s.account.clone(), s.livemode);
                let obj = g.session_json(session);
                made.push(g.emit(&account, live, "checkout.session.completed", obj, None));
            }
            _ => return Err("この支払い方法は使えません。".into()),
        }
        (made, success)
    };
    sb.deliver_all(made.0);
    Ok(made.1)
}

/// The buyer paid the voucher at the store.
pub(crate) fn konbini_paid(sb: &StripeSandbox, pi: &str) -> bool {
    let made = {
        let mut g = sb.lock();
        let mut made = g.sweep();
        let ok = g.intents.get(pi).is_some_and(|i| i.status == "requires_action");
        if !ok {
            drop(g);
            sb.deliver_all(made);
            return false;
        }
        let Some(session) = g.settle(pi, "konbini") else { return false };
        let (account, live) = {
            let s = &g.sessions[&session];
            (s.account.clone(), s.livemode)
        };
        let obj = g.session_json(&session);
        made.push(g.emit(&account, live, "checkout.session.async_payment_succeeded", obj, None));
        made
    };
    sb.deliver_all(made);
    true
}

fn checkout_page(sb: &StripeSandbox, id: &str, error: Option<&str>) -> Response {
    let g = sb.lock();
    let Some(s) = g.sessions.get(id) else {
        return (StatusCode::NOT_FOUND, Html(wrap("お支払い", "<p>この支払いページは存在しません。</p>")))
            .into_response();
    };
    let shop = g.account(&s.account).map(|a| a.display_name.clone()).unwrap_or_default();
    let mut body = format!("<p class=\"note\">{} ・ テスト環境（Tsunagu の Stripe サンドボックス）</p>", esc(&shop));
    if s.status != "open" {
        body.push_str("<div class=\"card\"><p>この支払いページは期限切れか、すでに完了しています。</p></div>");
        return Html(wrap("お支払い", &body)).into_response();
    }
    body.push_str("<div class=\"card\">");
    for (name, unit, qty) in &s.items {
        body.push_str(&format!("<p>{} × {qty}<br><span class=\"note\">{} / 枚</span></p>", esc(name), yen(*unit)));
    }
    body.push_str(&format!("<p>合計</p><p class=\"amount\" id=\"amount\">{}</p></div>", yen(s.amount_total)));
    if let Some(e) = error.or(s.declined.as_deref()) {
        body.push_str(&format!("<p class=\"err\" role=\"alert\">{}</p>", esc(e)));
    }
    let email = s.customer_email.clone().unwrap_or_default();
    if s.methods.iter().any(|m| m == "card") {
        body.push_str(&format!(
            "<form class=\"card\" method=\"post\" action=\"/c/pay/{id}\"><h2>カード</h2><input type=\"hidden\" name=\"method\" value=\"card\">\
             <label for=\"email\">メールアドレス</label><input id=\"email\" name=\"email\" type=\"email\" value=\"{e}\">\
             <label for=\"card\">カード番号</label><input id=\"card\" name=\"card\" inputmode=\"numeric\" autocomplete=\"cc-number\" value=\"4242 4242 4242 4242\">\
             <p class=\"note\">テスト用: 4242 4242 4242 4242 は成功、4000 0000 0000 0002 は拒否されます。</p>\
             <label for=\"exp\">有効期限</label><input id=\"exp\" name=\"exp\" value=\"12 / 30\">\
             <label for=\"cvc\">セキュリティコード</label><input id=\"cvc\" name=\"cvc\" value=\"123\">\
             <button type=\"submit\" id=\"pay-card\">支払う</button></form>",
            id = esc(id),
            e = esc(&email),
        ));
    }
    if s.methods.iter().any(|m| m == "konbini") {
        let days = s.konbini_days.unwrap_or(3);
        body.push_str(&format!(
            "<form class=\"card\" method=\"post\" action=\"/c/pay/{id}\"><h2>コンビニ</h2><input type=\"hidden\" name=\"method\" value=\"konbini\">\
             <p class=\"note\">ファミリーマート・ローソン・ミニストップ・セイコーマートで、{days}日後の23:59までにお支払いください。</p>\
             <label for=\"konbini-email\">メールアドレス</label><input id=\"konbini-email\" name=\"email\" type=\"email\" value=\"{e}\">\
             <button type=\"submit\" id=\"pay-konbini\">お支払い番号を発行する</button></form>",
            id = esc(id),
            e = esc(&email),
        ));
    }
    body.push_str(&format!("<p><a href=\"/c/pay/{}/cancel\">← 戻る</a></p>", esc(id)));
    Html(wrap("お支払い", &body)).into_response()
}

pub(crate) async fn checkout(State(sb): State<StripeSandbox>, Path(id): Path<String>) -> Response {
    let made = sb.lock().sweep();
    sb.deliver_all(made);
    checkout_page(&sb, &id, None)
}

#[derive(Deserialize)]
pub(crate) struct PayForm {
    method: String,
    #[serde(default)]
    card: String,
    #[serde(default)]
    email: String,
}

pub(crate) async fn checkout_submit(
    State(sb): State<StripeSandbox>,
    Path(id): Path<String>,
    Form(f): Form<PayForm>,
) -> Response {
    match pay(&sb, &id, &f.method, &f.card, Some(&f.email)) {
        Ok(next) => Redirect::to(&next).into_response(),
        Err(e) => checkout_page(&sb, &id, Some(&e)),
    }
}

pub(crate) async fn checkout_cancel(State(sb): State<StripeSandbox>, Path(id): Path<String>) -> Response {
    let url = sb.lock().sessions.get(&id).map(|s| s.cancel_url.clone());
    match url {
        Some(u) => Redirect::to(&u).into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

pub(crate) async fn voucher(State(sb): State<StripeSandbox>, Path(id): Path<String>) -> Response {
    let made = sb.lock().sweep();
    sb.deliver_all(made);
    let g = sb.lock();
    let Some(i) = g.intents.get(&id) else {
        return (StatusCode::NOT_FOUND, Html(wrap("コンビニ払い", "<p>見つかりません。</p>"))).into_response();
    };
    let mut body = String::from("<p class=\"note\">テスト環境（Tsunagu の Stripe サンドボックス）</p>");
    match (i.status, i.konbini_expires_at, &i.konbini_codes) {
        ("requires_action", Some(exp), Some((code, confirm))) => {
            body.push_str(&format!(
                "<div class=\"card\"><p class=\"amount\">{}</p><p>お支払い期限: <strong id=\"deadline\">{}</strong></p>\
                 <table><tr><th>お支払い番号</th><td id=\"payment-code\">{}</td></tr><tr><th>確認番号</th><td id=\"confirmation\">{}</td></tr></table>\
                 <p class=\"note\">ファミリーマート・ローソン・ミニストップ・セイコーマートのレジでお支払いください。</p></div>\
                 <form method=\"post\" action=\"/v/{id}/paid\"><button type=\"submit\" id=\"paid\">店舗で支払った（テスト）</button></form>\
                 <form method=\"post\" action=\"/v/{id}/expire\"><button type=\"submit\" class=\"sub\" id=\"expire\">期限切れにする（テスト）</button></form>",
                yen(i.amount),
                jst(exp),
                esc(code),
                esc(confirm),
                id = esc(&id),
            ));
        }
        ("succeeded", ..) => body.push_str("<div class=\"card\"><p>お支払いが完了しました。</p></div>"),
        _ => body.push_str("<div class=\"card\"><p>このお支払い番号は期限切れです。</p></div>"),
    }
    Html(wrap("コンビニ払い", &body)).into_response()
}

pub(crate) async fn voucher_paid(State(sb): State<StripeSandbox>, Path(id): Path<String>) -> Response {
    konbini_paid(&sb, &id);
    Redirect::to(&format!("/v/{id}")).into_response()
}

pub(crate) async fn voucher_expire(State(sb): State<StripeSandbox>, Path(id): Path<String>) -> Response {
    sb.let_voucher_expire(&id);
    Redirect::to(&format!("/v/{id}")).into_response()
}

pub(crate) async fn dashboard(State(sb): State<StripeSandbox>) -> Html<String> {
    let made = sb.lock().sweep();
    sb.deliver_all(made);
    let payments = sb.payments();
    let refunds = sb.refunds();
    let g = sb.lock();
    let mut body = String::from(
        "<p class=\"note\">これは Tsunagu のデモ用の Stripe サンドボックスです。本物の Stripe には接続していません。</p>",
    );
    body.push_str("<h2>支払い</h2>");
    if payments.is_empty() {
        body.push_str("<p>まだ支払いはありません。</p>");
    } else {
        body.push_str("<table><tr><th>PaymentIntent</th><th>アカウント</th><th>金額</th><th>方法</th><th>状態</th><th>返金済み</th><th>注文</th><th></th></tr>");
        for p in &payments {
            let account = g.account(&p.account).map(|a| a.display_name.clone()).unwrap_or_default();
            let refundable = p.status == "succeeded" && p.amount_refunded < p.amount;
            let action = if refundable {
                format!(
                    "<form class=\"inline\" method=\"post\" action=\"/dashboard/refund\"><input type=\"hidden\" name=\"payment_intent\" value=\"{pi}\">\
                     <input name=\"amount\" size=\"7\" placeholder=\"全額\" aria-label=\"返金額\"><button type=\"submit\">返金</button></form>",
                    pi = esc(&p.payment_intent)
                )
            } else {
                String::new()
            };
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
                esc(&p.payment_intent),
                esc(&account),
                yen(p.amount),
                esc(p.method.as_deref().unwrap_or("-")),
                esc(&p.status),
                yen(p.amount_refunded),
                esc(p.metadata.get("tsunagu_order").map(String::as_str).unwrap_or("")),
            ));
        }
        body.push_str("</table>");
    }
    body.push_str("<h2>返金</h2>");
    if refunds.is_empty() {
        body.push_str("<p>まだ返金はありません。</p>");
    } else {
        body.push_str("<table><tr><th>返金</th><th>PaymentIntent</th><th>金額</th><th>状態</th><th></th></tr>");
        for r in &refunds {
            let action = if r.status == "requires_action" {
                format!(
                    "<form class=\"inline\" method=\"post\" action=\"/dashboard/refunds/{}/complete\"><button type=\"submit\">購入者が口座情報を入力した（テスト）</button></form>",
                    esc(&r.id)
                )
            } else {
                String::new()
            };
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
                esc(&r.id),
                esc(&r.payment_intent),
                yen(r.amount),
                esc(&r.status)
            ));
        }
        body.push_str("</table>");
    }
    Html(wrap("Stripe サンドボックス ダッシュボード", &body))
}

#[derive(Deserialize)]
pub(crate) struct RefundForm {
    payment_intent: String,
    #[serde(default)]
    amount: String,
}

pub(crate) async fn dashboard_refund(State(sb): State<StripeSandbox>, Form(f): Form<RefundForm>) -> Response {
    let amount = f.amount.trim().replace([',', '¥'], "").parse::<i64>().ok();
    let _ = sb.refund_in_dashboard(&f.payment_intent, amount);
    Redirect::to("/dashboard").into_response()
}

pub(crate) async fn dashboard_complete_refund(State(sb): State<StripeSandbox>, Path(id): Path<String>) -> Response {
    sb.complete_refund(&id);
    Redirect::to("/dashboard").into_response()
}
