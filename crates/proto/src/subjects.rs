//! Every NATS subject of the nex control plane, events and logs.
//!
//! Other crates never format a subject by hand: they call a function here.

/// Root of all control subjects.
pub const PREFIX: &str = "$NEX";
/// Namespace used for node-level events.
pub const SYSTEM_NAMESPACE: &str = "system";
/// Namespace used when none is given.
pub const DEFAULT_NAMESPACE: &str = "default";

/// `$NEX.PING`: every node answers.
pub const PING: &str = "$NEX.PING";
/// `$NEX.AUCTION`: nodes that match the request answer.
pub const AUCTION: &str = "$NEX.AUCTION";

/// `$NEX.PRESENCE`: every node's beacon ([`crate::deployments::Presence`]), every presence
/// interval and on every change of what it runs.
pub const PRESENCE: &str = "$NEX.PRESENCE";

/// `$NEX.PING.<node>`: one node answers.
pub fn ping_node(node: &str) -> String {
    format!("{PREFIX}.PING.{node}")
}

/// `$NEX.WPING.<ns>[.<workload>]`: nodes running a matching workload answer.
pub fn workload_ping(namespace: &str, workload: Option<&str>) -> String {
    match workload {
        Some(w) => format!("{PREFIX}.WPING.{namespace}.{w}"),
        None => format!("{PREFIX}.WPING.{namespace}"),
    }
}

/// `$NEX.INFO.<ns>.<node>`.
pub fn info(namespace: &str, node: &str) -> String {
    format!("{PREFIX}.INFO.{namespace}.{node}")
}

/// `$NEX.DEPLOY.<ns>.<node>`.
pub fn deploy(namespace: &str, node: &str) -> String {
    format!("{PREFIX}.DEPLOY.{namespace}.{node}")
}

/// `$NEX.STOP.<ns>.<node>`.
pub fn stop(namespace: &str, node: &str) -> String {
    format!("{PREFIX}.STOP.{namespace}.{node}")
}

/// `$NEX.LAMEDUCK.<node>`.
pub fn lameduck(node: &str) -> String {
    format!("{PREFIX}.LAMEDUCK.{node}")
}

/// `$NEX.events.<ns>.<event_type>`.
pub fn event(namespace: &str, event_type: &str) -> String {
    format!("{PREFIX}.events.{namespace}.{event_type}")
}

/// Wildcard over events: all namespaces when `namespace` is `None`.
pub fn events_filter(namespace: Option<&str>) -> String {
    format!("{PREFIX}.events.{}.>", namespace.unwrap_or("*"))
}

/// `$NEX.logs.<ns>.<node>.<workload_name>.<workload_id>`.
pub fn log(namespace: &str, node: &str, workload_name: &str, workload_id: &str) -> String {
    format!("{PREFIX}.logs.{namespace}.{node}.{workload_name}.{workload_id}")
}

/// Wildcard over logs of a namespace, optionally one workload name.
pub fn logs_filter(namespace: &str, workload_name: Option<&str>) -> String {
    format!(
        "{PREFIX}.logs.{namespace}.*.{}.*",
        workload_name.unwrap_or("*")
    )
}

/// Queue group for a function's trigger subscriptions: replicas of one function share messages,
/// different functions on one subject each see every message.
pub fn trigger_queue_group(namespace: &str, workload_name: &str) -> String {
    format!("{namespace}.{workload_name}")
}

/// Subjects a node listens on for control requests addressed to `node` (or to all nodes).
pub struct ControlSubjects {
    pub ping: &'static str,
    pub ping_node: String,
    pub auction: &'static str,
    pub workload_ping: String,
    pub info: String,
    pub deploy: String,
    pub stop: String,
    pub lameduck: String,
}

impl ControlSubjects {
    /// The subscriptions of node `node`.
    pub fn for_node(node: &str) -> Self {
        Self {
            ping: PING,
            ping_node: ping_node(node),
            auction: AUCTION,
            workload_ping: format!("{PREFIX}.WPING.>"),
            info: info("*", node),
            deploy: deploy("*", node),
            stop: stop("*", node),
            lameduck: lameduck(node),
        }
    }
}

/// The namespace token of a `$NEX.<VERB>.<ns>.<node>` subject.
pub fn namespace_of(subject: &str) -> Option<&str> {
    subject.split('.').nth(2)
}

/// Splits `$NEX.WPING.<ns>[.<workload>]` into namespace and optional workload.
pub fn parse_workload_ping(subject: &str) -> Option<(&str, Option<&str>)> {
    let mut parts = subject.split('.');
    if parts.next()? != PREFIX || parts.next()? != "WPING" {
        return None;
    }
    let ns = parts.next()?;
    Some((ns, parts.next()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_the_protocol() {
        assert_eq!(deploy("default", "NABC"), "$NEX.DEPLOY.default.NABC");
        assert_eq!(
            log("default", "N1", "echo", "w1"),
            "$NEX.logs.default.N1.echo.w1"
        );
        assert_eq!(logs_filter("ns", None), "$NEX.logs.ns.*.*.*");
        assert_eq!(namespace_of("$NEX.STOP.team.NABC"), Some("team"));
        assert_eq!(
            parse_workload_ping("$NEX.WPING.ns.echo"),
            Some(("ns", Some("echo")))
        );
        assert_eq!(parse_workload_ping("$NEX.WPING.ns"), Some(("ns", None)));
    }
}
