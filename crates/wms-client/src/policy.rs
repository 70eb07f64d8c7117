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
    if config.refuse_private_addresses {
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
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local fec0::/10
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        || (first == 0x0064 && ip.segments()[1] == 0xff9b) // NAT64 may embed private v4
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
            if let Some(bad) = addrs.iter().find(|a| is_forbidden_ip(a.ip())) {
                let err: Box<dyn StdError + Send + Sync> = Box::new(ForbiddenAddress(format!(
                    "host {host} resolves to {}, a private, loopback or link-local address, and such addresses are refused",
                    bad.ip()
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
        assert!(!is_forbidden_ip("2400:4050::1".parse().unwrap()));
    }
}
