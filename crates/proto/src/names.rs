//! Names of the JetStream buckets and objects nex derives from a namespace and a workload name.
//!
//! Every bucket a workload's host services use, and every object key `nex devrun` uploads, is
//! built here, so that the rule that keeps tenants apart lives in one function:
//! [`workload_buckets`] is *injective*: two different (namespace, workload name) pairs never get
//! the same bucket.
//!
//! Names are `[a-zA-Z0-9_-]{1,128}` (see [`crate::validate::name`]), so `_` may appear in both
//! parts and a plain `hs_<ns>_<name>_kv` is ambiguous (`a`/`b_c` and `a_b`/`c` share it). The
//! length of the namespace goes first instead: `hs_<len(ns)>_<ns>_<name>_kv`. Reading the digits
//! up to the first `_` gives the length, which tells where the namespace ends; the rest is the
//! name. A JetStream stream name (`KV_<bucket>`, `OBJ_<bucket>`) may have at most
//! [`MAX_STREAM_NAME`] bytes. The few pairs whose readable bucket would be longer (the two
//! names together above about 240 characters) get `hs_h_<sha-256 hex of the pair>_kv` instead:
//! `h` is not a number, so the two forms never meet, and two digests meet only if SHA-256 has a
//! collision.

use sha2::{Digest, Sha256};

/// Longest stream name nats-server accepts (`JSMaxNameLen`).
pub const MAX_STREAM_NAME: usize = 255;
/// Prefix of the stream behind a key-value bucket.
pub const KV_STREAM_PREFIX: &str = "KV_";
/// Prefix of the stream behind an object-store bucket.
pub const OBJECT_STREAM_PREFIX: &str = "OBJ_";
/// Object-store bucket `nex devrun` uploads artifacts to.
pub const DEVRUN_BUCKET: &str = "NEXCLIFILES";

/// The host-service buckets of one workload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkloadBuckets {
    /// Key-value bucket (`kv.*` host calls).
    pub kv: String,
    /// Object-store bucket (`objectStore.*` host calls).
    pub object: String,
}

/// The buckets of workload `name` in `namespace`: `hs_<len(ns)>_<ns>_<name>_kv` and `..._obj`,
/// or the digest form when those would be too long for a stream name. Injective over pairs of
/// valid names (see the module docs).
pub fn workload_buckets(namespace: &str, name: &str) -> WorkloadBuckets {
    let stem = format!("hs_{}_{namespace}_{name}", namespace.len());
    // `OBJ_` + `_obj` is the longer of the two wrappers.
    let stem = if OBJECT_STREAM_PREFIX.len() + stem.len() + "_obj".len() <= MAX_STREAM_NAME {
        stem
    } else {
        let mut h = Sha256::new();
        h.update((namespace.len() as u64).to_be_bytes());
        h.update(namespace.as_bytes());
        h.update(name.as_bytes());
        format!("hs_h_{}", hex::encode(h.finalize()))
    };
    WorkloadBuckets {
        kv: format!("{stem}_kv"),
        object: format!("{stem}_obj"),
    }
}

/// The stream that holds key-value bucket `bucket` (`KV_<bucket>`).
pub fn kv_stream(bucket: &str) -> String {
    format!("{KV_STREAM_PREFIX}{bucket}")
}

/// The stream that holds object-store bucket `bucket` (`OBJ_<bucket>`).
pub fn object_stream(bucket: &str) -> String {
    format!("{OBJECT_STREAM_PREFIX}{bucket}")
}

/// The key prefix of `namespace`'s artifacts in [`DEVRUN_BUCKET`]: `<namespace>/`. A deploy in
/// `namespace` may fetch only keys under it (names contain no `/`, so no namespace's prefix is
/// another's).
pub fn artifact_prefix(namespace: &str) -> String {
    format!("{namespace}/")
}

