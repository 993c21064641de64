//! Names that become file names (stories, subjects, sessions, tasks, runs) are checked
//! before they do: letters, digits, `.`, `_` and `-`, not starting with a dot, at most
//! [`MAX_LEN`] bytes. So `../../x` or `neurons` in a table's `story` column can never
//! write outside its folder or over another file of the store.

use crate::error::{bail, Result};

/// Longest accepted name (file systems allow 255 bytes; room is left for suffixes).
pub const MAX_LEN: usize = 128;

/// Whether `name` is safe as one path component.
pub fn is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Checks `name` (`what` says what it names: "story", "subject", …).
pub fn check(what: &str, name: &str) -> Result<()> {
    if !is_valid(name) {
        let shown: String = name.chars().take(60).collect();
        let more = if name.chars().count() > 60 { "…" } else { "" };
        bail!(
            "{what} name '{shown}{more}' is not a safe file name: use letters, digits, '.', '_' and '-' (not starting with '.'), at most {MAX_LEN} characters"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_bids_labels_and_refuses_paths() {
        for ok in ["task-lpp_run-1", "lppEN_section1", "01", "a.b-c_d"] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in ["", "..", "../../x", ".hidden", "a/b", "a\\b", "a b", "ü", &"x".repeat(129)] {
            assert!(!is_valid(bad), "{bad}");
        }
        assert!(check("story", "../neurons").unwrap_err().to_string().contains("story name '../neurons'"));
    }
}
