//! Which namespace may use which subjects and artifacts on this node.
//!
//! Pure functions over the node config's `namespaces` map ([`NamespacePolicy`]) and the running
//! workloads' (namespace, trigger subjects); the deploy handler calls them, nothing here does I/O.
//!
//! Subjects:
//! - A namespace with `subjects` in the map owns that space: its triggers must each lie inside
//!   one of its patterns, and no other namespace's trigger may collide with them.
//! - Everywhere, a trigger may not collide with a trigger of a workload of *another* namespace
//!   running on this node: the first namespace to use a subject keeps it (on this node; across
//!   nodes only the map, given to every node, says who owns what).
//!
//! Artifacts: a deploy in namespace `ns` may fetch `nats://NEXCLIFILES/<ns>/...` and the buckets
//! the map gives `ns` (`artifact_buckets`), nothing else. `file://` is the node's own business
//! (`allow_file_locations`).

use std::collections::BTreeMap;

use nex_proto::{names, validate};

use crate::artifact::{self, Location};
use crate::config::NamespacePolicy;

/// Why a deploy or the node config oversteps a namespace's bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenancyError {
    /// The namespace owns a subject space and the trigger is not inside it.
    #[error(
        "trigger subject `{trigger}` lies outside namespace {namespace}'s subjects ({allowed}), \
         which the node config gives it"
    )]
    OutsideNamespace {
        trigger: String,
        namespace: String,
        allowed: String,
    },
    /// The trigger collides with a space the node config gives another namespace.
    #[error(
        "trigger subject `{trigger}` collides with `{pattern}`, which the node config gives to \
         namespace {owner}"
    )]
    Claimed {
        trigger: String,
        owner: String,
        pattern: String,
    },
    /// The trigger collides with a running workload's trigger in another namespace.
    #[error(
        "trigger subject `{trigger}` collides with a trigger of a workload in namespace {owner} \
         on this node: a subject belongs to the namespace that uses it first, unless the node \
         config's `namespaces` map gives it to one"
    )]
    InUse { trigger: String, owner: String },
    /// The artifact is in another namespace's bucket or key prefix.
    #[error(
        "artifact location `{location}` is outside namespace {namespace}: its artifacts are \
         under {allowed}"
    )]
    LocationOutside {
        location: String,
        namespace: String,
        allowed: String,
    },
    /// The `namespaces` map itself is inconsistent.
    #[error("node config `namespaces`: {0}")]
    Config(String),
    /// A namespace or bucket name of the `namespaces` map is malformed.
    #[error("node config `namespaces`: {0}")]
    ConfigName(#[from] validate::NameError),
}

pub type Result<T, E = TenancyError> = std::result::Result<T, E>;

