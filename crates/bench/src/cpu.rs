//! CPU time per request, by process: where the microseconds of a request go under load. Read
//! from `/proc/<pid>/stat` (user + system time of all of a process's threads, ended ones
//! included) before and after a throughput run, and divided by the requests answered in it.
//! Every process the benchmark started is counted for every target: the ones a target does not
//! use stay idle and add next to nothing.

/// The processes whose CPU time is counted.
pub struct Watch {
    pub nats: u32,
    /// The `nex node` processes (one, or two with `--before`); their children (the agents) are
    /// found at each reading.
    pub nodes: Vec<u32>,
    /// The hand-written responders (the floor, Node.js, Python).
    pub responders: Vec<u32>,
}

/// CPU time of each group, in clock ticks, at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ticks {
    client: u64,
    nats: u64,
    responders: u64,
    node: u64,
    agents: u64,
}

/// CPU per request of one run, µs.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerRequest {
    /// This process: the requesting client.
    pub client_us: f64,
    pub nats_us: f64,
    pub responders_us: f64,
    pub node_us: f64,
    pub agents_us: f64,
}

impl PerRequest {
    pub fn total_us(&self) -> f64 {
        self.client_us + self.nats_us + self.responders_us + self.node_us + self.agents_us
    }

    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "client_us": self.client_us, "nats_server_us": self.nats_us,
            "responders_us": self.responders_us, "nex_node_us": self.node_us,
            "agents_us": self.agents_us, "total_us": self.total_us(),
        })
    }

    /// The median of each field across rounds.
    pub fn median(rounds: &[PerRequest]) -> PerRequest {
        let med = |f: fn(&PerRequest) -> f64| {
            let mut v: Vec<f64> = rounds.iter().map(f).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        };
        PerRequest {
            client_us: med(|r| r.client_us),
            nats_us: med(|r| r.nats_us),
            responders_us: med(|r| r.responders_us),
            node_us: med(|r| r.node_us),
            agents_us: med(|r| r.agents_us),
        }
    }
}

/// User + system time of `pid`, in clock ticks (0 when it is gone).
fn ticks_of(pid: u32) -> u64 {
    stat_fields(pid).map_or(0, |f| {
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        num(11) + num(12)
    })
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces): the
/// state is field 0, the parent's pid field 1, utime field 11 and stime field 12.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Processes whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            stat_fields(pid)
                .and_then(|f| f.get(1)?.parse::<u32>().ok())
                .is_some_and(|ppid| ppid == parent)
        })
        .collect()
}

impl Watch {
    pub fn read(&self) -> Ticks {
        Ticks {
            client: ticks_of(std::process::id()),
            nats: ticks_of(self.nats),
            responders: self.responders.iter().map(|&p| ticks_of(p)).sum(),
            node: self.nodes.iter().map(|&p| ticks_of(p)).sum(),
            agents: self
                .nodes
                .iter()
                .flat_map(|&p| children(p))
                .map(ticks_of)
                .sum(),
        }
    }
}

/// CPU per request between two readings, over `requests` answered.
pub fn per_request(before: Ticks, after: Ticks, requests: u64) -> PerRequest {
    // SAFETY: `sysconf` only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let us = |a: u64, b: u64| b.saturating_sub(a) as f64 / hz * 1e6 / requests.max(1) as f64;
    PerRequest {
        client_us: us(before.client, after.client),
        nats_us: us(before.nats, after.nats),
        responders_us: us(before.responders, after.responders),
        node_us: us(before.node, after.node),
        agents_us: us(before.agents, after.agents),
    }
}
