//! Mail templates in minijinja: sandboxed (no file or network access), strict about undefined
//! variables, fuel-limited so a template cannot loop for ever, and bounded in memory. A template
//! is validated when saved: it must compile and render against sample values of every variable
//! it may use.
//!
//! Fuel counts instructions, not bytes: `"x" * 100000000` is one instruction, and `a ~ a` in a
//! loop doubles a string per step. So the language is cut down to what mails need: no `+`, `*`
//! or `~` (they build strings and lists in memory before anything is written), no capturing
//! blocks (`{% set %}…{% endset %}`, `{% filter %}`: output kept in memory and reused), only a
//! few filters, no functions. The operators are refused on the template's tokens, before it is
//! compiled (minijinja folds constant expressions while compiling, so `"x" * 100000000` would
//! be built then); the rest on the compiled instructions, before it runs. What a render can
//! still hold is then bounded by the template's own length, the context, the output (at most
//! [`MAX_OUTPUT`] bytes, refused beyond) and what filters make (at most [`MAX_OUTPUT`] bytes in
//! all).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use minijinja::machinery::{self, Instruction, Instructions};
use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde::Serialize;

/// Enough for any sensible mail, far too little for a runaway loop.
const FUEL: u64 = 50_000;
/// Characters of one template field.
const MAX_LEN: usize = 20_000;
/// Most bytes one rendered field may have: three times what the longest template (20,000
/// Japanese characters, 60 KB) takes, for the values put in; more is no mail anyone reads.
pub const MAX_OUTPUT: usize = 200_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}の{line}行目: {reason}")]
pub struct TemplateError {
    /// `件名` or `本文`.
    pub field: &'static str,
    pub line: usize,
    pub reason: String,
}

/// What one render has produced so far, outside the output itself.
#[derive(Default)]
struct Budget {
    /// Bytes of strings made by filters.
    filtered: AtomicUsize,
    /// A limit was hit (the output or the filters'): the template makes too much text.
    exceeded: AtomicBool,
}

impl Budget {
    fn charge(&self, bytes: usize) -> Result<(), minijinja::Error> {
        if self.filtered.fetch_add(bytes, Ordering::Relaxed) + bytes > MAX_OUTPUT {
            self.exceeded.store(true, Ordering::Relaxed);
            return Err(minijinja::Error::new(ErrorKind::InvalidOperation, "filters made too much text"));
        }
        Ok(())
    }
}

type TextFilter = fn(&str) -> String;

fn env(budget: &Arc<Budget>) -> Environment<'static> {
    // Empty: no functions (`range`, `namespace`, …) and only the filters and tests below.
    let mut env = Environment::empty();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_keep_trailing_newline(true);
    // These hand back values the template already holds.
    env.add_filter("default", minijinja::filters::default);
    env.add_filter("d", minijinja::filters::default);
    env.add_filter("length", minijinja::filters::length);
    env.add_filter("count", minijinja::filters::length);
    env.add_filter("first", minijinja::filters::first);
    env.add_filter("last", minijinja::filters::last);
    // These make new strings: charged to the render's budget.
    let text_filters: [(&str, TextFilter); 3] =
        [("upper", str::to_uppercase), ("lower", str::to_lowercase), ("trim", |s| s.trim().to_string())];
    for (name, f) in text_filters {
        let budget = budget.clone();
        env.add_filter(name, move |s: Cow<'_, str>| -> Result<String, minijinja::Error> {
            let out = f(&s);
            budget.charge(out.len())?;
            Ok(out)
        });
    }
    {
        use minijinja::tests::*;
        env.add_test("defined", is_defined);
        env.add_test("undefined", is_undefined);
        env.add_test("none", is_none);
        env.add_test("true", is_true);
        env.add_test("false", is_false);
        env.add_test("number", is_number);
        env.add_test("string", is_string);
        env.add_test("sequence", is_sequence);
        env.add_test("mapping", is_mapping);
        env.add_test("even", is_even);
        env.add_test("odd", is_odd);
        env.add_test("eq", is_eq);
        env.add_test("ne", is_ne);
        env.add_test("in", is_in);
        env.add_test("startingwith", is_startingwith);
        env.add_test("endingwith", is_endingwith);
    }
    env
}

