//! The page's HTML building blocks. Every text that reaches the page —
//! SQL, row values, column names, error messages, reasons — goes through
//! [`escape`] (or [`Html::text`]), so nothing from the database or the
//! application can become markup.

use std::fmt::Write;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
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

/// `text` cut to at most `max` characters (on a character boundary), with
/// `…` when cut; whitespace runs are folded so a multi-line SQL text fits
/// one table cell.
pub fn shorten(text: &str, max: usize) -> String {
    let folded: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if folded.chars().count() <= max {
        return folded;
    }
    let mut cut: String = folded.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// An HTML document being written. Markup goes in through [`Html::raw`]
/// (string literals of this module's callers), data through
/// [`Html::text`], which escapes.
#[derive(Default)]
pub struct Html {
    out: String,
}

impl Html {
    /// Appends markup written by pgshadow itself.
    pub fn raw(&mut self, markup: &str) -> &mut Self {
        self.out.push_str(markup);
        self
    }

    /// Appends data, escaped.
    pub fn text(&mut self, text: &str) -> &mut Self {
        self.out.push_str(&escape(text));
        self
    }

    /// Appends a number or other `Display` value, escaped.
    pub fn display(&mut self, value: impl std::fmt::Display) -> &mut Self {
        let mut s = String::new();
        let _ = write!(s, "{value}");
        self.text(&s)
    }

    /// `<tag class="…">text</tag>`, the text escaped.
    pub fn element(&mut self, tag: &str, class: &str, text: &str) -> &mut Self {
        if class.is_empty() {
            self.raw("<").raw(tag).raw(">");
        } else {
            self.raw("<")
                .raw(tag)
                .raw(" class=\"")
                .raw(class)
                .raw("\">");
        }
        self.text(text).raw("</").raw(tag).raw(">")
    }

    /// The document.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_characters_are_escaped() {
        assert_eq!(
            escape(r#"<script>alert('x' & "y")</script>"#),
            "&lt;script&gt;alert(&#39;x&#39; &amp; &quot;y&quot;)&lt;/script&gt;"
        );
        assert_eq!(escape("plain ü"), "plain ü");
    }

    #[test]
    fn shortening_folds_whitespace_and_cuts_on_characters() {
        assert_eq!(shorten("SELECT  1\n FROM t", 100), "SELECT 1 FROM t");
        assert_eq!(shorten("äöüäöü", 4), "äöü…");
        assert_eq!(shorten("abc", 3), "abc");
    }

    #[test]
    fn text_and_elements_escape_their_content() {
        let mut h = Html::default();
        h.element("td", "diff-old", "<b>").text("&").display(1 < 2);
        assert_eq!(h.finish(), "<td class=\"diff-old\">&lt;b&gt;</td>&amp;true");
    }
}
