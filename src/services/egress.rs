//! The egress guard against SSRF: which addresses filegate may connect to on a caller's behalf (an
//! import's source, a webhook's receiver), and which URLs it may fetch. Its own module, used by both,
//! so that neither service borrows it from the other.
//!
//! Every address is first brought to a canonical form (an IPv4 address hidden in an IPv6 one — mapped,
//! translated, NAT64 — is judged as that IPv4 address), then refused when it lies in a range that is not the public
//! internet, unless an operator's allow-list (`FILEGATE_IMPORT_ALLOW_CIDRS`) opens it. Host names are
//! resolved once, by [`GuardedResolver`], which hands the HTTP client only the addresses that passed:
//! there is no second lookup that could answer differently. IP-literal hosts, in whatever spelling the
//! URL parser accepts (`2130706433`, `0x7f.1`, `[::ffff:127.0.0.1]`), are checked by [`check_url`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use url::{Host, Url};

/// Longest `source_url` accepted, in bytes.
pub const MAX_URL_BYTES: usize = 4096;

/// IPv4 ranges that are not the public internet (RFC 6890 and friends).
const DENIED_V4: [(Ipv4Addr, u8); 15] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network"
    (Ipv4Addr::new(10, 0, 0, 0), 8),      // private
    (Ipv4Addr::new(100, 64, 0, 0), 10),   // carrier-grade NAT
    (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16),  // link-local, cloud metadata (169.254.169.254)
    (Ipv4Addr::new(172, 16, 0, 0), 12),   // private
    (Ipv4Addr::new(192, 0, 0, 0), 24),    // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),    // documentation
    (Ipv4Addr::new(192, 88, 99, 0), 24),  // 6to4 relay anycast
    (Ipv4Addr::new(192, 168, 0, 0), 16),  // private
    (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation
    (Ipv4Addr::new(203, 0, 113, 0), 24),  // documentation
    (Ipv4Addr::new(224, 0, 0, 0), 4),     // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),     // reserved, broadcast
];

/// IPv6 ranges that are not the public internet. Mapped (`::ffff:0:0/96`), translated (`::ffff:0:0:0/96`,
/// RFC 2765) and well-known NAT64 (`64:ff9b::/96`) addresses never reach this list: they are judged as the
/// IPv4 address they carry.
const DENIED_V6: [(Ipv6Addr, u8); 12] = [
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96), // unspecified, loopback, IPv4-compatible
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48), // local-use NAT64
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64), // discard
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23), // IETF assignments, Teredo, ORCHID
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16), // 6to4: tunnels to any IPv4 address
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20), // documentation
    (Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16), // segment routing
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7), // unique local
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10), // link-local
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10), // site-local (deprecated)
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8), // multicast
];

/// The IPv4 address an IPv6 address stands for, if it is a mapped (`::ffff:a.b.c.d`), translated
/// (`::ffff:0:a.b.c.d`, which SIIT translators pass on to the IPv4 address) or well-known NAT64
/// (`64:ff9b::a.b.c.d`) form; otherwise the address itself.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[..6] == [0, 0, 0, 0, 0xffff, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return IpAddr::V4(Ipv4Addr::new(a, b, c, d));
            }
            ip
        }
        IpAddr::V4(_) => ip,
    }
}

fn is_denied(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => DENIED_V4.iter().any(|&(net, len)| Ipv4Net::new_assert(net, len).contains(&v4)),
        IpAddr::V6(v6) => DENIED_V6.iter().any(|&(net, len)| Ipv6Net::new_assert(net, len).contains(&v6)),
    }
}

/// Which addresses imports may connect to.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allow: Vec<IpNet>,
}

impl AddressPolicy {
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.allow.iter().any(|net| net.contains(&ip)) || !is_denied(ip)
    }
}

/// Why a URL may not be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlProblem {
    /// Malformed, too long, not http(s), or carrying `user:pass@`: the message says which.
    Invalid(String),
    /// An IP-literal host in a denied range.
    Forbidden(IpAddr),
}

/// Parses and checks a URL to fetch (the submitted one and every redirect target).
pub fn check_url(raw: &str, policy: &AddressPolicy) -> Result<Url, UrlProblem> {
    if raw.len() > MAX_URL_BYTES {
        return Err(UrlProblem::Invalid(format!("source_url is longer than {MAX_URL_BYTES} bytes")));
    }
    let url =
        Url::parse(raw.trim()).map_err(|e| UrlProblem::Invalid(format!("source_url is not an absolute URL ({e})")))?;
    check_parsed(url, policy)
}

