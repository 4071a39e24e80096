//! Mail templates in minijinja: sandboxed (no file or network access), strict about undefined
//! variables, and fuel-limited so a template cannot loop for ever. A template is validated when
//! saved: it must compile and render against sample values of every variable it may use.

use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde::Serialize;

/// Enough for any sensible mail, far too little for a runaway loop.
const FUEL: u64 = 50_000;
const MAX_LEN: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}の{line}行目: {reason}")]
pub struct TemplateError {
    /// `件名` or `本文`.
    pub field: &'static str,
    pub line: usize,
    pub reason: String,
}

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_keep_trailing_newline(true);
    env
}

fn explain(field: &'static str, err: &minijinja::Error) -> TemplateError {
    let reason = match err.kind() {
        ErrorKind::SyntaxError => format!("書き方に誤りがあります（{}）。", err.detail().unwrap_or("構文エラー")),
        ErrorKind::UndefinedError => "使えない差し込み項目があります。項目名の綴りを確認してください。".to_string(),
        ErrorKind::OutOfFuel => "処理が多すぎます。繰り返しを減らしてください。".to_string(),
        ErrorKind::UnknownFilter | ErrorKind::UnknownFunction | ErrorKind::UnknownTest => {
            format!("使えない機能が指定されています（{}）。", err.detail().unwrap_or(""))
        }
        _ => format!("テンプレートを処理できません（{}）。", err.detail().unwrap_or("不明なエラー")),
    };
    TemplateError { field, line: err.line().unwrap_or(1), reason }
}

/// Render one field.
pub fn render_field<C: Serialize>(field: &'static str, source: &str, ctx: &C) -> Result<String, TemplateError> {
    if source.len() > MAX_LEN {
        return Err(TemplateError {
            field, line: 1, reason: format!("{MAX_LEN}文字以内で入力してください。")
        });
    }
    let env = env();
    let tmpl = env.template_from_str(source).map_err(|e| explain(field, &e))?;
    tmpl.render(ctx).map_err(|e| explain(field, &e))
}

/// Validate subject and body against sample values (the variables the template may use).
pub fn validate<C: Serialize>(subject: &str, body: &str, sample: &C) -> Result<(), TemplateError> {
    if subject.trim().is_empty() {
        return Err(TemplateError { field: "件名", line: 1, reason: "件名を入力してください。".into() });
    }
    let rendered = render_field("件名", subject, sample)?;
    if rendered.contains('\n') {
        return Err(TemplateError { field: "件名", line: 1, reason: "件名に改行は使えません。".into() });
    }
    render_field("本文", body, sample)?;
    Ok(())
}

/// Render both fields for sending.
pub fn render<C: Serialize>(subject: &str, body: &str, ctx: &C) -> Result<(String, String), TemplateError> {
    Ok((render_field("件名", subject, ctx)?.trim().to_string(), render_field("本文", body, ctx)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_japanese() {
        let (s, b) = render(
            "{{ event }}のお知らせ",
            "{{ name }} 様\nURL: {{ url }}",
            &json!({"event": "セミナー", "name": "山田", "url": "https://x/?a=1&b=2"}),
        )
        .unwrap();
        assert_eq!(s, "セミナーのお知らせ");
        assert_eq!(b, "山田 様\nURL: https://x/?a=1&b=2", "no HTML escaping in plain-text mail");
    }

    #[test]
    fn broken_templates_name_line_and_reason() {
        let ctx = json!({"name": "x"});
        let e = validate("件名", "一行目\n二行目 {{ name }\n", &ctx).unwrap_err();
        assert_eq!((e.field, e.line), ("本文", 2));
        assert!(e.reason.contains("書き方"), "{e}");
        let e = validate("件名", "a\nb\n{{ nmae }}", &ctx).unwrap_err();
        assert_eq!((e.field, e.line), ("本文", 3));
        assert!(e.reason.contains("差し込み項目"), "{e}");
        let e = validate("", "x", &ctx).unwrap_err();
        assert_eq!(e.field, "件名");
        assert!(e.to_string().starts_with("件名の1行目"));
    }

    #[test]
    fn runaway_templates_run_out_of_fuel() {
        let e = validate(
            "s",
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            &json!({}),
        )
        .unwrap_err();
        assert!(e.reason.contains("処理が多すぎます"), "{e}");
    }

    #[test]
    fn sandbox_has_no_file_access() {
        let e = validate("s", "{% include '/etc/passwd' %}", &json!({})).unwrap_err();
        assert_eq!(e.field, "本文");
    }
}
