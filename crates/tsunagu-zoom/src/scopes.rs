//! Scopes: the 11 the manual (000) tells organizers to add, plus those that cancellation and
//! registrant look-up need (NOTES §1.4). A token's granted scopes come as one space-separated
//! string in the token response.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    pub name: &'static str,
    /// What Tsunagu does with it, in Japanese, for the organizer.
    pub purpose: &'static str,
    /// True for the manual's 11; false for those Tsunagu needs beyond the manual.
    pub in_manual: bool,
}

const fn s(name: &'static str, purpose: &'static str, in_manual: bool) -> Scope {
    Scope { name, purpose, in_manual }
}

pub const REQUIRED: &[Scope] = &[
    s("meeting:read:meeting:admin", "ミーティング情報の取得", true),
    s("meeting:update:meeting:admin", "ミーティングの更新", true),
    s("meeting:write:registrant:admin", "ミーティングへの参加者登録", true),
    s("meeting:delete:meeting:admin", "ミーティングの削除", true),
    s("meeting:write:meeting:admin", "ミーティングの作成", true),
    s("user:read:user:admin", "ホストのメールアドレスの確認", true),
    s("webinar:read:webinar:admin", "ウェビナー情報の取得", true),
    s("webinar:delete:webinar:admin", "ウェビナーの削除", true),
    s("webinar:write:webinar:admin", "ウェビナーの作成", true),
    s("webinar:update:webinar:admin", "ウェビナーの更新", true),
    s("webinar:write:registrant:admin", "ウェビナーへの参加者登録", true),
    s("meeting:read:list_registrants:admin", "登録済み参加者の確認（二重登録の防止）", false),
    s("meeting:update:registrant_status:admin", "キャンセル時の参加者登録の取り消し", false),
    s("meeting:delete:registrant:admin", "キャンセル時の参加者登録の削除", false),
    s("meeting:read:list_registration_questions:admin", "登録の妨げになる質問設定の確認", false),
    s("webinar:read:list_registrants:admin", "登録済み参加者の確認（二重登録の防止）", false),
    s("webinar:update:registrant_status:admin", "ウェビナー参加者の承認と、キャンセル時の参加者登録の取り消し", false),
    s("webinar:delete:registrant:admin", "キャンセル時の参加者登録の削除", false),
];

/// A scope the credentials lack, with the sentence the organizer reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingScope {
    pub scope: &'static Scope,
    pub message: String,
}

/// The required scopes absent from `granted` (the token response's `scope` string).
pub fn missing(granted: &str) -> Vec<MissingScope> {
    let have: Vec<&str> = granted.split_whitespace().collect();
    REQUIRED
        .iter()
        .filter(|s| !have.contains(&s.name))
        .map(|scope| MissingScope {
            scope,
            message: format!(
                "スコープ「{}」がありません（{}に必要です）。Zoom Marketplace の［Manage］→ 作成したアプリ →［Scopes］→［Add Scopes］で「{}」を検索してチェックを入れ、［Done］を押してください。追加したスコープが反映されるまで数分かかることがあります。",
                scope.name, scope.purpose, scope.name
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manuals_eleven_are_all_there() {
        assert_eq!(REQUIRED.iter().filter(|s| s.in_manual).count(), 11);
        let names: std::collections::HashSet<_> = REQUIRED.iter().map(|s| s.name).collect();
        assert_eq!(names.len(), REQUIRED.len(), "no duplicates");
    }

    #[test]
    fn reports_what_is_missing_with_directions() {
        let all = REQUIRED.iter().map(|s| s.name).collect::<Vec<_>>().join(" ");
        assert!(missing(&all).is_empty());
        let without =
            all.replace("webinar:write:registrant:admin", "").replace("meeting:read:list_registrants:admin", "");
        let m = missing(&without);
        let names: Vec<_> = m.iter().map(|m| m.scope.name).collect();
        assert_eq!(names, vec!["webinar:write:registrant:admin", "meeting:read:list_registrants:admin"]);
        assert!(m[0].message.contains("Add Scopes") && m[0].message.contains("ウェビナーへの参加者登録"));
        assert_eq!(missing("").len(), REQUIRED.len());
    }
}
