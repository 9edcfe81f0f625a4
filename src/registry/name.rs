//! What a service name may be: a short word that is also a safe file name
//! on every platform, so a name can never reach outside the registry
//! directory.

/// The longest service name.
pub const MAX_NAME_LEN: usize = 64;

/// Checks a service name: 1 to [`MAX_NAME_LEN`] ASCII letters, digits,
/// `.`, `_` and `-`, starting with a letter or digit. `Err` says why not.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{name:?} is {} bytes long; names are at most {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if let Some((at, c)) = name
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        let what = match c {
            '/' | '\\' => "a path separator".to_owned(),
            c if c.is_whitespace() => "whitespace".to_owned(),
            c => format!("{c:?}"),
        };
        return Err(format!(
            "{name:?} contains {what} at byte {at}; names use only letters, digits, '.', '_' and '-'"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("{name:?} must start with a letter or digit"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names() {
        assert!(check_name("life-gen").is_ok());
        assert!(check_name("a.b_c-1").is_ok());
        for bad in [
            "",
            "../x",
            "a/b",
            r"a\b",
            ".hidden",
            "-x",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_name("a/b").unwrap_err().contains("path separator"));
    }
}
