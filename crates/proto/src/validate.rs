//! Checks on names and subjects shared by the node (which enforces them) and the CLI (which warns
//! early).

/// Longest name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Longest subject, in bytes.
pub const MAX_SUBJECT_LEN: usize = 512;

/// Why a name (of a namespace, workload, bucket, ...: `kind` says which) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {MAX_NAME_LEN} characters")]
    TooLong { kind: &'static str },
    #[error("{kind} `{value}` contains `{found}`: only letters, digits, `_` and `-` are allowed")]
    Character {
        kind: &'static str,
        value: String,
        found: char,
    },
}

/// A workload or namespace name: `^[a-zA-Z0-9_-]{1,128}$`.
pub fn name(kind: &'static str, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if value.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { kind });
    }
    if let Some(found) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(NameError::Character {
            kind,
            value: value.to_owned(),
            found,
        });
    }
    Ok(())
}

/// Why a string is not a NATS subject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("subject is empty")]
    Empty,
    #[error("subject is longer than {MAX_SUBJECT_LEN} bytes")]
    TooLong,
    #[error("subject `{0}` contains white space")]
    WhiteSpace(String),
    #[error("subject `{0}` has an empty token")]
    EmptyToken(String),
    #[error("subject `{0}`: `>` must be the last token")]
    TailNotLast(String),
    #[error("subject `{0}`: wildcards must be whole tokens")]
    PartialWildcard(String),
}

/// A NATS subject (wildcards allowed): non-empty tokens, no white space.
pub fn subject(value: &str) -> Result<(), SubjectError> {
    if value.is_empty() {
        return Err(SubjectError::Empty);
    }
    if value.len() > MAX_SUBJECT_LEN {
        return Err(SubjectError::TooLong);
    }
    let owned = || value.to_owned();
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SubjectError::WhiteSpace(owned()));
    }
    let tokens: Vec<&str> = value.split('.').collect();
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() {
            return Err(SubjectError::EmptyToken(owned()));
        }
        if *t == ">" && i != tokens.len() - 1 {
            return Err(SubjectError::TailNotLast(owned()));
        }
        if t.len() > 1 && (t.contains('*') || t.contains('>')) {
            return Err(SubjectError::PartialWildcard(owned()));
        }
    }
    Ok(())
}

/// Most trigger subjects one deploy may have.
pub const MAX_TRIGGERS: usize = 32;

/// The subjects no function may be triggered by, in words (see [`is_reserved`]): every subject
/// whose first token begins with `$` (`$SYS`, `$JS`, `$KV`, `$O`, `$NEX`, `$SRV`, `$MQTT`,
/// `$G`, ...), and the reply spaces `_INBOX.>` and `_R_.>`.
pub const RESERVED_SUBJECTS: &str =
    "`$...` (any first token beginning with `$`), `_INBOX.>`, `_R_.>`";

/// Why a trigger subject (or a deploy's list of them) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    /// Not a valid NATS subject.
    #[error(transparent)]
    Invalid(#[from] SubjectError),
    /// The deploy names no trigger.
    #[error("a function needs at least one trigger subject")]
    Missing,
    /// More than [`MAX_TRIGGERS`] triggers.
    #[error("a deploy may have at most {max} trigger subjects; this one has {count}")]
    TooMany { count: usize, max: usize },
    /// A subject of NATS or nex itself.
    #[error(
        "trigger subject `{subject}` overlaps the reserved subjects ({})",
        RESERVED_SUBJECTS
    )]
    Reserved { subject: String },
    /// The first token is `*` or `>`, so the trigger could match reserved subjects.
    #[error(
        "trigger subject `{subject}` begins with a wildcard, so it overlaps the reserved subjects \
         ({}); begin it with a literal token",
        RESERVED_SUBJECTS
    )]
    LeadingWildcard { subject: String },
    /// Collides with an entry of the node's `deny_trigger_subjects`.
    #[error("trigger subject `{subject}` overlaps `{denied}`, which this node denies")]
    Denied { subject: String, denied: String },
}

/// Does `subject` (a concrete subject or a pattern) begin in reserved space: a first token that
/// starts with `$`, or is `_INBOX` or `_R_`?
pub fn is_reserved(subject: &str) -> bool {
    if subject.starts_with('$') {
        return true;
    }
    let first = subject.split('.').next().unwrap_or_default();
    first == "_INBOX" || first == "_R_"
}