/// Object `name` of `namespace` in [`DEVRUN_BUCKET`]: `<namespace>/<name>`.
pub fn artifact_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The key `nex devrun` uploads workload `name` of `namespace` to: `<namespace>/<name>-<the
/// first 16 hex digits of its hash>`.
pub fn devrun_key(namespace: &str, name: &str, hash_hex: &str) -> String {
    let short = hash_hex.get(..16).unwrap_or(hash_hex);
    artifact_key(namespace, &format!("{name}-{short}"))
}

/// An artifact location in the object store: `nats://<bucket>/<key>`.
pub fn artifact_location(bucket: &str, key: &str) -> String {
    format!("nats://{bucket}/{key}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn legal_bucket(b: &str) -> bool {
        !b.is_empty()
            && b.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
            && kv_stream(b).len() <= MAX_STREAM_NAME
            && object_stream(b).len() <= MAX_STREAM_NAME
    }

    #[test]
    fn underscores_cannot_make_two_workloads_share_a_bucket() {
        let a = workload_buckets("a", "b_c");
        let b = workload_buckets("a_b", "c");
        assert_ne!(a.kv, b.kv);
        assert_ne!(a.object, b.object);
        assert_eq!(a.kv, "hs_1_a_b_c_kv");
        assert_eq!(b.kv, "hs_3_a_b_c_kv");
        assert_eq!(
            workload_buckets("default", "echo").object,
            "hs_7_default_echo_obj"
        );
    }

    #[test]
    fn the_longest_names_still_make_legal_stream_names() {
        let long = "n".repeat(128);
        for (ns, name) in [
            (long.as_str(), long.as_str()),
            (long.as_str(), "x"),
            ("x", long.as_str()),
        ] {
            let b = workload_buckets(ns, name);
            assert!(legal_bucket(&b.kv), "{}", b.kv);
            assert!(legal_bucket(&b.object), "{}", b.object);
        }
        assert!(
            workload_buckets(&long, &long).kv.starts_with("hs_h_"),
            "two 128-character names need the digest form"
        );
        assert!(workload_buckets(&long, "x").kv.starts_with("hs_128_"));
    }

    #[test]
    fn artifact_keys_live_under_the_namespace() {
        assert_eq!(artifact_prefix("team"), "team/");
        let key = devrun_key("team", "echo", &"ab".repeat(32));
        assert_eq!(key, "team/echo-abababababababab");
        assert!(key.starts_with(&artifact_prefix("team")));
        assert_eq!(
            artifact_location(DEVRUN_BUCKET, &key),
            "nats://NEXCLIFILES/team/echo-abababababababab"
        );
    }

    const NAME: &str = "[a-zA-Z0-9_-]{1,128}";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn distinct_pairs_never_share_a_bucket(
            ns1 in NAME, n1 in NAME, ns2 in NAME, n2 in NAME,
        ) {
            let (b1, b2) = (workload_buckets(&ns1, &n1), workload_buckets(&ns2, &n2));
            prop_assert!(legal_bucket(&b1.kv) && legal_bucket(&b1.object));
            prop_assert_ne!(&b1.kv, &b1.object);
            prop_assert_ne!(&b1.kv, &b2.object);
            if (ns1.as_str(), n1.as_str()) != (ns2.as_str(), n2.as_str()) {
                prop_assert_ne!(&b1.kv, &b2.kv);
                prop_assert_ne!(&b1.object, &b2.object);
            } else {
                prop_assert_eq!(b1, b2);
            }
        }

        /// The case random pairs rarely hit: the same characters split differently between
        /// namespace and name (`a`/`b_c` and `a_b`/`c`).
        #[test]
        fn moving_the_split_changes_the_bucket(
            s in "[ab_-]{2,128}", i in any::<prop::sample::Index>(), j in any::<prop::sample::Index>(),
        ) {
            let (i, j) = (1 + i.index(s.len() - 1), 1 + j.index(s.len() - 1));
            prop_assume!(i != j);
            let a = workload_buckets(&s[..i], &s[i..]);
            let b = workload_buckets(&s[..j], &s[j..]);
            prop_assert_ne!(a.kv, b.kv);
            prop_assert_ne!(a.object, b.object);
        }
    }
}
