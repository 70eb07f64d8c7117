//! Request rules: which base URLs and addresses the client may talk to.

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::config::WmsClientConfig;
use crate::error::WmsError;

/// Parse and check a base URL: trailing slashes stripped, https unless the host is allowed
/// plain http, no credentials, query or fragment, and (when configured) no private IP literal.
pub(crate) fn parse_base_url(raw: &str, config: &WmsClientConfig) -> Result<Url, WmsError> {
    let trimmed = raw.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(WmsError::Config("the WMS endpoint URL is empty".to_owned()));
    }
    let url = Url::parse(trimmed)
        .map_err(|e| WmsError::Config(format!("the WMS endpoint URL is not a valid URL: {e}")))?;
    let host = url
        .host()
        .ok_or_else(|| WmsError::Config("the WMS endpoint URL has no host".to_owned()))?;
    let host_str = match &host {
        Host::Domain(d) => (*d).to_owned(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
    };
    match url.scheme() {
        "https" => {}
        "http" if config.http_allowed_for(&host_str) => {}
        "http" => {
            return Err(WmsError::PolicyRefused(format!(
                "plain http is not allowed for host {host_str}; use https"
            )));
        }
        other => {
            return Err(WmsError::PolicyRefused(format!(
                "scheme {other} is not allowed; use https"
            )));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(WmsError::Config(
            "the WMS endpoint URL must not contain credentials".to_owned(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(WmsError::Config(
            "the WMS endpoint URL must not have a query or fragment".to_owned(),
        ));
    }
    if !config.host_allowed(&host_str) {
        return Err(WmsError::PolicyRefused(format!(
            "host {host_str} is not one of the configured WMS hosts"
        )));
    }
    if guards_private_addresses(&url, config) {
        let literal = match host {
            Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            Host::Domain(_) => None,
        };
        if let Some(ip) = literal
            && is_forbidden_ip(ip)
        {
            return Err(WmsError::PolicyRefused(format!(
                "address {ip} is private, loopback or link-local and such addresses are refused"
            )));
        }
    }
    Ok(url)
}

/// Whether calls to `url` must refuse private addresses: the rule is on and the endpoint is
/// not one of the `host:port`s exempted from it.
pub(crate) fn guards_private_addresses(url: &Url, config: &WmsClientConfig) -> bool {
    if !config.refuse_private_addresses {
        return false;
    }
    let exempt = match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => config.private_allowed_for(host, port),
        _ => false,
    };
    !exempt
}

/// Loopback, private, link-local, unique-local, CGNAT, unspecified, multicast, broadcast,
/// documentation and similar non-public addresses (IPv4-mapped IPv6 included).
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_forbidden_v4(v4);
            }
            is_forbidden_v6(v6)
        }
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..=127).contains(&b)) // CGNAT 100.64/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // 192.0.0/24
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || a >= 240
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let first = segments[0];
    // IPv4-compatible ::a.b.c.d (deprecated) carries a v4 address like the mapped form.
    if segments[..6].iter().all(|s| *s == 0) && !ip.is_loopback() && !ip.is_unspecified() {
        return is_forbidden_v4(Ipv4Addr::new(
            (segments[6] >> 8) as u8,
            segments[6] as u8,
            (segments[7] >> 8) as u8,
            segments[7] as u8,
        ));
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local fec0::/10
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        || (first == 0x0064 && ip.segments()[1] == 0xff9b) // NAT64 (and 64:ff9b:1::/48) embed any v4
        || first == 0x2002 // 6to4: embeds any v4, and no WMS lives there
        || (first == 0x2001 && ip.segments()[1] == 0) // Teredo: embeds any v4 (obfuscated)
        || (first == 0x0100 && segments[1..4].iter().all(|s| *s == 0)) // discard-only 100::/64
}

/// The error the guarded resolver fails with; found again in the error chain to classify
/// the failure as [`WmsError::PolicyRefused`].
#[derive(Debug)]
pub(crate) struct ForbiddenAddress(pub String);

impl fmt::Display for ForbiddenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for ForbiddenAddress {}

/// A DNS resolver that refuses a name when any of its addresses is forbidden.
#[derive(Debug, Default)]
pub(crate) struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // The address itself is not named: it would map the internal network.
            if addrs.iter().any(|a| is_forbidden_ip(a.ip())) {
                let err: Box<dyn StdError + Send + Sync> = Box::new(ForbiddenAddress(format!(
                    "host {host} resolves to a private, loopback or link-local address, and such addresses are refused"
                )));
                return Err(err);
            }
            let it: Addrs = Box::new(addrs.into_iter());
            Ok(it)
        })
    }
}

