//! What every console page shares: the account, navigation, CSRF token and flash message.

use tsunagu_store::accounts::Account;

use super::context::{Flash, RequestContext};
use super::session::Auth;

pub struct NavItem {
    pub key: &'static str,
    pub href: &'static str,
    pub label: &'static str,
    pub group: &'static str,
    pub group_start: bool,
}

/// (key, href, label, group). Screen names follow the manuals.
const NAV: &[(&str, &str, &str, &str)] = &[
    ("home", "/home", "ホーム", ""),
    ("events", "/events", "申込状況サマリー", "イベント（Zoom）"),
    ("basic", "/settings/basic", "基本設定", "イベント（Zoom）"),
    ("payments", "/settings/payments", "基本設定 > 決済（Stripe）", "イベント（Zoom）"),
    ("legal", "/settings/legal", "特定商取引法に基づく表記", "イベント（Zoom）"),
    ("mail-templates", "/mail-templates", "自動配信メール", "イベント（Zoom）"),
    ("courses", "/courses", "コース", "オンライン講座（LINE）"),
    ("media", "/courses/media", "ステップ配信のメディア", "オンライン講座（LINE）"),
    ("line", "/settings/line", "設定 > 公式LINE連携", "オンライン講座（LINE）"),
    ("mails", "/mails", "送信済みメール", "アカウント"),
    ("password", "/account/password", "パスワード変更", "アカウント"),
];

const ADMIN_NAV: &[(&str, &str, &str, &str)] = &[
    ("admin-accounts", "/admin/accounts", "アカウントとプラン", "管理"),
    ("admin-jobs", "/admin/jobs", "失敗したジョブ", "管理"),
];

pub struct Chrome {
    pub title: String,
    pub nav: &'static str,
    pub csrf: String,
    pub flash: Option<Flash>,
    pub account: Option<Account>,
}

impl Chrome {
    pub fn public(ctx: &RequestContext, title: &str) -> Chrome {
        Chrome { title: title.into(), nav: "", csrf: ctx.csrf_token.clone(), flash: ctx.flash.clone(), account: None }
    }

    pub fn console(auth: &Auth, nav: &'static str, title: &str) -> Chrome {
        Chrome {
            title: title.into(),
            nav,
            csrf: auth.ctx.csrf_token.clone(),
            flash: auth.ctx.flash.clone(),
            account: Some(auth.account.clone()),
        }
    }

    pub fn nav_items(&self) -> Vec<NavItem> {
        let admin = self.account.as_ref().is_some_and(|a| a.role == tsunagu_core::Role::Admin);
        let extra: &[_] = if admin { ADMIN_NAV } else { &[] };
        let mut last_group = "";
        NAV.iter()
            .chain(extra.iter())
            .map(|&(key, href, label, group)| {
                let group_start = !group.is_empty() && group != last_group;
                last_group = group;
                NavItem { key, href, label, group, group_start }
            })
            .collect()
    }
}
