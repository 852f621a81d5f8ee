//! Finding where a value stands in the source text, for errors found after parsing (a route naming
//! an upstream that does not exist). serde's types carry no positions, so the value itself is sought.

use crate::load::line_and_column;

/// The line and column of the first occurrence of `value` as a whole scalar after `key`.
pub(crate) fn locate(text: &str, key: &str, value: &str) -> Option<(u64, u64)> {
    if value.is_empty() {
        return None;
    }
    let mut from = 0;
    while let Some(found) = text[from..].find(value) {
        let start = from + found;
        let end = start + value.len();
        if is_whole_scalar(text, start, end) && key_precedes(text, start, key) {
            return Some(line_and_column(text, start));
        }
        from = end;
    }
    None
}

fn is_whole_scalar(text: &str, start: usize, end: usize) -> bool {
    let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')));
    boundary(text[..start].chars().next_back()) && boundary(text[end..].chars().next())
}

fn key_precedes(text: &str, start: usize, key: &str) -> bool {
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    text[line_start..start].contains(key)
}
