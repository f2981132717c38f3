//! Small helpers for the sentences the crate writes for people (health reasons,
//! checklists, audit lines), and for the host's text in the reports it renders.

/// `n` and the noun, singular for one: "1 conflict", "2 conflicts".
pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The host's text for a page people read (Markdown, HTML, SVG): each character
/// `markup` gives a replacement for written as that replacement, and each other
/// control or invisible character (see
/// [`is_control_or_invisible`](crate::id::is_control_or_invisible)) as a space. A
/// check's reason, an audit note, who did a maintenance item may quote anything: a
/// line break would add a line or a table row, a right-to-left override show the rest
/// of the line reversed, a zero-width space or a variation selector make two names
/// that read the same look like one. Every renderer goes through here, so that what
/// one shows as a space no other shows as it is; what each escapes for its own
/// markup is its `markup`, which sees a character first (so that a renderer may
/// keep a line break).
pub(crate) fn for_people(s: &str, markup: impl Fn(char) -> Option<&'static str>) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match markup(c) {
            Some(replacement) => out.push_str(replacement),
            None if crate::id::is_control_or_invisible(c) => out.push(' '),
            None => out.push(c),
        }
    }
    out
}

/// HTML's special characters in text: Markdown renders HTML as it is.
fn html(c: char) -> Option<&'static str> {
    match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        _ => None,
    }
}

/// Text for one line of Markdown: a table cell, a heading, a list item. On one
/// line (a line break is a space), no bare pipe (which would end a table cell),
/// no HTML, and no control or invisible character (see [`for_people`]).
pub(crate) fn markdown_line(s: &str) -> String {
    for_people(s, |c| match c {
        '|' => Some("\\|"),
        c => html(c),
    })
}

/// Text for a block of Markdown that is the host's own Markdown (a post-incident
/// review's cause): its line breaks kept, but no HTML, and no other control or
/// invisible character (see [`for_people`]). A carriage return is a space: the
/// line break after it is kept, and Markdown ignores a space at the end of a line.
pub(crate) fn markdown_block(s: &str) -> String {
    for_people(s, |c| match c {
        '\n' => Some("\n"),
        c => html(c),
    })
}

#[cfg(test)]
mod tests {
    use super::{markdown_block, markdown_line, plural};

    #[test]
    fn one_is_singular_and_the_rest_plural() {
        assert_eq!(plural(0, "task", "tasks"), "0 tasks");
        assert_eq!(plural(1, "conflict", "conflicts"), "1 conflict");
        assert_eq!(plural(2, "conflict", "conflicts"), "2 conflicts");
    }

    /// Every control and invisible character is a space on a Markdown line, as in
    /// a chart: a line break, a tab, an escape, a bidi override, a zero-width
    /// space, a line separator, a variation selector, a Hangul filler; pipes and
    /// HTML are escaped; visible text in any script is kept.
    #[test]
    fn markdown_shows_control_and_invisible_characters_as_spaces() {
        assert_eq!(
            markdown_line("a\nb\rc\td\u{1b}e\u{202e}f\u{200b}g\u{2028}h\u{fe0f}i\u{3164}j"),
            "a b c d e f g h i j"
        );
        assert_eq!(markdown_line("a | <b> & c"), "a \\| &lt;b&gt; &amp; c");
        assert_eq!(
            markdown_line("Zoë's エージェント ✅"),
            "Zoë's エージェント ✅"
        );
        // A block keeps its line breaks, and its pipes (a review may hold a table).
        assert_eq!(
            markdown_block("cause:\r\n- a | b\u{202e}\n<i>"),
            "cause: \n- a | b \n&lt;i&gt;"
        );
    }
}
