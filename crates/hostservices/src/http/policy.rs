//! Where the `http` host service may connect: pure decisions, no I/O.
//!
//! A destination is decided on its **IP address** (after the WHATWG URL parser has normalised
//! every numeric form of an IPv4 literal, and after DNS for names), in this order:
//!
//! 1. **Deny wins.** A `deny_hosts` entry that names the URL's host, or whose IP/CIDR contains
//!    the address, refuses it, whatever else is configured.
//! 2. **A non-empty allow list means only those.** With `allow_hosts` set, the host name must be
//!    listed or the address must lie in a listed IP/CIDR.
//! 3. **Non-public addresses are refused** ([`non_public_range`]: loopback, private, link-local,
//!    CGNAT, unique-local, multicast, broadcast, unspecified, documentation and other special
//!    ranges, and IPv4-mapped forms of them) unless an `allow_hosts` **IP or CIDR** entry contains
//!    the address, or `allow_private_addresses` is set. A host *name* in `allow_hosts` does not
//!    lift this: whoever controls a name's DNS controls its address.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are decided as the IPv4 address they map to,
//! for the range checks and for list entries alike (an entry inside `::ffff:0:0/96` is read as
//! the IPv4 address or CIDR it maps to).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};
use url::{Host, Url};

/// A malformed `allow_hosts` / `deny_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The entry is none of: host name, `*.`-prefixed name, IP address, CIDR.
    #[error("`{entry}` is not a host name, `*.domain`, IP address or CIDR")]
    Invalid { entry: String },
}

/// A URL the client does not take (before any policy question).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The WHATWG parser refused it.
    #[error("not a URL: {0}")]
    Parse(#[from] url::ParseError),
    /// Only `http` and `https`.
    #[error("scheme `{0}` is not supported (only http:// and https://)")]
    Scheme(String),
    /// `user:password@` in the URL.
    #[error("credentials in the URL are not supported (send an Authorization header)")]
    Credentials,
}

/// Why a destination is refused. Every message says "not allowed by this node".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// A `deny_hosts` name matches the URL's host.
    #[error("host `{host}` is not allowed by this node (deny_hosts)")]
    HostDenied { host: String },
    /// A `deny_hosts` IP or CIDR contains the address.
    #[error("{} is not allowed by this node (deny_hosts `{rule}`)", dest(.host, .addr))]
    AddrDenied {
        host: Option<String>,
        addr: IpAddr,
        rule: IpNet,
    },
    /// `allow_hosts` is not empty and matches neither the name nor the address.
    #[error("{} is not allowed by this node (not in allow_hosts)", dest_opt(.host, .addr))]
    NotAllowed {
        host: Option<String>,
        addr: Option<IpAddr>,
    },
    /// The address lies in a non-public range that no `allow_hosts` IP/CIDR lists.
    #[error(
        "{} is not allowed by this node ({range} address; an allow_hosts IP or CIDR entry opens it)",
        dest(.host, .addr)
    )]
    NonPublic {
        host: Option<String>,
        addr: IpAddr,
        range: &'static str,
    },
}

fn dest(host: &Option<String>, addr: &IpAddr) -> String {
    match host {
        Some(h) => format!("`{h}` ({addr})"),
        None => addr.to_string(),
    }
}

fn dest_opt(host: &Option<String>, addr: &Option<IpAddr>) -> String {
    match (host, addr) {
        (h, Some(a)) => dest(h, a),
        (Some(h), None) => format!("host `{h}`"),
        (None, None) => "the destination".into(),
    }
}

/// One list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// An exact host name (lower case, no trailing dot).
    Name(String),
    /// `*.example.com`: every name below `example.com` (stored as `.example.com`), not the
    /// name itself.
    Suffix(String),
    /// An address (as a /32 or /128) or a CIDR.
    Net(IpNet),
}

