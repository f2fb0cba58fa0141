//! User input inside messages: quoted, and cut short, so that a huge annotation or name cannot
//! make a condition or an Event too large for the API server to store.

/// How many characters of user input a message quotes.
const QUOTED_CHARS: usize = 64;

/// `value` as a quoted string (as `{:?}` prints it), cut after [`QUOTED_CHARS`] characters
/// with "…" to show that it was.
pub fn quote(value: &str) -> String {
    match value.char_indices().nth(QUOTED_CHARS) {
        None => format!("{value:?}"),
        Some((end, _)) => format!("{:?}", format!("{}…", &value[..end])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole_and_long_ones_cut() {
        assert_eq!(quote("lan"), "\"lan\"");
        let long = "é".repeat(100_000);
        let quoted = quote(&long);
        assert_eq!(quoted, format!("\"{}…\"", "é".repeat(64)));
    }
}