/// Checks the trigger subjects of a deploy in namespace `ns` against the namespaces map and the
/// workloads running on this node, given as (namespace, trigger subjects). Workloads of `ns`
/// itself never conflict with it (a replacement takes over its predecessor's triggers).
pub fn check_triggers<'a>(
    policies: &BTreeMap<String, NamespacePolicy>,
    ns: &str,
    triggers: &[String],
    running: impl IntoIterator<Item = (&'a str, &'a [String])> + Clone,
) -> Result<()> {
    let own = policies
        .get(ns)
        .map(|p| p.subjects.as_slice())
        .unwrap_or(&[]);
    for trigger in triggers {
        if !own.is_empty() && !own.iter().any(|p| validate::subject_covers(p, trigger)) {
            return Err(TenancyError::OutsideNamespace {
                trigger: trigger.clone(),
                namespace: ns.to_owned(),
                allowed: own.join(", "),
            });
        }
        for (owner, policy) in policies.iter().filter(|(o, _)| *o != ns) {
            if let Some(p) = policy
                .subjects
                .iter()
                .find(|p| validate::subjects_collide(p, trigger))
            {
                return Err(TenancyError::Claimed {
                    trigger: trigger.clone(),
                    owner: owner.clone(),
                    pattern: p.clone(),
                });
            }
        }
        for (owner, theirs) in running.clone().into_iter().filter(|(o, _)| *o != ns) {
            if theirs
                .iter()
                .any(|t| validate::subjects_collide(t, trigger))
            {
                return Err(TenancyError::InUse {
                    trigger: trigger.clone(),
                    owner: owner.to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// Checks that a deploy in namespace `ns` fetches its artifact from its own place: a key under
/// `<ns>/` in `NEXCLIFILES`, or a bucket the map gives `ns`. `file://` and unparseable
/// locations pass (the fetch decides those).
pub fn check_location(
    policies: &BTreeMap<String, NamespacePolicy>,
    ns: &str,
    location: &str,
) -> Result<()> {
    let Ok(Location::ObjectStore { bucket, key }) = artifact::parse_location(location) else {
        return Ok(());
    };
    let extra = policies
        .get(ns)
        .map(|p| p.artifact_buckets.as_slice())
        .unwrap_or(&[]);
    let prefix = names::artifact_prefix(ns);
    if (bucket == names::DEVRUN_BUCKET && key.starts_with(&prefix))
        || extra.iter().any(|b| b == bucket)
    {
        return Ok(());
    }
    let mut allowed = format!(
        "`{}`",
        names::artifact_location(names::DEVRUN_BUCKET, &prefix)
    );
    for b in extra {
        allowed.push_str(&format!(" or `{}`", names::artifact_location(b, "")));
    }
    Err(TenancyError::LocationOutside {
        location: location.to_owned(),
        namespace: ns.to_owned(),
        allowed,
    })
}

/// Checks the map once, when the node starts: valid namespace names; subject spaces that are
/// valid, outside reserved subjects and pairwise apart; artifact buckets other than
/// `NEXCLIFILES` (whose namespaces are key prefixes) and given to one namespace only.
pub fn check_policies(policies: &BTreeMap<String, NamespacePolicy>) -> Result<()> {
    let bad = |m: String| Err(TenancyError::Config(m));
    for (ns, policy) in policies {
        validate::name("namespace", ns)?;
        for s in &policy.subjects {
            if let Err(e) = validate::trigger_subject(s, &[]) {
                return bad(format!("namespace {ns}: {e}"));
            }
        }
        for b in &policy.artifact_buckets {
            validate::name("artifact bucket", b)?;
            if b == names::DEVRUN_BUCKET {
                return bad(format!(
                    "namespace {ns}: `{b}` is shared by every namespace (each has its key prefix \
                     there) and cannot be given to one"
                ));
            }
        }
    }
    let all: Vec<_> = policies.iter().collect();
    for (i, (ns1, p1)) in all.iter().enumerate() {
        for (ns2, p2) in &all[i + 1..] {
            for s1 in &p1.subjects {
                if let Some(s2) = p2
                    .subjects
                    .iter()
                    .find(|s2| validate::subjects_collide(s1, s2))
                {
                    return bad(format!(
                        "namespaces {ns1} and {ns2} both claim subjects: `{s1}` collides with `{s2}`"
                    ));
                }
            }
            if let Some(b) = p1
                .artifact_buckets
                .iter()
                .find(|b| p2.artifact_buckets.contains(b))
            {
                return bad(format!(
                    "namespaces {ns1} and {ns2} are both given artifact bucket `{b}`"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies(json: &str) -> BTreeMap<String, NamespacePolicy> {
        serde_json::from_str(json).unwrap()
    }

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_namespace_with_a_subject_space_stays_inside_it_and_others_stay_out() {
        let map = policies(
            r#"{"shop": {"subjects": ["shop.>", "orders.*"]}, "ops": {"subjects": ["ops.>"]}}"#,
        );
        let none: [(&str, &[String]); 0] = [];
        for ok in ["shop.x", "shop.*.new", "shop.>", "orders.new"] {
            assert_eq!(
                check_triggers(&map, "shop", &v(&[ok]), none),
                Ok(()),
                "{ok}"
            );
        }
        for out in ["orders.>", "orders.a.b", "other", "ops.x"] {
            assert!(
                matches!(
                    check_triggers(&map, "shop", &v(&[out]), none),
                    Err(TenancyError::OutsideNamespace { .. })
                ),
                "{out}"
            );
        }
        // Another namespace, with or without its own entry, stays out of `shop`'s space.
        for (ns, t) in [
            ("other", "shop.x"),
            ("other", "shop.*.new"),
            ("other", "orders.>"),
            ("other", "orders.new"),
        ] {
            assert!(
                matches!(
                    check_triggers(&map, ns, &v(&[t]), none),
                    Err(TenancyError::Claimed { ref owner, .. }) if owner == "shop"
                ),
                "{ns} {t}"
            );
        }
        assert_eq!(check_triggers(&map, "other", &v(&["free.x"]), none), Ok(()));
    }

    #[test]
    fn without_an_entry_the_first_namespace_keeps_its_subjects() {
        let map = BTreeMap::new();
        let a = v(&["a.>"]);
        let b = v(&["b.fn"]);
        let running: Vec<(&str, &[String])> = vec![("a", &a), ("b", &b)];
        for (ns, t, ok) in [
            ("c", "a.x", false),
            ("c", "a.*", false),
            ("c", "b.fn", false),
            ("c", "b.*", false),
            ("c", "b.other", true),
            ("c", "c.x", true),
            ("a", "a.x", true),
            ("a", "b.fn", false),
            ("b", "b.fn", true),
        ] {
            let r = check_triggers(&map, ns, &v(&[t]), running.iter().copied());
            assert_eq!(r.is_ok(), ok, "{ns} {t}: {r:?}");
            if !ok {
                assert!(matches!(r, Err(TenancyError::InUse { .. })), "{r:?}");
            }
        }
    }

    #[test]
    fn artifacts_come_from_the_namespace_s_own_place() {
        let map = policies(r#"{"team": {"artifact_buckets": ["TEAM_ARTIFACTS"]}}"#);
        for (ns, loc, ok) in [
            ("team", "nats://NEXCLIFILES/team/echo", true),
            ("team", "nats://TEAM_ARTIFACTS/anything", true),
            ("team", "nats://NEXCLIFILES/other/echo", false),
            ("team", "nats://NEXCLIFILES/team", false),
            ("team", "nats://NEXCLIFILES/teamx/echo", false),
            ("team", "nats://hs_1_b_f_obj/x", false),
            ("other", "nats://TEAM_ARTIFACTS/anything", false),
            ("other", "nats://NEXCLIFILES/other/x", true),
            ("other", "file:///tmp/x.js", true),
        ] {
            let r = check_location(&map, ns, loc);
            assert_eq!(r.is_ok(), ok, "{ns} {loc}: {r:?}");
        }
        let e = check_location(&map, "team", "nats://NEXCLIFILES/x").unwrap_err();
        assert!(e.to_string().contains("nats://NEXCLIFILES/team/"), "{e}");
    }

    #[test]
    fn the_map_is_checked_at_start() {
        assert_eq!(
            check_policies(&policies(
                r#"{"a": {"subjects": ["a.>"]}, "b": {"subjects": ["b.>"], "artifact_buckets": ["B"]}}"#
            )),
            Ok(())
        );
        for bad in [
            r#"{"a": {"subjects": ["x.>"]}, "b": {"subjects": ["x.y"]}}"#,
            r#"{"a": {"subjects": ["$JS.>"]}}"#,
            r#"{"a": {"subjects": ["*.x"]}}"#,
            r#"{"a": {"artifact_buckets": ["NEXCLIFILES"]}}"#,
            r#"{"a": {"artifact_buckets": ["X"]}, "b": {"artifact_buckets": ["X"]}}"#,
        ] {
            assert!(
                matches!(check_policies(&policies(bad)), Err(TenancyError::Config(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            check_policies(&policies(r#"{"a.b": {}}"#)),
            Err(TenancyError::ConfigName(validate::NameError::Character {
                found: '.',
                ..
            }))
        ));
    }
}