impl Rule {
    fn parse(entry: &str) -> Result<Rule, RuleError> {
        let invalid = || RuleError::Invalid {
            entry: entry.to_owned(),
        };
        let e = entry.trim();
        if e.is_empty() {
            return Err(invalid());
        }
        if let Ok(net) = e.parse::<IpNet>() {
            return Ok(Rule::Net(canonical_net(net.trunc())));
        }
        if let Ok(ip) = e.parse::<IpAddr>() {
            return Ok(Rule::Net(canonical(ip).into()));
        }
        if let Some(v6) = e.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            let ip = v6.parse::<Ipv6Addr>().map_err(|_| invalid())?;
            return Ok(Rule::Net(canonical(IpAddr::V6(ip)).into()));
        }
        let (wild, name) = match e.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, e),
        };
        if name.contains('*') {
            return Err(invalid());
        }
        // The URL parser's own host rules: IDNA, lower case, and every numeric IPv4 form
        // (`127.1`, `0x7f000001`) as the address it means.
        match Host::parse(name).map_err(|_| invalid())? {
            Host::Domain(d) => {
                let d = normal_name(&d);
                if d.is_empty() {
                    Err(invalid())
                } else if wild {
                    Ok(Rule::Suffix(format!(".{d}")))
                } else {
                    Ok(Rule::Name(d))
                }
            }
            Host::Ipv4(a) if !wild => Ok(Rule::Net(IpAddr::V4(a).into())),
            Host::Ipv6(a) if !wild => Ok(Rule::Net(IpAddr::V6(a).into())),
            _ => Err(invalid()),
        }
    }

    fn matches_name(&self, name: &str) -> bool {
        match self {
            Rule::Name(n) => n == name,
            Rule::Suffix(s) => name.ends_with(s.as_str()),
            Rule::Net(_) => false,
        }
    }

    fn net(&self) -> Option<&IpNet> {
        match self {
            Rule::Net(n) => Some(n),
            _ => None,
        }
    }
}

fn normal_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; every other address as it is.
pub fn canonical(addr: IpAddr) -> IpAddr {
    addr.to_canonical()
}

/// A CIDR inside `::ffff:0:0/96` as the IPv4 CIDR it maps to; every other CIDR as it is.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.network().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, n.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        _ => net,
    }
}

/// Which hosts the HTTP client may reach (see the module docs for the order of the rules).
/// The default refuses every non-public address and allows every public one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpPolicy {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
    allow_private_addresses: bool,
}

impl HttpPolicy {
    /// A policy from the node config's `allow_hosts` and `deny_hosts` entries: host names
    /// (case-insensitive, exact), `*.domain` (every name below it), IP addresses (any form the
    /// URL parser takes, `[::1]` too) and CIDRs.
    pub fn new<S: AsRef<str>>(allow: &[S], deny: &[S]) -> Result<Self, RuleError> {
        let parse = |list: &[S]| -> Result<Vec<Rule>, RuleError> {
            list.iter().map(|e| Rule::parse(e.as_ref())).collect()
        };
        Ok(Self {
            allow: parse(allow)?,
            deny: parse(deny)?,
            allow_private_addresses: false,
        })
    }

    /// Lets the client reach non-public addresses (still subject to both lists).
    pub fn with_private_addresses(mut self, allowed: bool) -> Self {
        self.allow_private_addresses = allowed;
        self
    }

    /// The decision that can be made from the URL alone: the whole decision for an IP-literal
    /// host, the name checks for a domain (its addresses are decided by [`Self::check_addr`]
    /// once resolved).
    pub fn check_url(&self, url: &Url) -> Result<(), Denied> {
        match url.host() {
            Some(Host::Domain(d)) => self.check_name(d),
            Some(Host::Ipv4(a)) => self.check_addr(None, IpAddr::V4(a)),
            Some(Host::Ipv6(a)) => self.check_addr(None, IpAddr::V6(a)),
            // `parse_url` refuses host-less URLs; refuse here too rather than guess.
            None => Err(Denied::NotAllowed {
                host: None,
                addr: None,
            }),
        }
    }

