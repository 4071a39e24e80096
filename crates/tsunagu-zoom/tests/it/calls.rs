//! Every call and error path of the client against the sandbox; every exchange is checked
//! against the official schema at the end of each test.

use std::collections::HashSet;
use tsunagu_sandbox::zoom::{Plan, SandboxUser};
use tsunagu_zoom::ZoomError;
use tsunagu_zoom::limits::ZoomPlan;
use tsunagu_zoom::model::{DeleteOptions, EventRef, RegistrantRef, RegistrantStatus, StatusAction};
use tsunagu_zoom::settings;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meeting_lifecycle_and_host_user() {
    let z = Zoom::start().await;
    let user = z.client.get_user(&z.org, OWNER).await.unwrap();
    assert_eq!(user.email, OWNER);
    assert_eq!(user.kind, 2, "licensed");

    let created = z.client.create_meeting(&z.org, OWNER, &meeting_body("入門セミナー", true)).await.unwrap();
    assert!(created.id > 9_999_999_999 / 10, "a long meeting number: {}", created.id);
    assert_eq!(created.start_time, "2030-12-05T10:30:00Z", "19:30 in Tokyo is 10:30 UTC");
    assert_eq!(created.timezone, "Asia/Tokyo");
    assert!(created.registration_enabled());
    assert!(created.registration_url.is_some(), "registration on: Zoom gives a registration URL");
    let event = EventRef::Meeting(created.id);

    let got = z.client.get_event(&z.org, event).await.unwrap();
    assert_eq!(got.topic, "入門セミナー");
    assert_eq!(got.host_email, OWNER);

    z.client.update_event(&z.org, event, OWNER, &serde_json::json!({"topic": "入門セミナー（改）"})).await.unwrap();
    assert_eq!(z.client.get_event(&z.org, event).await.unwrap().topic, "入門セミナー（改）");

    z.client.delete_event(&z.org, event, DeleteOptions::default()).await.unwrap();
    assert_eq!(z.client.get_event(&z.org, event).await.unwrap_err(), ZoomError::EventGone);
    // Deleting again (a retried job) is not an error.
    z.client.delete_event(&z.org, event, DeleteOptions::default()).await.unwrap();
    // Deleted on the Zoom side: the organizer is told to save again.
    let other = z.client.create_meeting(&z.org, OWNER, &meeting_body("別の回", false)).await.unwrap();
    z.sb.delete_on_zoom_side(other.id);
    assert_eq!(
        z.client.update_event(&z.org, EventRef::Meeting(other.id), OWNER, &serde_json::json!({"duration": 30})).await,
        Err(ZoomError::EventGone)
    );
    assert_eq!(z.client.get_user(&z.org, "nobody@example.com").await.unwrap_err(), ZoomError::UserNotFound);
    z.assert_contract();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webinar_with_confirmation_patch_and_plan_check() {
    let z = Zoom::start().await;
    let (body, patch, _notes) = settings::webinar(&schedule("ウェビナー"), &webinar_options()).unwrap();
    let w = z.client.create_webinar(&z.org, OWNER, &body).await.unwrap();
    let event = EventRef::Webinar(w.id);
    z.client.update_event(&z.org, event, OWNER, &patch).await.unwrap();
    let got = z.client.get_event(&z.org, event).await.unwrap();
    assert!(got.registration_enabled());
    assert_eq!(got.start_time, "2030-12-05T10:30:00Z");
    assert_eq!(got.settings.approval_type, 1, "manual approval: strangers wait for the host");
    let r = z.client.add_registrant(&z.org, event, &person(1), false).await.unwrap();
    assert_eq!(r.status, RegistrantStatus::Approved, "a webinar add cannot auto-approve: Tsunagu approves");
    let listed = z.client.list_registrants(&z.org, event, RegistrantStatus::Approved).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(r.join_url, listed[0].join_url, "the join URL is the approved registrant's");
    assert!(r.join_url.is_some());
    // A stranger who found Zoom's registration page (a plain add, as Zoom's page makes) waits.
    let stranger = z.raw_add(event, "stranger@example.com").await;
    assert_eq!(stranger["join_url"], serde_json::Value::Null, "{stranger}");
    assert_eq!(z.client.list_registrants(&z.org, event, RegistrantStatus::Pending).await.unwrap().len(), 1);
    // A job that may have reached Zoom before, finding the person still pending, approves them.
    let pending = z.client.add_registrant(&z.org, event, &pending_person("stranger@example.com"), true).await.unwrap();
    assert!(pending.already_registered && pending.join_url.is_some());
    assert_eq!(z.sb.add_calls_for("stranger@example.com"), 1, "approved, not added again");
    z.client.delete_event(&z.org, event, DeleteOptions { notify_registrants: true }).await.unwrap();

    // A host without a webinar licence.
    z.sb.add_user(SandboxUser {
        account_id: ACCOUNT.into(),
        id: "basic-user".into(),
        email: "basic@example.com".into(),
        first_name: "B".into(),
        last_name: "U".into(),
        licensed: true,
        webinar_license: false,
    });
    assert_eq!(
        z.client.create_webinar(&z.org, "basic@example.com", &body).await.unwrap_err(),
        ZoomError::WebinarPlanMissing
    );
    z.assert_contract();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrants_add_list_status_delete_and_questions() {
    let z = Zoom::start().await;
    let m = z.client.create_meeting(&z.org, OWNER, &meeting_body("登録テスト", true)).await.unwrap();
    let event = EventRef::Meeting(m.id);
    // Manual approval: a stranger who found Zoom's registration page waits for the host, while
    // Tsunagu's own adds (with auto_approve) are approved at once.
    assert_eq!(m.settings.approval_type, 1);
    let stranger = z.raw_add(event, "stranger@example.com").await;
    assert_eq!(stranger["join_url"], serde_json::Value::Null, "{stranger}");
    let mut urls = HashSet::new();
    for i in 0..320 {
        let r = z.client.add_registrant(&z.org, event, &person(i), false).await.unwrap();
        assert!(!r.already_registered);
        assert_eq!(r.status, RegistrantStatus::Approved);
        assert!(urls.insert(r.join_url.expect("approved registrants get a join URL")), "join URLs are personal");
    }
    // More than one page of 300.
    let all = z.client.list_registrants(&z.org, event, RegistrantStatus::Approved).await.unwrap();
    assert_eq!(all.len(), 320, "the stranger is not among the approved");
    assert_eq!(all.iter().map(|r| r.email.clone()).collect::<HashSet<_>>().len(), 320);

    // A job that may have reached Zoom before looks the person up instead of adding again.
    let again = z.client.add_registrant(&z.org, event, &person(7), true).await.unwrap();
    assert!(again.already_registered);
    assert_eq!(z.sb.add_calls_for("person7@example.com"), 1, "no second POST");
    let found = z.client.find_registrant(&z.org, event, "PERSON7@example.com").await.unwrap().unwrap();
    assert_eq!(found.id, again.registrant_id);

    // Cancel: Zoom moves the registrant to denied and refuses the email afterwards (observed).
    let cancel = [RegistrantRef { id: found.id.clone(), email: found.email.clone() }];
    z.client.set_registrant_status(&z.org, event, StatusAction::Cancel, &cancel).await.unwrap();
    assert_eq!(z.client.list_registrants(&z.org, event, RegistrantStatus::Denied).await.unwrap().len(), 1);
    assert_eq!(z.client.add_registrant(&z.org, event, &person(7), true).await, Err(ZoomError::RegistrantDenied));
    // Approve brings them back.
    z.client.set_registrant_status(&z.org, event, StatusAction::Approve, &cancel).await.unwrap();
    assert!(z.client.add_registrant(&z.org, event, &person(7), true).await.unwrap().already_registered);

    // Delete: the email may register again.
    let eight = z.client.find_registrant(&z.org, event, "person8@example.com").await.unwrap().unwrap();
    z.client.delete_registrant(&z.org, event, &eight.id).await.unwrap();
    assert!(z.client.find_registrant(&z.org, event, "person8@example.com").await.unwrap().is_none());
    let back = z.client.add_registrant(&z.org, event, &person(8), true).await.unwrap();
    assert!(!back.already_registered);

    // Questions set in Zoom that Tsunagu cannot answer are reported, and they block adds.
    assert!(z.client.registration_questions(&z.org, event).await.unwrap().blocking().is_empty());
    z.sb.set_required_questions(m.id, vec!["会社名".into()]);
    assert_eq!(z.client.registration_questions(&z.org, event).await.unwrap().blocking(), vec!["会社名"]);
    assert_eq!(
        z.client.add_registrant(&z.org, event, &person(999), false).await,
        Err(ZoomError::QuestionsBlockRegistration)
    );
    z.assert_contract();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_refusals_map_to_their_errors() {
    let z = Zoom::start().await;
    z.sb.add_user(SandboxUser {
        account_id: ACCOUNT.into(),
        id: "alt-host-id".into(),
        email: ALT_HOST.into(),
        first_name: "Alt".into(),
        last_name: "Host".into(),
        licensed: true,
        webinar_license: false,
    });
    let m = z.client.create_meeting(&z.org, OWNER, &meeting_body("代替ホストあり", true)).await.unwrap();
    let event = EventRef::Meeting(m.id);
    z.client
        .update_event(&z.org, event, OWNER, &serde_json::json!({"settings": {"alternative_hosts": ALT_HOST}}))
        .await
        .unwrap();
    let mut host = person(1);
    host.email = "Owner@Example.com".into();
    assert_eq!(z.client.add_registrant(&z.org, event, &host, false).await, Err(ZoomError::HostCannotRegister));
    let mut alt = person(2);
    alt.email = ALT_HOST.into();
    assert_eq!(z.client.add_registrant(&z.org, event, &alt, false).await, Err(ZoomError::HostCannotRegister));
    let got = z.client.get_event(&z.org, event).await.unwrap();
    assert_eq!(got.host_emails(), vec![OWNER.to_string(), ALT_HOST.to_string()], "the app can filter hosts out first");

    let closed = z.client.create_meeting(&z.org, OWNER, &meeting_body("登録なし", false)).await.unwrap();
    assert_eq!(
        z.client.add_registrant(&z.org, EventRef::Meeting(closed.id), &person(3), false).await,
        Err(ZoomError::RegistrationNotEnabled)
    );
    let (wbody, _, _) = settings::webinar(
        &schedule("登録なしウェビナー"),
        &tsunagu_zoom::settings::WebinarOptions { registration: false, ..webinar_options() },
    )
    .unwrap();
    let w = z.client.create_webinar(&z.org, OWNER, &wbody).await.unwrap();
    assert_eq!(
        z.client.add_registrant(&z.org, EventRef::Webinar(w.id), &person(3), false).await,
        Err(ZoomError::RegistrationNotEnabled)
    );

    z.sb.set_capacity(m.id, 1);
    z.client.add_registrant(&z.org, event, &person(4), false).await.unwrap();
    assert_eq!(z.client.add_registrant(&z.org, event, &person(5), false).await, Err(ZoomError::Full));
    z.assert_contract();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_allowances_are_counted_and_zooms_daily_answers_understood() {
    let z = Zoom::start().await;
    let m = z.client.create_meeting(&z.org, OWNER, &meeting_body("日次上限", true)).await.unwrap();
    let event = EventRef::Meeting(m.id);
    // Three adds per email per day, counted by the client without asking Zoom a fourth time.
    let p = person(1);
    for _ in 0..3 {
        z.client.add_registrant(&z.org, event, &p, false).await.unwrap();
    }
    assert_eq!(z.sb.add_calls_for(&p.email), 3);
    let refused = z.client.add_registrant(&z.org, event, &p, false).await.unwrap_err();
    assert_eq!(refused, ZoomError::RegistrantDailyLimit);
    assert_eq!(z.sb.add_calls_for(&p.email), 3, "the fourth was not sent");
    // Zoom's own answer, when another process spent the allowance: a second client.
    let other = tsunagu_zoom::ZoomClient::new(z.client.config().clone());
    assert_eq!(other.add_registrant(&z.org, event, &p, false).await, Err(ZoomError::RegistrantDailyLimit));
    z.next_day();
    assert!(z.client.add_registrant(&z.org, event, &p, false).await.is_ok(), "allowed again after 00:00 UTC");

    // 100 creates+updates per host per day (the create was yesterday): 100 updates, then the
    // client refuses the next.
    for i in 0..100 {
        z.client.update_event(&z.org, event, OWNER, &serde_json::json!({"agenda": format!("v{i}")})).await.unwrap();
    }
    let Err(ZoomError::DailyLimit { retry_after: Some(at) }) =
        z.client.update_event(&z.org, event, OWNER, &serde_json::json!({"agenda": "one too many"})).await
    else {
        panic!("the client refuses the 101st create/update of the day");
    };
    assert!(at.ends_with("T00:00:00Z"));
    // Zoom's answer when the allowance was spent elsewhere, with its Retry-After.
    let err = other.update_event(&z.org, event, OWNER, &serde_json::json!({"agenda": "x"})).await.unwrap_err();
    assert!(matches!(err, ZoomError::DailyLimit { retry_after: Some(_) }), "{err:?}");
    z.assert_contract();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_scopes_and_per_second_limits() {
    let z = Zoom::start().await;
    // A token lacking the scope of an endpoint. Tokens keep the scopes they were minted
    // with, so a new organizer key (a new token) sees the change.
    let granted: Vec<String> = all_scopes().into_iter().filter(|s| s != "meeting:write:meeting:admin").collect();
    z.sb.set_scopes("cid-1", granted);
    let mut narrow = z.org.clone();
    narrow.key = "organizer-narrow".into();
    let err = z.client.create_meeting(&narrow, OWNER, &meeting_body("x", false)).await.unwrap_err();
    let ZoomError::MissingScope { detail } = err else { panic!("missing scope expected, got {err:?}") };
    assert!(detail.contains("meeting:write:meeting:admin"), "{detail}");
    z.sb.set_scopes("cid-1", all_scopes());

    // An invalidated token (124) is renewed once and the call goes through.
    let before = z.sb.token_requests();
    z.sb.revoke_tokens();
    z.client.get_user(&z.org, OWNER).await.unwrap();
    assert_eq!(z.sb.token_requests(), before + 1);

    // Wrong credentials.
    let mut bad = z.org.clone();
    bad.key = "someone-else".into();
    bad.auth = tsunagu_zoom::Auth::S2s(tsunagu_zoom::auth::S2sCredentials { client_secret: "wrong".into(), ..creds() });
    assert_eq!(z.client.get_user(&bad, OWNER).await.unwrap_err(), ZoomError::BadCredentials);

    // A client that believes in a faster plan than the account has meets Zoom's per-second
    // 429, waits for the reset and still completes every call.
    z.sb.set_plan(ACCOUNT, Plan::Free);
    let mut fast = z.org.clone();
    fast.plan = ZoomPlan::BusinessPlus;
    let m = z.client.create_meeting(&fast, OWNER, &meeting_body("速すぎ", true)).await.unwrap();
    let mut tasks = Vec::new();
    let client = z.client.clone();
    for i in 0..12 {
        let (client, org) = (client.clone(), fast.clone());
        tasks.push(tokio::spawn(async move {
            client.add_registrant(&org, EventRef::Meeting(m.id), &person(i), false).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(z.sb.stats().qps_429 > 0, "the sandbox did refuse some");
    assert_eq!(z.sb.registrants(m.id).len(), 12, "and every add went through once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_timeouts_are_retried_only_where_safe() {
    let z = Zoom::start_with(|c| c.timeout = std::time::Duration::from_millis(300)).await;
    let m = z.client.create_meeting(&z.org, OWNER, &meeting_body("障害", true)).await.unwrap();
    let event = EventRef::Meeting(m.id);

    // Reads and updates are safe to repeat: half of all answers failing still lets them through.
    z.sb.set_faults(tsunagu_sandbox::zoom::Faults { rate_500: 0.5, seed: 3, ..Default::default() });
    for i in 0..10 {
        z.client.get_event(&z.org, event).await.unwrap();
        z.client.update_event(&z.org, event, OWNER, &serde_json::json!({"agenda": format!("{i}")})).await.unwrap();
    }
    assert!(z.sb.stats().injected_500_before + z.sb.stats().injected_500_after > 0);

    // A create is not: Zoom has no idempotency key, so a timeout is reported, never repeated.
    z.sb.set_faults(tsunagu_sandbox::zoom::Faults {
        rate_timeout: 1.0,
        timeout_hold: std::time::Duration::from_millis(800),
        seed: 4,
        ..Default::default()
    });
    z.sb.clear_exchanges();
    let err = z.client.create_meeting(&z.org, OWNER, &meeting_body("一度だけ", false)).await.unwrap_err();
    assert_eq!(err, ZoomError::Timeout);
    assert_eq!(err.retry(), tsunagu_zoom::error::Retry::BackoffIfSafe);
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    let creates = z.sb.exchanges().iter().filter(|e| e.method == "POST" && e.path.ends_with("/meetings")).count();
    assert_eq!(creates, 1, "sent once");
    z.sb.set_faults(tsunagu_sandbox::zoom::Faults::default());

    // An add whose answer was lost (processed, then timed out) is found by the look-up, not
    // sent again.
    z.sb.set_faults(tsunagu_sandbox::zoom::Faults {
        rate_timeout: 1.0,
        timeout_hold: std::time::Duration::from_millis(800),
        seed: 5,
        ..Default::default()
    });
    let p = person(42);
    let adding = {
        let (client, org) = (z.client.clone(), z.org.clone());
        let p = p.clone();
        tokio::spawn(async move { client.add_registrant(&org, event, &p, false).await })
    };
    // Let the first POST time out, then heal the network so the look-up can answer.
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    z.sb.set_faults(tsunagu_sandbox::zoom::Faults::default());
    let r = adding.await.unwrap().unwrap();
    assert!(r.already_registered, "found by the look-up after the lost answer");
    assert_eq!(z.sb.add_calls_for(&p.email), 1, "one POST only");
    assert_eq!(z.sb.registrants(m.id).iter().filter(|x| x.email == p.email).count(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    z.assert_contract();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passcodes_travel_in_join_urls_when_the_account_embeds_them() {
    let z = Zoom::start().await;
    // Without a passcode requirement Tsunagu asks for none.
    let plain = z.client.create_meeting(&z.org, OWNER, &meeting_body("パスコードなし", true)).await.unwrap();
    assert!(plain.password.is_empty() && !plain.join_url.contains("pwd="));
    // An account that requires (and locks) passcodes and embeds them in links.
    z.sb.set_require_passcode(ACCOUNT, true);
    z.sb.set_embed_passcode(ACCOUNT, true);
    let m = z.client.create_meeting(&z.org, OWNER, &meeting_body("パスコードあり", true)).await.unwrap();
    assert!(!m.password.is_empty(), "the passcode the app mails with the URL");
    assert!(m.join_url.contains("pwd="), "{}", m.join_url);
    let a = z.client.add_registrant(&z.org, EventRef::Meeting(m.id), &person(1), false).await.unwrap();
    let b = z.client.add_registrant(&z.org, EventRef::Meeting(m.id), &person(2), false).await.unwrap();
    let (a, b) = (a.join_url.unwrap(), b.join_url.unwrap());
    assert!(a.contains("pwd=") && b.contains("pwd="));
    assert_ne!(a, b, "each registrant has their own URL");
    z.assert_contract();
}
