//! Memory of agent processes, from `/proc`: resident set (RSS), proportional set (PSS: shared
//! pages divided among the processes that map them) and private pages (what one more function
//! really costs). RSS counts the pages of the `nex` executable and libc that every agent maps
//! and shares, so it overstates the cost of each.

/// Memory of one process, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub private_kib: u64,
}

impl std::ops::Add for Usage {
    type Output = Usage;
    fn add(self, o: Usage) -> Usage {
        Usage {
            rss_kib: self.rss_kib + o.rss_kib,
            pss_kib: self.pss_kib + o.pss_kib,
            private_kib: self.private_kib + o.private_kib,
        }
    }
}

pub fn usage(pid: u32) -> Option<Usage> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(Usage {
        rss_kib: field("Rss:"),
        pss_kib: field("Pss:"),
        private_kib: field("Private_Clean:") + field("Private_Dirty:"),
    })
}
