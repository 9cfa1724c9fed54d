//! What upstream Nex (0.2.7, 0.3) clients send that nex reads its own way: the deploy's
//! `location` as Go's `url.URL` JSON object, `null` for an absent string, and the placeholder
//! hash upstream's `devrun` signs. Each difference is a row in docs/protocol.md.

use serde::{Deserialize, Deserializer};

/// The artifact hash upstream `nex devrun` (0.2.7 and 0.3) signs instead of a real one. A node
/// refuses it unless its config allows it (`allow_upstream_devrun_hash`, development nodes).
pub const UPSTREAM_DEVRUN_HASH: &str = "abc12345TODOmakethisreal";

/// Why a `location` object cannot be read as a nex location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// The object has no scheme (`nats`, `file`).
    #[error("the location object has no Scheme")]
    NoScheme,
    /// The object carries a part nex's `nats://BUCKET/key` and `file:///path` have no room for.
    #[error(
        "the location object has a {0} part; nex locations are nats://BUCKET/key or file:///path only"
    )]
    Unsupported(&'static str),
}

/// Go's `net/url.URL` as `encoding/json` writes it (exported fields, Go's names).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct GoUrl {
    #[serde(default)]
    pub scheme: String,
    #[serde(default)]
    pub opaque: String,
    /// `*url.Userinfo`: its fields are unexported, so Go writes `{}` when present, else `null`.
    #[serde(default)]
    pub user: Option<serde_json::Value>,
    #[serde(default)]
    pub host: String,
    /// The path, decoded (`RawPath` holds the escaped form when it differs).
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub raw_path: String,
    #[serde(default)]
    pub omit_host: bool,
    #[serde(default)]
    pub force_query: bool,
    #[serde(default)]
    pub raw_query: String,
    #[serde(default)]
    pub fragment: String,
    #[serde(default)]
    pub raw_fragment: String,
}

impl GoUrl {
    /// The location as nex writes it, `scheme://host/path`: `nats://BUCKET/key` from
    /// `{Scheme: "nats", Host: "BUCKET", Path: "/key"}`. The decoded `Path` is used, as nex
    /// reads object keys verbatim. Credentials, opaque parts, queries and fragments are refused.
    pub fn to_location(&self) -> Result<String, LocationError> {
        if self.scheme.is_empty() {
            return Err(LocationError::NoScheme);
        }
        let unsupported = [
            (!self.opaque.is_empty(), "Opaque"),
            (self.user.as_ref().is_some_and(|u| !u.is_null()), "User"),
            (
                self.force_query || !self.raw_query.is_empty(),
                "query (RawQuery)",
            ),
            (
                !self.fragment.is_empty() || !self.raw_fragment.is_empty(),
                "Fragment",
            ),
        ];
        if let Some((_, part)) = unsupported.iter().find(|(present, _)| *present) {
            return Err(LocationError::Unsupported(part));
        }
        Ok(format!("{}://{}{}", self.scheme, self.host, self.path))
    }
}

/// Deserializes a deploy's `location`: a string as nex sends it, or Go's `url.URL` object as
/// upstream's control API sends it (rebuilt by [`GoUrl::to_location`]).
pub(crate) fn location<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        v @ serde_json::Value::Object(_) => {
            let url: GoUrl = serde_json::from_value(v)
                .map_err(|e| serde::de::Error::custom(format!("location object: {e}")))?;
            url.to_location().map_err(serde::de::Error::custom)
        }
        _ => Err(serde::de::Error::custom(
            "location must be a string (nats://BUCKET/key) or a URL object",
        )),
    }
}

/// Deserializes a string that Go writes as `null` when its pointer is nil (upstream 0.3's
/// `hash`, `workload_name`): `null` is the empty string.
pub(crate) fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(scheme: &str, host: &str, path: &str) -> GoUrl {
        GoUrl {
            scheme: scheme.into(),
            host: host.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    #[test]
    fn go_urls_become_nex_locations() {
        let nats = url("nats", "NEXCLIFILES", "/default/echo-0123");
        assert_eq!(
            nats.to_location().unwrap(),
            "nats://NEXCLIFILES/default/echo-0123"
        );
        assert_eq!(
            url("file", "", "/tmp/x.js").to_location().unwrap(),
            "file:///tmp/x.js"
        );
        // The decoded path is the object key, as nex reads keys verbatim.
        let escaped = GoUrl {
            raw_path: "/a%20b".into(),
            ..url("nats", "B", "/a b")
        };
        assert_eq!(escaped.to_location().unwrap(), "nats://B/a b");
    }

    #[test]
    fn parts_nex_has_no_room_for_are_refused() {
        let base = url("nats", "B", "/k");
        assert_eq!(
            url("", "B", "/k").to_location(),
            Err(LocationError::NoScheme)
        );
        let cases = [
            GoUrl {
                user: Some(serde_json::json!({})),
                ..base.clone()
            },
            GoUrl {
                opaque: "x".into(),
                ..base.clone()
            },
            GoUrl {
                raw_query: "a=1".into(),
                ..base.clone()
            },
            GoUrl {
                force_query: true,
                ..base.clone()
            },
            GoUrl {
                fragment: "f".into(),
                ..base.clone()
            },
        ];
        for c in cases {
            assert!(
                matches!(c.to_location(), Err(LocationError::Unsupported(_))),
                "{c:?}"
            );
        }
        // `"User": null` is no user.
        let null_user = GoUrl {
            user: Some(serde_json::Value::Null),
            ..base
        };
        assert!(null_user.to_location().is_ok());
    }
}
