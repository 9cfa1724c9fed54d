//! Checks on names and subjects shared by the node (which enforces them) and the CLI (which warns
//! early).

/// Subject prefixes no function may be triggered by.
pub const RESERVED_TRIGGER_PREFIXES: &[&str] = &["$SYS", "$JS", "$NEX", "$KV", "$O", "_INBOX"];

/// A workload or namespace name: `^[a-zA-Z0-9_-]+$`.
pub fn name(kind: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{kind} is empty"));
    }
    if value.len() > 128 {
        return Err(format!("{kind} is longer than 128 characters"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "{kind} `{value}` contains `{c}`: only letters, digits, `_` and `-` are allowed"
        ));
    }
    Ok(())
}

/// A NATS subject (wildcards allowed): non-empty tokens, no white space.
pub fn subject(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("subject is empty".into());
    }
    if value.len() > 512 {
        return Err("subject is longer than 512 bytes".into());
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("subject `{value}` contains white space"));
    }
    let tokens: Vec<&str> = value.split('.').collect();
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() {
            return Err(format!("subject `{value}` has an empty token"));
        }
        if *t == ">" && i != tokens.len() - 1 {
            return Err(format!("subject `{value}`: `>` must be the last token"));
        }
        if t.len() > 1 && (t.contains('*') || t.contains('>')) {
            return Err(format!("subject `{value}`: wildcards must be whole tokens"));
        }
    }
    Ok(())
}

/// Could a subscription on `pattern` receive messages published under `prefix.>` (or on
/// `prefix` itself)? Wildcards in `pattern` count as overlapping.
pub fn overlaps_prefix(pattern: &str, prefix: &str) -> bool {
    let mut p = pattern.split('.');
    for want in prefix.split('.') {
        match p.next() {
            None => return false,
            Some(">") => return true,
            Some("*") => continue,
            Some(tok) if tok == want => continue,
            Some(_) => return false,
        }
    }
    true
}

/// A trigger subject: a valid subject that overlaps no reserved prefix nor any of `deny`.
pub fn trigger_subject(value: &str, deny: &[String]) -> Result<(), String> {
    subject(value)?;
    if value == ">" || value.starts_with("*.") && value.split('.').all(|t| t == "*" || t == ">") {
        return Err(format!(
            "trigger subject `{value}` would catch every subject, including reserved ones"
        ));
    }
    for reserved in RESERVED_TRIGGER_PREFIXES {
        if overlaps_prefix(value, reserved) {
            return Err(format!(
                "trigger subject `{value}` overlaps the reserved subjects `{reserved}.>`"
            ));
        }
    }
    for denied in deny {
        let denied_prefix = denied.trim_end_matches(".>");
        if overlaps_prefix(value, denied_prefix) {
            return Err(format!(
                "trigger subject `{value}` overlaps `{denied}`, which this node denies"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name("workload name", "echo_fn-1").is_ok());
        assert!(name("workload name", "a.b").unwrap_err().contains('.'));
        assert!(name("workload name", "").is_err());
    }

    #[test]
    fn reserved_trigger_subjects_are_refused() {
        for bad in [
            "$NEX.PING",
            "$JS.API.>",
            "$SYS.>",
            ">",
            "*.>",
            "$KV.x.y",
            "a..b",
            "a b",
        ] {
            assert!(trigger_subject(bad, &[]).is_err(), "{bad} accepted");
        }
        for good in ["echo", "orders.*", "orders.>", "a.b.c"] {
            assert!(trigger_subject(good, &[]).is_ok(), "{good} refused");
        }
        let deny = vec!["internal.>".to_string()];
        assert!(trigger_subject("internal.x", &deny).is_err());
        assert!(trigger_subject("*.x", &deny).is_err());
        assert!(trigger_subject("public.x", &deny).is_ok());
    }
}
