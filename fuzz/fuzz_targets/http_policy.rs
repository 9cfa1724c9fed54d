//! The HTTP host service's URL parser and policy: arbitrary URLs and allow/deny lists never
//! panic, and the decisions keep their promises:
//! - a URL the default policy accepts never has a non-public IP-literal host;
//! - a parsed URL serialises without spaces or control characters (no request splitting);
//! - a URL a policy accepts has an IP-literal host outside every deny IP/CIDR entry, and a
//!   non-public one only when an allow entry contains it or private addresses are allowed;
//! - every spelling of one IPv4 address (dotted, one number, hex, octal, IPv4-mapped IPv6) gets
//!   the same decision under the same policy.
//!
//! Input: 4 bytes of an IPv4 address, 1 flag byte, then text lines: the URL, then `+entry`
//! (allow) and `-entry` (deny).
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use nex_hostservices::http::{HttpPolicy, non_public_range, parse_url, policy::canonical};

/// The IP address of an IP-literal host, as the URL serialises it.
fn literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// What an entry means as an address range, if it is one (mirrors the policy's reading of
/// plain addresses and CIDRs).
fn as_net(entry: &str) -> Option<IpNet> {
    let e = entry.trim();
    e.parse::<IpNet>()
        .ok()
        .or_else(|| e.parse::<IpAddr>().ok().map(IpNet::from))
}

fn check(policy: &HttpPolicy, private: bool, url: &str, allow: &[&str], deny: &[&str]) {
    let Ok(u) = parse_url(url) else { return };
    let s = u.as_str();
    assert!(!s.bytes().any(|b| b <= b' ' || b == 0x7f), "{s:?}");
    let host = u.host_str().expect("parse_url insists on a host");
    let ip = literal(host);
    if HttpPolicy::default().check_url(&u).is_ok()
        && let Some(ip) = ip
    {
        assert_eq!(non_public_range(ip), None, "{url:?} -> {ip}");
    }
    if policy.check_url(&u).is_ok()
        && let Some(ip) = ip
    {
        let canon = canonical(ip);
        for net in deny.iter().filter_map(|e| as_net(e)) {
            // An entry inside ::ffff:0:0/96 is read as IPv4; a wider IPv6 CIDR (`::/0`) does
            // not cover IPv4 addresses, however they are spelled.
            let mapped = net.prefix_len() >= 96 && net.contains(&ip);
            assert!(!net.contains(&canon) && !mapped, "{url:?} denied by {net}");
        }
        if non_public_range(ip).is_some() && !private {
            assert!(
                allow
                    .iter()
                    .filter_map(|e| as_net(e))
                    .any(|n| n.contains(&ip) || n.contains(&canon))
                    || allow.iter().any(|e| {
                        // Numeric spellings (`127.1`) and mapped CIDRs: ask the policy itself.
                        HttpPolicy::new(&[*e], &[])
                            .is_ok_and(|p| p.check_addr(None, ip).is_ok())
                    }),
                "{url:?}: non-public {ip} accepted without an allow entry"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut head = [0u8; 5];
    let n = data.len().min(5);
    head[..n].copy_from_slice(&data[..n]);
    let v4 = Ipv4Addr::new(head[0], head[1], head[2], head[3]);
    let private = head[4] & 1 == 1;
    let text = String::from_utf8_lossy(&data[n..]);
    let mut lines = text.split('\n');
    let url = lines.next().unwrap_or("");
    let (mut allow, mut deny) = (Vec::new(), Vec::new());
    for line in lines {
        if let Some(e) = line.strip_prefix('+') {
            allow.push(e);
        } else if let Some(e) = line.strip_prefix('-') {
            deny.push(e);
        }
    }
    // A list with a malformed entry is refused whole (the node would not start); fall back to
    // the default policy and check against no entries.
    let (policy, private, allow, deny) = match HttpPolicy::new(&allow, &deny) {
        Ok(p) => (p.with_private_addresses(private), private, allow, deny),
        Err(_) => (HttpPolicy::default(), false, Vec::new(), Vec::new()),
    };
    check(&policy, private, url, &allow, &deny);

    // Every spelling of `v4` is one address with one decision.
    let [a, b, c, d] = v4.octets();
    let bits = u32::from(v4);
    let spellings = [
        format!("http://{v4}/"),
        format!("http://{bits}/"),
        format!("http://{bits:#x}/"),
        format!("http://0{a:o}.0{b:o}.0{c:o}.0{d:o}/"),
        format!("http://{a}.{}/", bits & 0x00ff_ffff),
        format!("http://[::ffff:{v4}]/"),
        format!("http://[::ffff:{:x}:{:x}]/", bits >> 16, bits & 0xffff),
    ];
    let decision = |p: &HttpPolicy, url: &str| {
        let u = parse_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        p.check_url(&u).is_ok()
    };
    for p in [&policy, &HttpPolicy::default()] {
        let first = decision(p, &spellings[0]);
        for s in &spellings[1..] {
            assert_eq!(decision(p, s), first, "{s} vs {}", spellings[0]);
        }
    }
    for s in &spellings {
        check(&policy, private, s, &allow, &deny);
    }
});
