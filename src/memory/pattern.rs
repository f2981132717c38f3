//! Glob patterns over memory keys: `*` and `?`, nothing else.

use std::fmt;

use super::MAX_PATTERN_LEN;
use super::error::{MemoryError, PatternProblem, shown};

/// One element of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// Exactly this character.
    Char(char),
    /// Any one character (`?`).
    One,
    /// Any run of characters, the empty one included (`*`).
    Any,
}

/// A checked glob pattern over memory keys, as in Redis's `KEYS`: `*` matches any run
/// of characters (the empty run and `/` included), `?` matches exactly one character,
/// `\` makes the next character literal (`\*`, `\?`, `\\`), and every other character
/// matches itself. There are no character classes: `[` is an ordinary character.
///
/// A pattern is built once ([`Pattern::new`]), which refuses a hostile one (empty,
/// longer than [`MAX_PATTERN_LEN`] bytes, a control character, a trailing lone `\`)
/// with a typed error, and then matched against any number of keys. A pattern may
/// hold an invisible character, which no key written now holds, to find the keys
/// stored before they were refused (see [`check_key`](super::check_key)).
///
/// ```
/// use concord::memory::Pattern;
///
/// let p = Pattern::new("deploy/*/status")?;
/// assert!(p.matches("deploy/web/status"));
/// assert!(p.matches("deploy/eu/web/status")); // `*` crosses `/`
/// assert!(!p.matches("deploy/web/health"));
/// assert!(Pattern::new("agent-?")?.matches("agent-7"));
/// assert!(Pattern::literal("what?").matches("what?"));
/// assert!(!Pattern::literal("what?").matches("whatx"));
/// # Ok::<(), concord::memory::MemoryError>(())
/// ```
///
/// # Complexity
/// Matching one key of `k` characters against a pattern of `p` tokens takes
/// O(p · k) time in the worst case and no allocation: the classic greedy matcher that
/// remembers only the last `*` and backtracks to it, never the exponential
/// backtracking of a naive recursive matcher (`a*a*a*a*b` against a long run of `a`
/// is quadratic at worst, not exponential).
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    tokens: Vec<Token>,
}

impl Pattern {
    /// The pattern `source`, checked.
    ///
    /// # Errors
    /// [`MemoryError::InvalidPattern`] naming the pattern and what is wrong with it.
    pub fn new(source: &str) -> Result<Pattern, MemoryError> {
        let refuse = |problem| MemoryError::InvalidPattern {
            pattern: shown(source),
            problem,
        };
        if source.is_empty() {
            return Err(refuse(PatternProblem::Empty));
        }
        if source.len() > MAX_PATTERN_LEN {
            return Err(refuse(PatternProblem::TooLong { len: source.len() }));
        }
        let mut tokens = Vec::with_capacity(source.len());
        let mut chars = source.char_indices();
        while let Some((at, c)) = chars.next() {
            // As in a key, where such a character is refused: a pattern holding one
            // would match no key. Not an invisible one: a pattern is a read, and a
            // key stored before they were refused may hold one.
            if c.is_control() {
                return Err(refuse(PatternProblem::ControlCharacter { at }));
            }
            let token = match c {
                // Consecutive stars match what one does: keep one, so that matching
                // never revisits the same split twice.
                '*' if tokens.last() == Some(&Token::Any) => continue,
                '*' => Token::Any,
                '?' => Token::One,
                '\\' => match chars.next() {
                    Some((at, c)) if c.is_control() => {
                        return Err(refuse(PatternProblem::ControlCharacter { at }));
                    }
                    Some((_, c)) => Token::Char(c),
                    None => return Err(refuse(PatternProblem::DanglingEscape)),
                },
                c => Token::Char(c),
            };
            tokens.push(token);
        }
        Ok(Pattern {
            source: source.to_owned(),
            tokens,
        })
    }

    /// The pattern that matches `key` and nothing else: its `*`, `?` and `\`
    /// escaped. It is not checked: a key that is not a valid key matches no stored
    /// key anyway.
    #[must_use]
    pub fn literal(key: &str) -> Pattern {
        let mut source = String::with_capacity(key.len());
        for c in key.chars() {
            if matches!(c, '*' | '?' | '\\') {
                source.push('\\');
            }
            source.push(c);
        }
        Pattern {
            source,
            tokens: key.chars().map(Token::Char).collect(),
        }
    }

    /// The pattern `*`: every key.
    #[must_use]
    pub fn any() -> Pattern {
        Pattern {
            source: "*".to_owned(),
            tokens: vec![Token::Any],
        }
    }

    /// The pattern as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The literal text every matching key starts with (empty if the pattern starts
    /// with a wildcard): a store kept in key order can scan from there instead of
    /// from its first key.
    #[must_use]
    pub fn literal_prefix(&self) -> String {
        self.tokens
            .iter()
            .map_while(|t| match t {
                Token::Char(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    /// Whether the pattern has no wildcard, so it matches exactly one key (its
    /// [`literal_prefix`](Self::literal_prefix)).
    #[must_use]
    pub fn is_literal(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Char(_)))
    }

    /// Whether `key` matches the pattern.
    #[must_use]
    pub fn matches(&self, key: &str) -> bool {
        let toks = &self.tokens;
        let (mut p, mut k) = (0, 0);
        // The token after the last `*` seen, and where in the key that star's match
        // currently ends: on a mismatch the star swallows one more character.
        let mut star: Option<(usize, usize)> = None;
        loop {
            let next = key[k..].chars().next();
            let advanced = match (toks.get(p), next) {
                (Some(Token::Any), _) => {
                    star = Some((p + 1, k));
                    p += 1;
                    continue;
                }
                (Some(Token::One), Some(c)) => Some(c),
                (Some(Token::Char(want)), Some(c)) if *want == c => Some(c),
                (None, None) => return true,
                _ => None,
            };
            if let Some(c) = advanced {
                p += 1;
                k += c.len_utf8();
                continue;
            }
            match star {
                Some((after, end)) => match key[end..].chars().next() {
                    Some(c) => {
                        let end = end + c.len_utf8();
                        star = Some((after, end));
                        p = after;
                        k = end;
                    }
                    None => return false,
                },
                None => return false,
            }
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl std::str::FromStr for Pattern {
    type Err = MemoryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reference matcher, exponential but obviously right, over chars.
    fn naive(p: &[Token], k: &[char]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((Token::Any, rest)) => (0..=k.len()).any(|i| naive(rest, &k[i..])),
            Some((Token::One, rest)) => !k.is_empty() && naive(rest, &k[1..]),
            Some((Token::Char(c), rest)) => k.first() == Some(c) && naive(rest, &k[1..]),
        }
    }

    proptest::proptest! {
        #![proptest_config(crate::proptest_config(256, "tests/proptest-regressions/memory_pattern.txt"))]

        /// The greedy matcher agrees with the recursive definition of a glob.
        #[test]
        fn the_greedy_matcher_agrees_with_the_definition(
            pattern in "[ab*?é]{1,8}",
            key in "[abé]{0,10}",
        ) {
            let p = Pattern::new(&pattern).unwrap();
            let chars: Vec<char> = key.chars().collect();
            proptest::prop_assert_eq!(p.matches(&key), naive(&p.tokens, &chars));
        }
    }
}
