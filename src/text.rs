//! Small helpers for the sentences the crate writes for people (health reasons,
//! checklists, audit lines).

/// `n` and the noun, singular for one: "1 conflict", "2 conflicts".
pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::plural;

    #[test]
    fn one_is_singular_and_the_rest_plural() {
        assert_eq!(plural(0, "task", "tasks"), "0 tasks");
        assert_eq!(plural(1, "conflict", "conflicts"), "1 conflict");
        assert_eq!(plural(2, "conflict", "conflicts"), "2 conflicts");
    }
}