pub fn check_parsed(mut url: Url, policy: &AddressPolicy) -> Result<Url, UrlProblem> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlProblem::Invalid(format!("source_url must be http or https, not {}", url.scheme())));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlProblem::Invalid("source_url must not contain credentials (user:pass@)".into()));
    }
    let ip = match url.host() {
        None | Some(Host::Domain("")) => return Err(UrlProblem::Invalid("source_url has no host".into())),
        Some(Host::Domain(_)) => None,
        Some(Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
    };
    if let Some(ip) = ip.filter(|ip| !policy.permits(*ip)) {
        return Err(UrlProblem::Forbidden(ip));
    }
    url.set_fragment(None);
    Ok(url)
}

/// The resolver's refusal: every address of a host was in a denied range.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to addresses imports may not reach ({addresses})")]
pub struct ForbiddenHost {
    pub host: String,
    pub addresses: String,
}

/// Resolves each host once and passes on only the addresses the policy permits.
pub struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<AddressPolicy>) -> Self {
        Self { policy }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = resolved.iter().copied().filter(|a| policy.permits(a.ip())).collect();
            if permitted.is_empty() && !resolved.is_empty() {
                let addresses = resolved.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ");
                return Err(Box::new(ForbiddenHost { host, addresses }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_and_special_addresses_are_denied_in_every_form() {
        let policy = AddressPolicy::default();
        for denied in [
            "127.0.0.1",
            "127.0.0.2",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "2001::1",
            "::127.0.0.1",
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
            "::ffff:0:0a00:1",
        ] {
            assert!(!policy.permits(ip(denied)), "{denied} must be denied");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:93.184.216.34",
            "64:ff9b::808:808",
            "::ffff:0:808:808",
        ] {
            assert!(policy.permits(ip(public)), "{public} is public");
        }
    }

    #[test]
    fn the_allow_list_opens_exactly_its_ranges() {
        let policy = AddressPolicy::new(vec!["127.0.0.1/32".parse().unwrap()]);
        assert!(policy.permits(ip("127.0.0.1")));
        assert!(policy.permits(ip("::ffff:127.0.0.1")), "a mapped form is the same address");
        assert!(!policy.permits(ip("127.0.0.2")));
        assert!(!policy.permits(ip("::1")));
    }

    #[test]
    fn ip_literals_are_checked_in_every_spelling() {
        let policy = AddressPolicy::new(vec!["127.0.0.1/32".parse().unwrap()]);
        for (url, addr) in [
            ("http://127.0.0.2/x", "127.0.0.2"),
            ("http://2130706434/", "127.0.0.2"),
            ("http://0x7f000002/", "127.0.0.2"),
            ("http://0x7f.0.0.2/", "127.0.0.2"),
            ("http://0177.0.0.2/", "127.0.0.2"),
            ("http://127.2/", "127.0.0.2"),
            ("http://[::1]:8080/", "::1"),
            ("http://[::ffff:127.0.0.2]/", "::ffff:127.0.0.2"),
            ("http://[::ffff:7f00:2]/", "::ffff:127.0.0.2"),
            ("http://[::ffff:0:7f00:2]/", "::ffff:0:7f00:2"),
            ("https://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ] {
            assert_eq!(check_url(url, &policy), Err(UrlProblem::Forbidden(ip(addr))), "{url}");
        }
        assert!(check_url("http://2130706433/", &policy).is_ok(), "127.0.0.1 is allowed here");
        assert!(check_url("https://example.com/video.mp4", &policy).is_ok());
    }

    #[test]
    fn only_plain_http_and_https_urls_pass() {
        let policy = AddressPolicy::default();
        for bad in [
            "ftp://example.com/a",
            "file:///etc/passwd",
            "gopher://example.com/",
            "http://user:pass@example.com/",
            "http://user@example.com/",
            "/relative/path",
            "http://",
            "not a url",
        ] {
            assert!(matches!(check_url(bad, &policy), Err(UrlProblem::Invalid(_))), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(matches!(check_url(&long, &policy), Err(UrlProblem::Invalid(m)) if m.contains("longer")));
        assert_eq!(check_url("https://example.com/a#frag", &policy).unwrap().as_str(), "https://example.com/a");
    }
}