const NO_OPERATORS: &str = "「+」「*」「~」による計算や文字の連結・繰り返しは使えません（メールが大きくなりすぎるのを防ぐためです）。差し込み項目や文字はそのまま並べて書いてください。";
const NO_CAPTURE: &str =
    "「{% set %}〜{% endset %}」や「{% filter %}」のブロックは使えません。差し込み項目や文字をそのまま書いてください。";
const NOT_ALLOWED: &str = "メールのテンプレートでは使えない書き方が含まれています（繰り返しの中での再帰など）。差し込み項目・if・for だけで書いてください。";

/// Why an instruction is refused; `None` for the ones that cannot make a render grow beyond
/// the template, the context and the output. Anything not listed here (including instructions
/// of later minijinja versions) is refused.
fn refused(instruction: &Instruction<'_>) -> Option<&'static str> {
    use Instruction::*;
    match instruction {
        EmitRaw(_)
        | StoreLocal(_)
        | Lookup(_)
        | GetAttr(_)
        | SetAttr(_)
        | GetItem
        | Slice
        | LoadConst(_)
        | BuildMap(_)
        | BuildKwargs(_)
        | MergeKwargs(_)
        | BuildList(_)
        | UnpackList(_)
        | UnpackLists(_)
        | Sub
        | Div
        | IntDiv
        | Rem
        | Pow
        | Neg
        | Eq
        | Ne
        | Gt
        | Gte
        | Lt
        | Lte
        | Not
        | In
        | CompareAndPreserve(_)
        | ApplyFilter(..)
        | PerformTest(..)
        | Emit
        | PushLoop(_)
        | PushWith
        | Iterate(_)
        | PushDidNotIterate
        | PopFrame
        | PopLoopFrame
        | Jump(_)
        | JumpIfFalse(_)
        | JumpIfFalseOrPop(_)
        | JumpIfTrueOrPop(_)
        | PushAutoEscape
        | PopAutoEscape
        | CallFunction(..)
        | CallMethod(..)
        | DupTop
        | DiscardTop
        | Swap => None,
        Add | Mul | StringConcat => Some(NO_OPERATORS),
        BeginCapture(_) | EndCapture => Some(NO_CAPTURE),
        _ => Some(NOT_ALLOWED),
    }
}

/// Refuse `+`, `*` and `~` before compiling (compiling folds constants: it would build
/// `"x" * 100000000`). Text and string literals are single tokens, so these characters in them
/// are fine; syntax errors are left to the compiler, which explains them.
fn check_operators(field: &'static str, source: &str) -> Result<(), TemplateError> {
    let tokens = machinery::tokenize(source, false, Default::default(), Default::default());
    for token in tokens {
        match token {
            Ok((machinery::Token::Plus | machinery::Token::Mul | machinery::Token::Tilde, span)) => {
                return Err(TemplateError { field, line: span.start_line.into(), reason: NO_OPERATORS.to_string() });
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

/// Refuse a compiled template that uses anything outside the mail subset, naming the line.
fn check_subset(field: &'static str, tmpl: &minijinja::Template<'_, '_>) -> Result<(), TemplateError> {
    let compiled = machinery::get_compiled_template(tmpl);
    let all: Vec<&Instructions<'_>> = std::iter::once(&compiled.instructions).chain(compiled.blocks.values()).collect();
    for instructions in all {
        for idx in 0..instructions.len() as u32 {
            if let Some(reason) = instructions.get(idx).and_then(refused) {
                let line = instructions.get_line(idx).unwrap_or(1);
                return Err(TemplateError { field, line, reason: reason.to_string() });
            }
        }
    }
    Ok(())
}

/// The rendered text, refused past [`MAX_OUTPUT`] bytes before it is stored.
struct CappedOutput<'a> {
    text: Vec<u8>,
    budget: &'a Budget,
}

impl std::io::Write for CappedOutput<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.text.len() + buf.len() > MAX_OUTPUT {
            self.budget.exceeded.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other("rendered text too large"));
        }
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn too_large(field: &'static str) -> TemplateError {
    TemplateError {
        field,
        line: 1,
        reason: format!(
            "差し込んだ後の{field}が大きすぎます（上限 {MAX_OUTPUT} バイト）。繰り返しや差し込む内容を減らしてください。"
        ),
    }
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
    // Characters, as the message says (a Japanese character is three bytes).
    if source.chars().count() > MAX_LEN {
        return Err(TemplateError {
            field, line: 1, reason: format!("{MAX_LEN}文字以内で入力してください。")
        });
    }
    let budget = Arc::new(Budget::default());
    let env = env(&budget);
    check_operators(field, source)?;
    let tmpl = env.template_from_str(source).map_err(|e| explain(field, &e))?;
    check_subset(field, &tmpl)?;
    let mut out = CappedOutput { text: Vec::new(), budget: &budget };
    match tmpl.render_captured_to(ctx, &mut out) {
        // minijinja writes whole `str` pieces and a refused piece is not kept: always UTF-8.
        Ok(_) => Ok(String::from_utf8_lossy(&out.text).into_owned()),
        Err(_) if budget.exceeded.load(Ordering::Relaxed) => Err(too_large(field)),
        Err(e) => Err(explain(field, &e)),
    }
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

/// A global allocator that counts the bytes each thread allocates, so tests can show what a
/// render holds at most.
#[cfg(test)]
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ALLOCATED: Cell<usize> = const { Cell::new(0) };
    }

    fn count(bytes: usize) {
        // `try_with`: allocations during thread teardown are simply not counted.
        let _ = ALLOCATED.try_with(|c| c.set(c.get().saturating_add(bytes)));
    }

    pub fn allocated() -> usize {
        ALLOCATED.with(Cell::get)
    }

    struct Counting;

    // SAFETY: every call is passed on to the system allocator unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count(layout.size());
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count(layout.size());
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count(new_size.saturating_sub(layout.size()));
            unsafe { System.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;
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
        let items: Vec<u32> = (0..1000).collect();
        let e = validate(
            "s",
            "{% for i in items %}{% for j in items %}x{% endfor %}{% endfor %}",
            &json!({ "items": items }),
        )
        .unwrap_err();
        assert!(e.reason.contains("処理が多すぎます"), "{e}");
    }

    /// Bytes allocated on this thread while `f` runs (see [`counting`]).
    fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let before = counting::allocated();
        let out = f();
        (out, counting::allocated() - before)
    }

    /// The review's case: `"x" * 100000000` made a 100 MB string before anything was written
    /// (already while compiling, which folds constants). It is refused from its tokens:
    /// validating it allocates less than 1 MB (a one-line template needs a few KB; compiling or
    /// running it would take 100 MB).
    #[test]
    fn string_repetition_is_refused_before_it_runs() {
        let ctx = json!({"name": "山田"});
        let (result, bytes) = allocated_by(|| validate("件名", "1行目\n{{ \"x\" * 100000000 }}", &ctx));
        assert!(bytes < 1_000_000, "validating allocated {bytes} bytes");
        let e = result.unwrap_err();
        assert_eq!((e.field, e.line), ("本文", 2));
        assert!(e.reason.contains("「*」") && e.reason.contains("並べて書いてください"), "{e}");
        // The same for every operator that builds a string or list in memory.
        for body in [
            "{{ 100000000 * name }}",
            "{{ [name] * 100000000 }}",
            "{{ name ~ name }}",
            "{{ name + name }}",
            "{% set a = name %}{% for i in [1, 2] %}{% set a = a ~ a %}{% endfor %}",
            "{{ 1 + 1 }}",
        ] {
            let e = validate("件名", body, &ctx).unwrap_err();
            assert!(e.reason.contains("「+」「*」「~」"), "{body}: {e}");
        }
    }

    /// Output kept in memory and written again doubles without any operator: refused too.
    #[test]
    fn capturing_blocks_are_refused() {
        let ctx = json!({"name": "山田"});
        for body in
            ["{% set a %}{{ name }}{{ name }}{% endset %}{{ a }}", "{% filter upper %}{{ name }}{% endfilter %}"]
        {
            let e = validate("件名", body, &ctx).unwrap_err();
            assert!(e.reason.contains("ブロックは使えません"), "{body}: {e}");
        }
        let e = validate("件名", "{% for i in [[1]] recursive %}{{ loop(i) }}{% endfor %}", &ctx).unwrap_err();
        assert!(e.reason.contains("使えない書き方"), "{e}");
        let e = validate("件名", "{% for i in range(10) %}{% endfor %}", &ctx).unwrap_err();
        assert!(e.reason.contains("使えない機能"), "no functions: {e}");
    }

    /// A loop that would write 10 MB stops at the output limit, having held little more than
    /// the limit (the buffer grows by doubling up to it).
    #[test]
    fn output_is_capped() {
        let block = "あ".repeat(3_000);
        let body = format!("{{% for i in items %}}{block}{{% endfor %}}");
        let items: Vec<u32> = (0..1_000).collect();
        let ctx = json!({ "items": items });
        let (result, bytes) = allocated_by(|| validate("件名", &body, &ctx));
        assert!(bytes < 3 * MAX_OUTPUT, "rendering allocated {bytes} bytes for 9 MB of text");
        let e = result.unwrap_err();
        assert_eq!(e.field, "本文");
        assert!(e.reason.contains("本文が大きすぎます") && e.reason.contains("減らしてください"), "{e}");
        // Just under the limit renders.
        let items: Vec<u32> = (0..(MAX_OUTPUT / block.len()) as u32).collect();
        let out = render_field("本文", &body, &json!({ "items": items })).unwrap();
        assert!(out.len() <= MAX_OUTPUT && out.len() > MAX_OUTPUT - block.len());
    }

    /// The length limit is in characters, as its message says: 20,000 Japanese characters
    /// (60 KB) are accepted, one more is refused.
    #[test]
    fn length_limit_counts_characters() {
        let ctx = json!({});
        assert!(validate("件名", &"あ".repeat(MAX_LEN), &ctx).is_ok());
        let e = validate("件名", &"あ".repeat(MAX_LEN + 1), &ctx).unwrap_err();
        assert!(e.reason.contains("20000文字以内"), "{e}");
    }

    /// Text made by filters counts even when it is not written.
    #[test]
    fn text_made_by_filters_is_capped() {
        let items: Vec<u32> = (0..1_000).collect();
        let ctx = json!({ "items": items, "word": "a".repeat(1_000) });
        let e = validate("件名", "{% for i in items %}{% if word|upper %}{% endif %}{% endfor %}", &ctx).unwrap_err();
        assert!(e.reason.contains("大きすぎます"), "{e}");
    }

    /// What mails need still works: values, defaults, if/for with loop data, tests, filters.
    #[test]
    fn the_mail_subset_renders() {
        let ctx = json!({
            "name": "山田",
            "event": {"title": "セミナー", "url": "https://x/?a=1&b=2"},
            "sessions": ["10月1日", "10月8日"],
            "note": null,
        });
        let body = "{{ name }} 様\n{% if event.url is defined %}{{ event.title }}: {{ event.url }}{% endif %}\n\
                    {% for s in sessions %}{{ loop.index }}/{{ sessions|length }} {{ s }}{% if not loop.last %}、{% endif %}{% endfor %}\n\
                    {{ note|default(\"なし\", true) }} {{ \"abc\"|upper }} {{ sessions|first }}{% if loop is undefined %}.{% endif %}";
        let out = render_field("本文", body, &ctx).unwrap();
        assert_eq!(out, "山田 様\nセミナー: https://x/?a=1&b=2\n1/2 10月1日、2/2 10月8日\nなし ABC 10月1日.");
    }

    #[test]
    fn sandbox_has_no_file_access() {
        let e = validate("s", "{% include '/etc/passwd' %}", &json!({})).unwrap_err();
        assert_eq!(e.field, "本文");
    }
}
