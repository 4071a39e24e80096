//! Mails the platform itself sends to account holders. They go through the same template
//! engine as organizers' templates, so they are validated by the same rules in tests.

use serde::Serialize;

use super::template::{TemplateError, render};

pub struct PlatformTemplate {
    pub subject: &'static str,
    pub body: &'static str,
}

pub const WELCOME: PlatformTemplate = PlatformTemplate {
    subject: "【Tsunagu】アカウントを作成しました",
    body: "{{ name }} 様\n\nTsunagu のアカウントを作成しました。\n\nログイン用メールアドレス: {{ email }}\nログインページ: {{ login_url }}\n\nお心当たりのない場合は、このメールを破棄してください。\n\n-- \nTsunagu\n",
};

pub const PASSWORD_CHANGED: PlatformTemplate = PlatformTemplate {
    subject: "【Tsunagu】パスワードが変更されました",
    body: "{{ name }} 様\n\n{{ changed_at }} に Tsunagu のパスワードが変更されました。\n他の端末でのログインはすべて終了しています。\n\nお心当たりのない場合は、すぐに管理者へご連絡ください。\n\n-- \nTsunagu\n",
};

impl PlatformTemplate {
    pub fn render<C: Serialize>(&self, ctx: &C) -> Result<(String, String), TemplateError> {
        render(self.subject, self.body, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_templates_render() {
        let (s, b) = WELCOME
            .render(&serde_json::json!({"name": "山田", "email": "a@example.com", "login_url": "http://x/login"}))
            .unwrap();
        assert!(s.contains("アカウントを作成しました") && b.contains("山田 様") && b.contains("http://x/login"));
        let (_, b) = PASSWORD_CHANGED
            .render(&serde_json::json!({"name": "山田", "changed_at": "2026年11月23日 20:31"}))
            .unwrap();
        assert!(b.contains("2026年11月23日 20:31"));
    }
}
