//! Plain text as organizers write it, shown as HTML: escaped, line breaks kept, and web
//! addresses made links.

/// Escape for HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Where an address ends: at a space, a quote or bracket, or Japanese text and punctuation.
fn ends_url(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '(' | ')' | '[' | ']' | '{' | '}') || !c.is_ascii()
}

/// The text as safe HTML: each `http://` or `https://` address a link (opened in a new tab),
/// each line break a `<br>`.
pub fn linkify(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = ["https://", "http://"].iter().filter_map(|p| rest.find(p)).min() {
        out.push_str(&escape(&rest[..at]));
        let tail = &rest[at..];
        let mut len = tail.find(ends_url).unwrap_or(tail.len());
        // A sentence's last full stop or comma is not part of the address.
        while len > 0 && matches!(tail.as_bytes()[len - 1], b'.' | b',' | b'!' | b'?' | b';' | b':') {
            len -= 1;
        }
        let url = &tail[..len];
        if url.len() > "https://".len() {
            out.push_str(&format!(
                "<a href=\"{0}\" target=\"_blank\" rel=\"noopener noreferrer\">{0}</a>",
                escape(url)
            ));
        } else {
            out.push_str(&escape(url));
        }
        rest = &tail[len..];
    }
    out.push_str(&escape(rest));
    out.replace('\n', "<br>\n")
}

#[cfg(test)]
mod tests {
    use super::linkify;

    #[test]
    fn links_addresses_and_escapes_the_rest() {
        assert_eq!(
            linkify("詳細は https://example.com/a?b=1&c=2 をご覧ください。\n<b>太字</b>"),
            "詳細は <a href=\"https://example.com/a?b=1&amp;c=2\" target=\"_blank\" rel=\"noopener noreferrer\">https://example.com/a?b=1&amp;c=2</a> をご覧ください。<br>\n&lt;b&gt;太字&lt;/b&gt;"
        );
        assert_eq!(
            linkify("資料：http://example.com/x。次へ"),
            "資料：<a href=\"http://example.com/x\" target=\"_blank\" rel=\"noopener noreferrer\">http://example.com/x</a>。次へ"
        );
        assert_eq!(
            linkify("see https://example.com."),
            "see <a href=\"https://example.com\" target=\"_blank\" rel=\"noopener noreferrer\">https://example.com</a>."
        );
        assert_eq!(linkify("\"https://\" alone"), "&quot;https://&quot; alone");
        assert_eq!(
            linkify("javascript:alert(1) https://x.jp\"onmouseover=\"x"),
            "javascript:alert(1) <a href=\"https://x.jp\" target=\"_blank\" rel=\"noopener noreferrer\">https://x.jp</a>&quot;onmouseover=&quot;x"
        );
    }
}