/// Must the node refuse to publish a function's answer to `reply`? True for every `$`-subject
/// (JetStream, KV and object-store APIs, `$SYS`, `$NEX`...): a caller could otherwise make the
/// node write there with its own permissions. One byte is read; this runs on every call.
#[inline]
pub fn reply_refused(reply: &str) -> bool {
    reply.as_bytes().first() == Some(&b'$')
}

/// Is there a concrete subject that both patterns match? `*` matches one token, `>` one or
/// more, on either side (`secret.*` and `secret.x` collide; `a.>` and `a` do not).
pub fn subjects_collide(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('.'), b.split('.'));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some(x), Some(y)) => {
                if x != "*" && y != "*" && x != y {
                    return false;
                }
            }
        }
    }
}

/// Does `outer` match every subject `inner` matches? (`shop.>` covers `shop.*.new`; `shop.*`
/// does not cover `shop.>`.)
pub fn subject_covers(outer: &str, inner: &str) -> bool {
    let (mut o, mut i) = (outer.split('.'), inner.split('.'));
    loop {
        match (o.next(), i.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(t)) if t != ">" => {}
            (Some(x), Some(y)) if x != "*" && x != ">" && x == y => {}
            _ => return false,
        }
    }
}

/// One trigger subject: a valid subject, beginning with a literal token outside reserved space,
/// colliding with nothing in `deny`.
pub fn trigger_subject(value: &str, deny: &[String]) -> Result<(), TriggerError> {
    subject(value)?;
    let first = value.split('.').next().unwrap_or_default();
    if first == "*" || first == ">" {
        return Err(TriggerError::LeadingWildcard {
            subject: value.to_owned(),
        });
    }
    if is_reserved(value) {
        return Err(TriggerError::Reserved {
            subject: value.to_owned(),
        });
    }
    if let Some(denied) = deny.iter().find(|d| subjects_collide(value, d)) {
        return Err(TriggerError::Denied {
            subject: value.to_owned(),
            denied: denied.clone(),
        });
    }
    Ok(())
}

