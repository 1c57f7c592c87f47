/// Whether `text` matches `pattern`, where `*` matches any run of characters and everything else matches
/// itself (the patterns of `FILEGATE_IMPORT_MODELS` and `FILEGATE_ALLOWED_MIME_TYPES`).
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, rest)) => {
            let Some(tail) = text.strip_prefix(prefix) else { return false };
            (0..=tail.len()).filter(|&i| tail.is_char_boundary(i)).any(|i| glob_matches(rest, &tail[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_with_stars_only() {
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("gemini-*", "gemini-3.0-pro-preview"));
        assert!(!glob_matches("gemini-*", "gpt-4"));
        assert!(glob_matches("gemini-*-pro*", "gemini-3.0-pro-preview"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
    }
}
