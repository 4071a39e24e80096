//! LINE's official OpenAPI documents against what the app sent the LINE sandbox and what the
//! sandbox answered and sent back (webhooks). LINE Login's browser-facing endpoints are in none
//! of the documents (`tsunagu-line`'s login tests check them by behaviour), and the sandbox's
//! own pages are not LINE's: both are left out here.

use std::sync::LazyLock;

use serde_json::Value;
use tsunagu_contract::{Body, Exchange, Spec};
use tsunagu_sandbox::line::LineSandbox;

static LINE: LazyLock<Spec> = LazyLock::new(|| {
    let spec: Value =
        serde_json::from_str(include_str!("../../../tsunagu-line/tests/spec/line-openapi.json")).expect("JSON");
    Spec::new(spec["documents"].as_object().expect("documents").iter().map(|(n, d)| (n.clone(), d.clone())).collect())
});

fn error_shape(ex: &Exchange<'_>) -> Option<String> {
    let body: Value = serde_json::from_str(ex.response_body).ok()?;
    let token = ex.path.starts_with("/oauth2/") || ex.path.starts_with("/v2/oauth/");
    let component = "ErrorResponse";
    let doc = if token { "channel-access-token.yml" } else { "messaging-api.yml" };
    let errors = LINE.component_errors(doc, component, &body);
    (!errors.is_empty()).then(|| format!("not LINE's {component}: {errors:?}"))
}

fn check(ex: &Exchange<'_>) -> Vec<String> {
    if ex.path == "/callback" {
        let body: Value = serde_json::from_str(ex.request_body).unwrap_or_default();
        return LINE.errors("callback", Body::Request, &body).unwrap_or_default();
    }
    LINE.check(ex, &error_shape)
}

/// LINE Login's browser and user endpoints, and the sandbox's pages.
fn outside_the_documents(path: &str, request_body: &str) -> bool {
    path.starts_with("/oauth2/v2.1/authorize")
        || (path.starts_with("/oauth2/v2.1/token") && request_body.contains("authorization_code"))
        || path.starts_with("/v2/profile")
        || path.starts_with("/friendship/")
        || path.starts_with("/chat/")
        || path.starts_with("/users/")
        || path == "/"
}

/// Every recorded exchange the documents describe validates (at least one is required).
pub fn assert_line_exchanges(sb: &LineSandbox) {
    let log = sb.exchanges();
    let checked = tsunagu_contract::assert_all_with(
        log.iter().filter(|e| !outside_the_documents(&e.path, &e.request_body)).map(|e| Exchange {
            method: &e.method,
            path: &e.path,
            status: e.status,
            request_body: &e.request_body,
            response_body: &e.response_body,
        }),
        check,
    );
    assert!(checked > 0, "no LINE exchange was recorded");
}