    /// Before resolving `name`: refused when a deny entry names it, or when the allow list has
    /// neither this name nor any address entry the name could resolve into.
    pub fn check_name(&self, name: &str) -> Result<(), Denied> {
        let name = normal_name(name);
        if self.deny.iter().any(|r| r.matches_name(&name)) {
            return Err(Denied::HostDenied { host: name });
        }
        if !self.allow.is_empty()
            && !self.allow.iter().any(|r| r.matches_name(&name))
            && !self.allow.iter().any(|r| r.net().is_some())
        {
            return Err(Denied::NotAllowed {
                host: Some(name),
                addr: None,
            });
        }
        Ok(())
    }

    /// The decision for connecting to `addr`, reached through host `name` (`None` for an IP
    /// literal).
    pub fn check_addr(&self, name: Option<&str>, addr: IpAddr) -> Result<(), Denied> {
        let name = name.map(normal_name);
        let canon = canonical(addr);
        let contains = |n: &IpNet| n.contains(&canon);
        if let Some(n) = &name
            && self.deny.iter().any(|r| r.matches_name(n))
        {
            return Err(Denied::HostDenied { host: n.clone() });
        }
        if let Some(rule) = self.deny.iter().filter_map(Rule::net).find(|n| contains(n)) {
            return Err(Denied::AddrDenied {
                host: name,
                addr: canon,
                rule: *rule,
            });
        }
        let net_allowed = self.allow.iter().filter_map(Rule::net).any(contains);
        let name_allowed = name
            .as_deref()
            .is_some_and(|n| self.allow.iter().any(|r| r.matches_name(n)));
        if !self.allow.is_empty() && !net_allowed && !name_allowed {
            return Err(Denied::NotAllowed {
                host: name,
                addr: Some(canon),
            });
        }
        if !net_allowed
            && !self.allow_private_addresses
            && let Some(range) = non_public_range(addr)
        {
            return Err(Denied::NonPublic {
                host: name,
                addr: canon,
                range,
            });
        }
        Ok(())
    }
}

/// Parses a URL the way a browser does (WHATWG): `127.1`, `2130706433`, `0x7f000001` and
/// `0177.0.0.1` all become `127.0.0.1`; tabs and newlines are removed and other control
/// characters percent-encoded, so no request line can be split. Only `http`/`https`, with a
/// host and without credentials.
pub fn parse_url(text: &str) -> Result<Url, UrlError> {
    let url = Url::parse(text)?;
    check_url_shape(&url)?;
    Ok(url)
}

/// The scheme and credential checks of [`parse_url`], for URLs parsed elsewhere (redirects).
pub fn check_url_shape(url: &Url) -> Result<(), UrlError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Scheme(url.scheme().to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    if url.host().is_none() {
        return Err(UrlError::Parse(url::ParseError::EmptyHost));
    }
    Ok(())
}

/// IPv4 special-purpose ranges that are not publicly routable, from the IANA registry
/// (RFC 6890 and successors). First match names the range.
const V4: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, "unspecified"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private"),
    (Ipv4Addr::new(100, 64, 0, 0), 10, "shared (CGNAT)"),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link-local"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private"),
    (Ipv4Addr::new(192, 0, 0, 0), 24, "IETF protocol"),
    (Ipv4Addr::new(192, 0, 2, 0), 24, "documentation"),
    (Ipv4Addr::new(192, 88, 99, 0), 24, "6to4 relay"),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking"),
    (Ipv4Addr::new(198, 51, 100, 0), 24, "documentation"),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "documentation"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    (Ipv4Addr::new(255, 255, 255, 255), 32, "broadcast"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved"),
];

