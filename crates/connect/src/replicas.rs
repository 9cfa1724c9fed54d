//! How many copies the JetStream streams nex creates get (the CLI's `NEXCLIFILES`, a function's
//! key-value bucket and object store).
//!
//! The default, [`Replicas::Auto`], is `min(3, cluster size)` without asking anyone for the
//! cluster size: a server that is not in a cluster (`server_info().cluster` is empty) gets one
//! copy, and on a cluster nex asks JetStream for 3 copies, then 2, then 1, taking the first it
//! can place. JetStream itself knows how many servers can hold a copy, so this needs no
//! system-account access and stays right with `no_advertise` (which hides the other servers'
//! URLs from clients). A stream created while servers are down gets fewer copies; a fixed
//! count ([`Replicas::Exactly`]) never gets fewer: its creation fails until JetStream can place
//! it. A stream that exists already with fewer copies is raised by a stream update (never
//! lowered), so buckets made with one copy by older versions get three on first use.

use std::fmt;

use async_nats::jetstream::{self, context::CreateStreamErrorKind, stream};
use serde::{Deserialize, Deserializer};

/// The most copies JetStream keeps of a stream.
pub const MAX_REPLICAS: usize = 5;

/// How many copies a stream nex creates gets (`bucket_replicas` in the node config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Replicas {
    /// `min(3, cluster size)`: 1 on a lone server, else the most of 3, 2, 1 JetStream can place.
    #[default]
    Auto,
    /// Exactly this many (1 to [`MAX_REPLICAS`]); creation fails when JetStream cannot place
    /// them.
    Exactly(usize),
}

/// A replica count outside 1 to [`MAX_REPLICAS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bucket replicas must be 1 to {MAX_REPLICAS} or \"auto\", not {0}")]
pub struct BadReplicas(pub String);

impl Replicas {
    /// A fixed count, checked.
    pub fn exactly(n: usize) -> Result<Self, BadReplicas> {
        if (1..=MAX_REPLICAS).contains(&n) {
            Ok(Self::Exactly(n))
        } else {
            Err(BadReplicas(n.to_string()))
        }
    }

    /// The counts to try, most first: on a lone server, `Auto` is 1.
    pub fn candidates(self, clustered: bool) -> Vec<usize> {
        match self {
            Self::Exactly(n) => vec![n],
            Self::Auto if clustered => vec![3, 2, 1],
            Self::Auto => vec![1],
        }
    }
}

impl fmt::Display for Replicas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Exactly(n) => write!(f, "{n}"),
        }
    }
}

impl std::str::FromStr for Replicas {
    type Err = BadReplicas;
    fn from_str(s: &str) -> Result<Self, BadReplicas> {
        if s == "auto" {
            return Ok(Self::Auto);
        }
        s.parse::<usize>()
            .map_err(|_| BadReplicas(format!("{s:?}")))
            .and_then(Self::exactly)
    }
}

impl<'de> Deserialize<'de> for Replicas {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(i64),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(n) => usize::try_from(n)
                .map_err(|_| BadReplicas(n.to_string()))
                .and_then(Self::exactly),
            Raw::Word(w) => w.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// Does JetStream refuse `config` only because it cannot place that many copies?
fn too_many_copies(e: &jetstream::context::CreateStreamError) -> bool {
    match e.kind() {
        // 10005 no suitable peers, 10023 insufficient resources, 10074 replicas > 1 on a server
        // that is not clustered.
        CreateStreamErrorKind::JetStream(js) => {
            matches!(js.error_code().0, 10005 | 10023 | 10074)
        }
        _ => false,
    }
}

/// The stream `config` names, created with the copies `replicas` asks for when it does not
/// exist yet (its `num_replicas` is ignored). An existing stream with fewer copies than
/// `replicas` asks for is raised (a stream update; an `Auto` stream on a cluster to the most of
/// 3, 2 that JetStream can place); when that fails it is used as it is. Copies are never lowered.
pub async fn get_or_create_stream(
    js: &jetstream::Context,
    mut config: stream::Config,
    replicas: Replicas,
) -> Result<stream::Stream, jetstream::context::CreateStreamError> {
    let clustered = js.client().server_info().cluster.is_some();
    let candidates = replicas.candidates(clustered);
    if let Ok(s) = js.get_stream(&config.name).await {
        raise(js, &s, &candidates).await;
        return Ok(s);
    }
    let last = candidates.len() - 1;
    for (i, n) in candidates.into_iter().enumerate() {
        config.num_replicas = n;
        match js.get_or_create_stream(config.clone()).await {
            Ok(s) => {
                tracing::debug!(stream = %config.name, replicas = n, "stream created");
                return Ok(s);
            }
            Err(e) if i < last && too_many_copies(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("at least one candidate")
}

/// Waits (up to 5 s) until stream `name` has a leader again: a stream whose copies were just
/// raised takes no messages while its new group elects one.
async fn wait_for_leader(js: &jetstream::Context, name: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if let Ok(mut s) = js.get_stream(name).await
            && let Ok(info) = s.info().await
            && info.cluster.as_ref().is_some_and(|c| c.leader.is_some())
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Raises existing stream `s` to the first of `candidates` above its copies that JetStream
/// accepts; keeps it as it is when none is.
async fn raise(js: &jetstream::Context, s: &stream::Stream, candidates: &[usize]) {
    let info = s.cached_info();
    let now = info.config.num_replicas.max(1);
    for &n in candidates.iter().filter(|&&n| n > now) {
        let mut config = info.config.clone();
        config.num_replicas = n;
        match js.update_stream(config).await {
            Ok(_) => {
                tracing::info!(stream = %info.config.name, from = now, to = n, "stream copies raised");
                wait_for_leader(js, &info.config.name).await;
                return;
            }
            Err(e) => {
                tracing::debug!(stream = %info.config.name, to = n, error = %e, "stream copies not raised");
            }
        }
    }
}

/// The stream behind JetStream object store `bucket`, as async-nats's `create_object_store`
/// makes it (`OBJ_<bucket>`, chunks and metadata subjects), so it can be created with
/// [`get_or_create_stream`] and opened with `get_object_store`.
pub fn object_store_stream(bucket: &str) -> stream::Config {
    stream::Config {
        name: format!("OBJ_{bucket}"),
        subjects: vec![format!("$O.{bucket}.C.>"), format!("$O.{bucket}.M.>")],
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        allow_direct: true,
        ..Default::default()
    }
}

/// The stream behind JetStream key-value bucket `bucket` keeping `history` values per key, as
/// async-nats's `create_key_value` makes it (`KV_<bucket>`, subjects `$KV.<bucket>.>`), so it
/// can be created with [`get_or_create_stream`] and opened with `get_key_value`.
pub fn key_value_stream(bucket: &str, history: i64) -> stream::Config {
    stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: history.max(1),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_one_alone_and_three_down_to_one_on_a_cluster() {
        assert_eq!(Replicas::Auto.candidates(false), vec![1]);
        assert_eq!(Replicas::Auto.candidates(true), vec![3, 2, 1]);
        assert_eq!(Replicas::Exactly(2).candidates(true), vec![2]);
    }

    #[test]
    fn config_takes_a_count_or_auto_and_refuses_the_rest() {
        let parse = |s: &str| serde_json::from_str::<Replicas>(s);
        assert_eq!(parse("3").unwrap(), Replicas::Exactly(3));
        assert_eq!(parse("\"auto\"").unwrap(), Replicas::Auto);
        for bad in ["0", "6", "-1", "10000", "\"three\""] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("bucket replicas must be 1 to 5"), "{bad}: {e}");
        }
    }
}