/// A deploy's trigger subjects: one to [`MAX_TRIGGERS`], each passing [`trigger_subject`].
pub fn trigger_subjects(values: &[String], deny: &[String]) -> Result<(), TriggerError> {
    if values.is_empty() {
        return Err(TriggerError::Missing);
    }
    if values.len() > MAX_TRIGGERS {
        return Err(TriggerError::TooMany {
            count: values.len(),
            max: MAX_TRIGGERS,
        });
    }
    values.iter().try_for_each(|v| trigger_subject(v, deny))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name("workload name", "echo_fn-1").is_ok());
        assert_eq!(
            name("workload name", "a.b"),
            Err(NameError::Character {
                kind: "workload name",
                value: "a.b".into(),
                found: '.'
            })
        );
        assert_eq!(
            name("namespace", ""),
            Err(NameError::Empty { kind: "namespace" })
        );
        assert_eq!(
            name("namespace", &"n".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong { kind: "namespace" })
        );
        assert!(name("namespace", &"n".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn subjects_say_what_is_wrong() {
        assert_eq!(subject(""), Err(SubjectError::Empty));
        assert_eq!(
            subject(&"a".repeat(MAX_SUBJECT_LEN + 1)),
            Err(SubjectError::TooLong)
        );
        assert!(matches!(subject("a b"), Err(SubjectError::WhiteSpace(_))));
        assert!(matches!(subject("a\nb"), Err(SubjectError::WhiteSpace(_))));
        assert!(matches!(subject("a..b"), Err(SubjectError::EmptyToken(_))));
        assert!(matches!(
            subject("a.>.b"),
            Err(SubjectError::TailNotLast(_))
        ));
        assert!(matches!(
            subject("a.b*"),
            Err(SubjectError::PartialWildcard(_))
        ));
        assert!(subject("a.*.>").is_ok());
    }

    #[test]
    fn collisions_follow_nats_wildcards() {
        for (a, b, want) in [
            ("secret.x", "secret.*", true),
            ("secret.a.b", "secret.>", true),
            ("secret.x", "*.x", true),
            ("*.x", "secret.*", true),
            ("a.>", "a", false),
            ("a.>", "a.b.c", true),
            ("a.*", "a.b.c", false),
            ("a.*.c", "a.b.>", true),
            ("a.b", "a.c", false),
            (">", "x", true),
            (">", ">", true),
            ("*", "a.b", false),
            ("a.*.c", "a.b.d", false),
            ("shop.*.new", "shop.>", true),
            ("a", "a", true),
        ] {
            assert_eq!(subjects_collide(a, b), want, "{a} vs {b}");
            assert_eq!(subjects_collide(b, a), want, "{b} vs {a}");
        }
    }

    #[test]
    fn covering_means_every_match_is_inside() {
        for (outer, inner, want) in [
            ("shop.>", "shop.x", true),
            ("shop.>", "shop.*.new", true),
            ("shop.>", "shop.>", true),
            ("shop.>", "shop", false),
            ("shop.*", "shop.x", true),
            ("shop.*", "shop.*", true),
            ("shop.*", "shop.>", false),
            ("shop.*", "shop.x.y", false),
            ("shop.x", "shop.*", false),
            ("shop.x", "shop.x", true),
            ("shop.>", "*.x", false),
            ("shop.>", "other.x", false),
            ("*.x", "shop.x", true),
        ] {
            assert_eq!(subject_covers(outer, inner), want, "{outer} covers {inner}");
        }
    }

    #[test]
    fn reserved_and_wildcard_led_triggers_are_refused() {
        for bad in [
            "$NEX.PING",
            "$JS.API.>",
            "$SYS.>",
            "$KV.x.y",
            "$O.x",
            "$SRV.PING",
            "$SRV.>",
            "$MQTT.sub.x",
            "$G",
            "$anything.else",
            "_INBOX.>",
            "_INBOX.abc.def",
            "_R_.>",
            "_R_.x",
        ] {
            assert!(
                matches!(
                    trigger_subject(bad, &[]),
                    Err(TriggerError::Reserved { .. })
                ),
                "{bad} accepted"
            );
            assert!(is_reserved(bad), "{bad}");
        }
        for bad in [">", "*", "*.>", "*.x", ">.x", "*.*"] {
            let e = trigger_subject(bad, &[]);
            assert!(
                matches!(e, Err(TriggerError::LeadingWildcard { .. }))
                    || matches!(e, Err(TriggerError::Invalid(_))),
                "{bad}: {e:?}"
            );
        }
        for bad in ["a..b", "a b", "", "a.>.b", "a.b*"] {
            assert!(
                matches!(trigger_subject(bad, &[]), Err(TriggerError::Invalid(_))),
                "{bad}"
            );
        }
        for good in [
            "echo", "orders.*", "orders.>", "a.b.c", "INBOX.x", "x._INBOX", "a.$b",
        ] {
            assert!(trigger_subject(good, &[]).is_ok(), "{good} refused");
        }
    }

    #[test]
    fn the_deny_list_uses_collisions() {
        let deny = vec!["internal.>".to_string(), "secret.*".to_string()];
        for bad in [
            "internal.x",
            "internal.>",
            "internal.*.y",
            "secret.x",
            "secret.*",
            "secret.>",
        ] {
            assert!(
                matches!(
                    trigger_subject(bad, &deny),
                    Err(TriggerError::Denied { .. })
                ),
                "{bad} accepted"
            );
        }
        for good in ["public.x", "secret.x.y", "secret", "internal"] {
            assert!(trigger_subject(good, &deny).is_ok(), "{good} refused");
        }
    }

    #[test]
    fn a_deploy_has_one_to_thirty_two_triggers() {
        assert_eq!(trigger_subjects(&[], &[]), Err(TriggerError::Missing));
        let many: Vec<String> = (0..=MAX_TRIGGERS).map(|i| format!("t.{i}")).collect();
        assert_eq!(
            trigger_subjects(&many, &[]),
            Err(TriggerError::TooMany { count: 33, max: 32 })
        );
        assert!(trigger_subjects(&many[..MAX_TRIGGERS], &[]).is_ok());
    }

    #[test]
    fn replies_to_dollar_subjects_are_refused() {
        for bad in [
            "$KV.hs_1_b_f_kv.secret",
            "$JS.API.STREAM.DELETE.KV_x",
            "$SYS.x",
            "$",
        ] {
            assert!(reply_refused(bad), "{bad}");
        }
        for good in ["_INBOX.abc", "_R_.x.y", "my.inbox", ""] {
            assert!(!reply_refused(good), "{good}");
        }
    }
}
