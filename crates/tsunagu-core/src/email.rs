//! A validated email address, normalised to lower case for lookups.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("メールアドレスを入力してください。")]
    Empty,
    #[error("メールアドレスが長すぎます（254文字以内で入力してください）。")]
    TooLong,
    #[error("メールアドレスの形式が正しくありません（例: taro@example.com）。")]
    Invalid,
}

impl Email {
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        // Japanese input methods easily produce full-width letters and "＠": fold them.
        let folded: String = input
            .chars()
            .map(|c| match c {
                '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
                '\u{3000}' => ' ',
                other => other,
            })
            .collect();
        let s = folded.trim();
        if s.is_empty() {
            return Err(EmailError::Empty);
        }
        if s.len() > 254 {
            return Err(EmailError::TooLong);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(EmailError::Invalid)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !local_ok || !domain_ok {
            return Err(EmailError::Invalid);
        }
        Ok(Email(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises() {
        assert_eq!(Email::parse(" Taro@Example.COM ").unwrap().as_str(), "taro@example.com");
        assert_eq!(Email::parse("a.b+c@mail.example.jp").unwrap().as_str(), "a.b+c@mail.example.jp");
        assert_eq!(Email::parse("ｔａｒｏ＠ｅｘａｍｐｌｅ．ｃｏｍ\u{3000}").unwrap().as_str(), "taro@example.com");
    }

    #[test]
    fn rejects_bad_shapes() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a..b@example.com",
            "a@-x.com",
            "a b@example.com",
            "あ@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} should be rejected");
        }
        assert_eq!(Email::parse("").unwrap_err(), EmailError::Empty);
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long).unwrap_err(), EmailError::TooLong);
    }
}
