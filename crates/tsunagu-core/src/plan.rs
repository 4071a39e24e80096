//! Plans and the one function every feature asks: may this plan use that feature?

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    Free,
    Standard,
    Business,
    Special,
}

/// Features gated by plan. Later issues add variants here, never checks elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Zoom-linked events (every plan).
    ZoomEvents,
    /// 公式LINE連携 and LINE step delivery: ビジネス and スペシャル only (manual 004).
    LineLink,
}

impl Plan {
    pub const ALL: [Plan; 4] = [Plan::Free, Plan::Standard, Plan::Business, Plan::Special];

    /// Stable code stored in the database and used on the CLI.
    pub fn code(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Standard => "standard",
            Plan::Business => "business",
            Plan::Special => "special",
        }
    }

    pub fn from_code(code: &str) -> Option<Plan> {
        Plan::ALL.into_iter().find(|p| p.code() == code)
    }

    /// The name people see.
    pub fn label(self) -> &'static str {
        match self {
            Plan::Free => "フリー",
            Plan::Standard => "スタンダード",
            Plan::Business => "ビジネス",
            Plan::Special => "スペシャル",
        }
    }

    /// Accepts either the code or the Japanese label.
    pub fn parse(input: &str) -> Option<Plan> {
        let s = input.trim();
        Plan::ALL.into_iter().find(|p| p.code().eq_ignore_ascii_case(s) || p.label() == s)
    }

    pub fn allows(self, feature: Feature) -> bool {
        match feature {
            Feature::ZoomEvents => true,
            Feature::LineLink => matches!(self, Plan::Business | Plan::Special),
        }
    }
}

impl Feature {
    /// Japanese sentence shown when the plan does not include the feature.
    pub fn upgrade_message(self) -> &'static str {
        match self {
            Feature::ZoomEvents => "この機能はご利用のプランでは使えません。",
            Feature::LineLink => {
                "公式LINE連携はビジネスプランとスペシャルプランでご利用いただけます。プランの変更は管理者にお問い合わせください。"
            }
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_needs_business_or_special() {
        assert!(!Plan::Free.allows(Feature::LineLink));
        assert!(!Plan::Standard.allows(Feature::LineLink));
        assert!(Plan::Business.allows(Feature::LineLink));
        assert!(Plan::Special.allows(Feature::LineLink));
        assert!(Plan::ALL.iter().all(|p| p.allows(Feature::ZoomEvents)));
    }

    #[test]
    fn codes_and_labels_round_trip() {
        for p in Plan::ALL {
            assert_eq!(Plan::from_code(p.code()), Some(p));
            assert_eq!(Plan::parse(p.label()), Some(p));
            assert_eq!(Plan::parse(&p.code().to_uppercase()), Some(p));
        }
        assert_eq!(Plan::parse("gold"), None);
    }
}