/// IPv6 ranges that are not publicly routable (and, after these, everything outside 2000::/3).
/// IPv4-mapped addresses never get here (they are decided as IPv4); NAT64 addresses are decided
/// by the IPv4 address they embed.
const V6: &[(Ipv6Addr, u8, &str)] = &[
    (Ipv6Addr::UNSPECIFIED, 128, "unspecified"),
    (Ipv6Addr::LOCALHOST, 128, "loopback"),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96, "IPv4-compatible"),
    (
        Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0),
        96,
        "IPv4-translated",
    ),
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        "NAT64 local-use",
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        "discard-only",
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "documentation",
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        "IETF protocol (Teredo, ...)",
    ),
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16, "6to4"),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        "documentation",
    ),
    (Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16, "SRv6 SID"),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "unique-local",
    ),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local"),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, "site-local"),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
];

/// `2000::/3`, the only IPv6 space allocated for global unicast.
const GLOBAL_UNICAST: Ipv6Addr = Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0);

/// The NAT64 well-known prefix `64:ff9b::/96`: the last 32 bits are an IPv4 address.
const NAT64: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0);

fn in_prefix(addr: u128, base: u128, len: u8, bits: u32) -> bool {
    let shift = bits - u32::from(len);
    len == 0 || (addr ^ base) >> shift == 0
}