/// Walk an error's source chain (looking inside `io::Error`s too).
pub(crate) fn error_chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = next {
        if out.len() > 32 {
            break;
        }
        out.push(e);
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg(allow: &[&str], refuse: bool) -> WmsClientConfig {
        WmsClientConfig {
            allow_http_hosts: allow.iter().map(|s| s.to_string()).collect(),
            refuse_private_addresses: refuse,
            ..WmsClientConfig::default()
        }
    }

    #[test]
    fn private_addresses_are_refused_by_default_unless_host_and_port_are_exempt() {
        let default = WmsClientConfig {
            allow_http_hosts: vec!["127.0.0.1".into(), "wms-simulator".into()],
            ..WmsClientConfig::default()
        };
        assert!(default.refuse_private_addresses);
        assert!(matches!(
            parse_base_url("http://127.0.0.1:8090/v1", &default),
            Err(WmsError::PolicyRefused(_))
        ));
        let dev = WmsClientConfig {
            allow_private_endpoints: vec!["127.0.0.1:8090".into(), "wms-simulator:8090".into()],
            ..default
        };
        let url = parse_base_url("http://127.0.0.1:8090/v1", &dev).unwrap();
        assert!(!guards_private_addresses(&url, &dev));
        // Same host, another port: refused.
        assert!(matches!(
            parse_base_url("http://127.0.0.1:5432/v1", &dev),
            Err(WmsError::PolicyRefused(_))
        ));
        // A name is guarded at connect time unless host and port match.
        let by_name = parse_base_url("http://WMS-simulator:8090/v1", &dev).unwrap();
        assert!(!guards_private_addresses(&by_name, &dev));
        let other_port = parse_base_url("http://wms-simulator:80/v1", &dev).unwrap();
        assert!(guards_private_addresses(&other_port, &dev));
    }

    #[test]
    fn the_host_allow_list_admits_only_its_hosts() {
        let prod = WmsClientConfig {
            allowed_hosts: vec!["*.crobo.jp".into(), "wms.example.com".into()],
            ..WmsClientConfig::default()
        };
        for ok in [
            "https://api12.crobo.jp/v1",
            "https://API.Crobo.JP/v1",
            "https://wms.example.com",
        ] {
            assert!(parse_base_url(ok, &prod).is_ok(), "{ok}");
        }
        for bad in [
            "https://crobo.jp.evil.example/v1",
            "https://evilcrobo.jp/v1",
            "https://crobo.jp/v1",
            "https://x.wms.example.com",
            "https://8.8.8.8/",
        ] {
            assert!(
                matches!(parse_base_url(bad, &prod), Err(WmsError::PolicyRefused(_))),
                "{bad}"
            );
        }
        assert!(WmsClientConfig::default().host_allowed("anything.example"));
    }

    #[test]
    fn trailing_slash_is_stripped() {
        let u = parse_base_url("https://api.crobo.jp/v1/", &cfg(&[], false)).unwrap();
        assert_eq!(u.as_str(), "https://api.crobo.jp/v1");
        let u = parse_base_url("https://api.crobo.jp/v1//", &cfg(&[], false)).unwrap();
        assert_eq!(u.as_str(), "https://api.crobo.jp/v1");
    }

    #[test]
    fn http_only_for_allowed_hosts() {
        assert!(matches!(
            parse_base_url("http://api.crobo.jp/v1", &cfg(&[], false)),
            Err(WmsError::PolicyRefused(_))
        ));
        assert!(parse_base_url("http://LOCALHOST:8080", &cfg(&["localhost"], false)).is_ok());
        assert!(parse_base_url("http://[::1]:8080", &cfg(&["::1"], false)).is_ok());
        assert!(matches!(
            parse_base_url("ftp://x/", &cfg(&["x"], false)),
            Err(WmsError::PolicyRefused(_))
        ));
        assert!(matches!(
            parse_base_url("https://u:p@x/", &cfg(&[], false)),
            Err(WmsError::Config(_))
        ));
        assert!(matches!(
            parse_base_url("not a url", &cfg(&[], false)),
            Err(WmsError::Config(_))
        ));
    }

    #[test]
    fn private_literals_refused_when_configured() {
        for url in [
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://192.168.0.1/",
            "https://172.16.0.1/",
            "https://169.254.169.254/",
            "https://[::1]/",
            "https://[fe80::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://[::ffff:169.254.169.254]/",
            "https://[::10.0.0.1]/",
            "https://[64:ff9b::a00:1]/",
            "https://[2002:a00:1::1]/",
            "https://[2002:a9fe:a9fe::1]/",
            "https://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/",
            "https://[100::1]/",
            "https://100.100.100.200/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
        ] {
            assert!(
                matches!(
                    parse_base_url(url, &cfg(&[], true)),
                    Err(WmsError::PolicyRefused(_))
                ),
                "{url}"
            );
            assert!(parse_base_url(url, &cfg(&[], false)).is_ok(), "{url}");
        }
        assert!(parse_base_url("https://8.8.8.8/", &cfg(&[], true)).is_ok());
        assert!(parse_base_url("https://[2400:4050::1]/", &cfg(&[], true)).is_ok());
        assert!(!is_forbidden_ip("2400:4050::1".parse().unwrap()));
    }
}
