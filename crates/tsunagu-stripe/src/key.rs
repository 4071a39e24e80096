//! The organizer's Stripe key: a secret key (`sk_test_…`, `sk_live_…`) or a restricted key
//! (`rk_test_…`, `rk_live_…`). It never appears whole in `Debug` output or messages.

use std::fmt;

/// Test mode or live mode, as the key's prefix says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Test,
    Live,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Live => "live",
        }
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            Mode::Test => "テストモード",
            Mode::Live => "本番モード",
        }
    }

    /// Stripe's requests per second in this mode (NOTES §1: 25 in test mode, 100 read and 100
    /// write in live mode).
    pub fn rate_per_second(self) -> u32 {
        match self {
            Mode::Test => 25,
            Mode::Live => 100,
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    secret: String,
    mode: Mode,
    restricted: bool,
}

/// Why a pasted key was refused before asking Stripe, in Japanese for the organizer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyFormatError(pub String);

impl ApiKey {
    pub fn parse(s: &str) -> Result<ApiKey, KeyFormatError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(KeyFormatError("Stripeのシークレットキーを入力してください。".into()));
        }
        if s.starts_with("pk_") {
            return Err(KeyFormatError(
                "これは公開可能キー（pk_…）です。Stripeダッシュボードの［開発者］→［APIキー］にある、シークレットキー（sk_…）か制限付きキー（rk_…）を貼り付けてください。"
                    .into(),
            ));
        }
        if s.starts_with("whsec_") {
            return Err(KeyFormatError(
                "これはWebhookの署名シークレット（whsec_…）です。Webhookは Tsunagu が作成するので、シークレットキー（sk_…）か制限付きキー（rk_…）を貼り付けてください。"
                    .into(),
            ));
        }
        let (restricted, mode, rest) = if let Some(r) = s.strip_prefix("sk_test_") {
            (false, Mode::Test, r)
        } else if let Some(r) = s.strip_prefix("sk_live_") {
            (false, Mode::Live, r)
        } else if let Some(r) = s.strip_prefix("rk_test_") {
            (true, Mode::Test, r)
        } else if let Some(r) = s.strip_prefix("rk_live_") {
            (true, Mode::Live, r)
        } else {
            return Err(KeyFormatError(
                "Stripeのキーは sk_test_ / sk_live_ / rk_test_ / rk_live_ で始まります。コピーした内容を確かめてください。".into(),
            ));
        };
        if rest.len() < 8 || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(KeyFormatError(
                "キーの形式が正しくありません。途中で切れていないか、空白や改行が入っていないか確かめてください。"
                    .into(),
            ));
        }
        Ok(ApiKey { secret: s.to_string(), mode, restricted })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn restricted(&self) -> bool {
        self.restricted
    }

    /// The whole key, for the `Authorization` header and for sealing. Nothing else.
    pub fn expose(&self) -> &str {
        &self.secret
    }

    /// The prefix and the last four characters (`sk_test_…Wx3z`), as Stripe's dashboard shows
    /// keys.
    pub fn masked(&self) -> String {
        let prefix = &self.secret[..8];
        let tail: String = self.secret.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
        format!("{prefix}…{tail}")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_told_apart_and_never_printed_whole() {
        let k = ApiKey::parse(" sk_test_51Habcdefghijklmnop\n").unwrap();
        assert_eq!((k.mode(), k.restricted()), (Mode::Test, false));
        assert_eq!(k.masked(), "sk_test_…mnop");
        assert!(!format!("{k:?}").contains("abcdefgh"));
        let r = ApiKey::parse("rk_live_51Habcdefghijklmnop").unwrap();
        assert_eq!((r.mode(), r.restricted()), (Mode::Live, true));
        for bad in ["", "pk_test_abcdefghijkl", "whsec_abcdefghijkl", "sk_test_abc", "sk_test_abc def ghijk", "xyz"] {
            let e = ApiKey::parse(bad).unwrap_err();
            assert!(e.0.contains("キー") || e.0.contains("Stripe"), "{bad}: {e}");
        }
        assert!(ApiKey::parse("pk_test_abcdefghijkl").unwrap_err().0.contains("公開可能キー"));
    }
}