/// The name of the non-public range `addr` lies in, or `None` for a public address.
pub fn non_public_range(addr: IpAddr) -> Option<&'static str> {
    match canonical(addr) {
        IpAddr::V4(a) => V4
            .iter()
            .find(|(base, len, _)| {
                in_prefix(
                    u128::from(u32::from(a)),
                    u128::from(u32::from(*base)),
                    *len,
                    32,
                )
            })
            .map(|(_, _, name)| *name),
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            if in_prefix(bits, u128::from(NAT64), 96, 128) {
                let v4 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
                return non_public_range(IpAddr::V4(v4)).map(|_| "NAT64 of a non-public");
            }
            V6.iter()
                .find(|(base, len, _)| in_prefix(bits, u128::from(*base), *len, 128))
                .map(|(_, _, name)| *name)
                // Only 2000::/3 is allocated for global unicast; the rest is reserved.
                .or((!in_prefix(bits, u128::from(GLOBAL_UNICAST), 3, 128)).then_some("reserved"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn host_of(url: &str) -> String {
        parse_url(url).unwrap().host_str().unwrap().to_owned()
    }

    fn policy(allow: &[&str], deny: &[&str]) -> HttpPolicy {
        HttpPolicy::new(allow, deny).unwrap()
    }

    /// The default policy's decision for a URL with an IP-literal host.
    fn default_url(url: &str) -> Result<(), Denied> {
        HttpPolicy::default().check_url(&parse_url(url).unwrap())
    }

    #[test]
    fn every_numeric_form_of_loopback_is_normalised_and_refused() {
        for (url, host) in [
            ("http://127.0.0.1/", "127.0.0.1"),
            ("http://127.1/", "127.0.0.1"),
            ("http://2130706433/", "127.0.0.1"),
            ("http://0x7f000001/", "127.0.0.1"),
            ("http://0x7f.1/", "127.0.0.1"),
            ("http://0177.0.0.1/", "127.0.0.1"),
            ("http://0177.1/", "127.0.0.1"),
            ("http://127.000.000.001/", "127.0.0.1"),
            ("http://0.0.0.0/", "0.0.0.0"),
            ("http://0/", "0.0.0.0"),
            ("http://[::1]/", "[::1]"),
            ("http://[0:0:0:0:0:0:0:1]/", "[::1]"),
            ("http://[::ffff:127.0.0.1]/", "[::ffff:7f00:1]"),
            ("http://[::ffff:7f00:1]/", "[::ffff:7f00:1]"),
            ("http://[::]/", "[::]"),
            ("http://[::127.0.0.1]/", "[::7f00:1]"),
            ("HTTP://127.0.0.1:8080/x", "127.0.0.1"),
        ] {
            assert_eq!(host_of(url), host, "{url}");
            let e = default_url(url).unwrap_err();
            assert!(matches!(e, Denied::NonPublic { .. }), "{url}: {e:?}");
        }
        // Mapped forms are decided (and reported) as the IPv4 address they map to.
        assert!(matches!(
            default_url("http://[::ffff:127.0.0.1]/"),
            Err(Denied::NonPublic { addr, range: "loopback", .. }) if addr == ip("127.0.0.1")
        ));
    }

    #[test]
    fn every_non_public_range_is_refused_by_default() {
        for (addr, range) in [
            ("0.0.0.0", "unspecified"),
            ("0.255.1.2", "unspecified"),
            ("10.0.0.1", "private"),
            ("10.255.255.255", "private"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("100.127.255.254", "shared (CGNAT)"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("169.254.169.254", "link-local"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.0.0.8", "IETF protocol"),
            ("192.0.2.1", "documentation"),
            ("192.88.99.1", "6to4 relay"),
            ("192.168.1.1", "private"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::7f00:1", "IPv4-compatible"),
            ("::a00:1", "IPv4-compatible"),
            ("::ffff:0:a00:1", "IPv4-translated"),
            ("64:ff9b:1::1", "NAT64 local-use"),
            ("64:ff9b::7f00:1", "NAT64 of a non-public"),
            ("64:ff9b::a9fe:a9fe", "NAT64 of a non-public"),
            ("100::1", "discard-only"),
            ("2001::1", "IETF protocol (Teredo, ...)"),
            ("2001:db8::1", "documentation"),
            ("2002:7f00:1::1", "6to4"),
            ("3fff::1", "documentation"),
            ("5f00::1", "SRv6 SID"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("fbff::1", "reserved"),
            ("fe00::1", "reserved"),
            ("4000::1", "reserved"),
            ("1fff::1", "reserved"),
            // IPv4-mapped forms of the IPv4 ranges.
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.1.2.3", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:100.64.0.1", "shared (CGNAT)"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("::ffff:255.255.255.255", "broadcast"),
        ] {
            assert_eq!(non_public_range(ip(addr)), Some(range), "{addr}");
            let e = HttpPolicy::default()
                .check_addr(None, ip(addr))
                .unwrap_err();
            assert!(matches!(e, Denied::NonPublic { .. }), "{addr}: {e:?}");
            let e = HttpPolicy::default()
                .check_addr(Some("example.com"), ip(addr))
                .unwrap_err();
            assert!(matches!(e, Denied::NonPublic { .. }), "{addr}: {e:?}");
        }
    }

    #[test]
    fn public_addresses_and_the_edges_of_the_ranges_are_allowed_by_default() {
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2606:4700::1111",
            "2a00:1450::1",
            "2001:200::1",
            "2400:cb00::1",
        ] {
            assert_eq!(non_public_range(ip(addr)), None, "{addr}");
            assert_eq!(HttpPolicy::default().check_addr(None, ip(addr)), Ok(()));
        }
        assert_eq!(default_url("https://8.8.8.8/"), Ok(()));
        assert_eq!(default_url("https://example.com/"), Ok(()));
    }

    #[test]
    fn an_allowed_address_or_cidr_lifts_the_non_public_refusal_for_it_only() {
        let p = policy(&["127.0.0.1"], &[]);
        for form in ["http://127.1/", "http://2130706433/", "http://0x7f000001/"] {
            assert_eq!(p.check_url(&parse_url(form).unwrap()), Ok(()), "{form}");
        }
        assert_eq!(p.check_addr(None, ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(p.check_addr(Some("localhost"), ip("127.0.0.1")), Ok(()));
        // A non-empty allow list means only those.
        assert!(matches!(
            p.check_addr(None, ip("127.0.0.2")),
            Err(Denied::NotAllowed { .. })
        ));
        assert!(matches!(
            p.check_addr(None, ip("::1")),
            Err(Denied::NotAllowed { .. })
        ));
        assert!(matches!(
            p.check_addr(None, ip("8.8.8.8")),
            Err(Denied::NotAllowed { .. })
        ));

        let p = policy(&["10.0.0.0/8", "[::1]", "fd00::/8"], &[]);
        assert_eq!(p.check_addr(None, ip("10.9.8.7")), Ok(()));
        assert_eq!(p.check_addr(Some("db.internal"), ip("10.9.8.7")), Ok(()));
        assert_eq!(p.check_addr(None, ip("::1")), Ok(()));
        assert_eq!(p.check_addr(None, ip("fd00::5")), Ok(()));
        assert!(p.check_addr(None, ip("11.0.0.1")).is_err());
        assert!(p.check_addr(None, ip("fc00::5")).is_err());
        assert!(p.check_addr(None, ip("127.0.0.1")).is_err());

        // A host name in the allow list does not open non-public addresses: DNS decides those.
        let p = policy(&["localhost", "api.example.com"], &[]);
        assert!(matches!(
            p.check_addr(Some("localhost"), ip("127.0.0.1")),
            Err(Denied::NonPublic { .. })
        ));
        assert!(matches!(
            p.check_addr(Some("api.example.com"), ip("10.0.0.1")),
            Err(Denied::NonPublic { .. })
        ));
        assert_eq!(
            p.check_addr(Some("API.example.com."), ip("8.8.8.8")),
            Ok(())
        );
        assert!(matches!(
            p.check_addr(Some("other.example.com"), ip("8.8.8.8")),
            Err(Denied::NotAllowed { .. })
        ));
        // ... and with names only, other names are refused before any DNS lookup.
        assert!(matches!(
            p.check_name("other.example.com"),
            Err(Denied::NotAllowed { .. })
        ));
        assert_eq!(p.check_name("api.example.com"), Ok(()));
        // With an address entry, a name might resolve into it: decided after DNS.
        assert_eq!(policy(&["10.0.0.0/8"], &[]).check_name("x.example"), Ok(()));

        // allow_private_addresses opens every non-public range, lists still apply.
        let p = HttpPolicy::default().with_private_addresses(true);
        assert_eq!(p.check_addr(None, ip("127.0.0.1")), Ok(()));
        assert_eq!(p.check_addr(Some("localhost"), ip("::1")), Ok(()));
        let p = policy(&[], &["127.0.0.1"]).with_private_addresses(true);
        assert!(matches!(
            p.check_addr(None, ip("127.0.0.1")),
            Err(Denied::AddrDenied { .. })
        ));
        assert_eq!(p.check_addr(None, ip("127.0.0.2")), Ok(()));
    }

    #[test]
    fn deny_wins_over_allow_and_matches_every_form_of_an_address() {
        let p = policy(
            &["127.0.0.0/8", "evil.example"],
            &["127.0.0.1", "evil.example"],
        );
        for url in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(
                matches!(
                    p.check_url(&parse_url(url).unwrap()),
                    Err(Denied::AddrDenied { .. })
                ),
                "{url}"
            );
        }
        assert_eq!(p.check_addr(None, ip("127.0.0.2")), Ok(()));
        assert!(matches!(
            p.check_name("EVIL.example."),
            Err(Denied::HostDenied { .. })
        ));
        assert!(matches!(
            p.check_addr(Some("evil.example"), ip("127.0.0.2")),
            Err(Denied::HostDenied { .. })
        ));

        // CIDR deny over a public default; wildcard names.
        let p = policy(
            &[],
            &["8.8.0.0/16", "2606:4700::/32", "*.internal", "0x01010101"],
        );
        assert!(p.check_addr(None, ip("8.8.8.8")).is_err());
        assert!(p.check_addr(None, ip("::ffff:8.8.4.4")).is_err());
        assert!(p.check_addr(None, ip("2606:4700::1111")).is_err());
        assert!(p.check_addr(None, ip("1.1.1.1")).is_err());
        assert_eq!(p.check_addr(None, ip("9.9.9.9")), Ok(()));
        assert!(p.check_name("db.internal").is_err());
        assert!(p.check_name("a.b.internal").is_err());
        assert_eq!(p.check_name("internal"), Ok(()));
        assert_eq!(p.check_name("notinternal"), Ok(()));

        // A deny list entry for a mapped address or CIDR also covers the plain one.
        let p = policy(&[], &["::ffff:1.2.3.4", "::ffff:9.9.0.0/112"]);
        assert!(p.check_addr(None, ip("1.2.3.4")).is_err());
        assert!(p.check_addr(None, ip("9.9.1.1")).is_err());
        assert!(p.check_addr(None, ip("::ffff:9.9.1.1")).is_err());
        assert_eq!(p.check_addr(None, ip("9.8.1.1")), Ok(()));
        assert_eq!(policy(&[], &["::ffff:0:0/96"]), policy(&[], &["0.0.0.0/0"]));
    }

    #[test]
    fn list_entries_are_validated() {
        for bad in [
            "",
            " ",
            "localhost:8080",
            "http://x/",
            "10.0.0.0/33",
            "a b",
            "*",
            "*.",
            "a.*.b",
            "*.10.0.0.1",
            "[1.2.3.4]",
            "x/y",
        ] {
            assert!(
                matches!(HttpPolicy::new(&[bad], &[]), Err(RuleError::Invalid { .. })),
                "{bad:?}"
            );
            assert!(HttpPolicy::new(&[] as &[&str], &[bad]).is_err(), "{bad:?}");
        }
        for good in [
            "localhost",
            "Example.COM.",
            "*.example.com",
            "127.0.0.1",
            "127.1",
            "10.0.0.0/8",
            "10.1.2.3/8",
            "::1",
            "[::1]",
            "fc00::/7",
            "bücher.example",
        ] {
            assert!(HttpPolicy::new(&[good], &[]).is_ok(), "{good}");
        }
        assert_eq!(policy(&["10.1.2.3/8"], &[]), policy(&["10.0.0.0/8"], &[]));
        assert_eq!(policy(&["127.1"], &[]), policy(&["127.0.0.1/32"], &[]));
    }

    #[test]
    fn urls_are_parsed_as_browsers_do() {
        // CR/LF/TAB cannot split the request: the parser removes them, other controls are
        // percent-encoded.
        let u = parse_url("http://127.0.0.1/a\r\nX-Injected: yes\r\n").unwrap();
        assert_eq!(u.path(), "/aX-Injected:%20yes");
        let u = parse_url("http://127.0.0.1/a\u{0}b\u{7f} c").unwrap();
        assert!(!u.as_str().contains(['\0', '\u{7f}', ' ']), "{u}");
        assert_eq!(host_of("http://Example.COM/"), "example.com");
        assert!(matches!(parse_url("ftp://x/"), Err(UrlError::Scheme(_))));
        assert!(matches!(
            parse_url("file:///etc/passwd"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            parse_url("http://u:p@example.com/"),
            Err(UrlError::Credentials)
        ));
        assert!(matches!(parse_url("http://"), Err(UrlError::Parse(_))));
        assert!(matches!(parse_url("/relative"), Err(UrlError::Parse(_))));
        assert!(matches!(parse_url("http://[::1/"), Err(UrlError::Parse(_))));
        assert!(matches!(
            parse_url("http://256.0.0.1/"),
            Err(UrlError::Parse(_))
        ));
        // `user@host` confusion: the host is what follows the `@`.
        assert!(matches!(
            parse_url("http://127.0.0.1@example.com/"),
            Err(UrlError::Credentials)
        ));
    }
}
