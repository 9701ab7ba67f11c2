//! Which proxy an OTLP/HTTP export goes through, chosen once at construction from the
//! environment the way curl and reqwest choose it (ureq's own choice takes the first of
//! `ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY` for every scheme, and proxies loopback too):
//!
//! - an endpoint on a loopback host (`localhost`, `*.localhost`, `127.0.0.0/8`, `::1`) never
//!   goes through a proxy, as in Go's standard library: a ZenML step's relay is one;
//! - then `no_proxy`/`NO_PROXY`: `*`, a host or domain (`example.com` also matches its
//!   subdomains; a leading `.` or `*.` is the same), an IP address, or a CIDR block;
//! - then the scheme's own variable: `https_proxy`/`HTTPS_PROXY` for https endpoints,
//!   `http_proxy`/`HTTP_PROXY` for http ones (the upper-case `HTTP_PROXY` not in a CGI
//!   request, where a client could set it as a header: `REQUEST_METHOD` set);
//! - then `all_proxy`/`ALL_PROXY`.
//!
//! Lower case first; a blank value counts as unset. gRPC (tonic) uses no proxy variables.

use std::net::IpAddr;

use http::Uri;

use crate::environ::Env;
use crate::Error;

/// The proxy for `endpoint`, if any, with the variable it came from.
pub(super) fn for_endpoint(
    endpoint: &str,
    env: Env<'_>,
) -> Result<Option<(&'static str, ureq::Proxy)>, Error> {
    let Ok(uri) = endpoint.parse::<Uri>() else {
        return Ok(None); // validation refused it already
    };
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if is_loopback(host) || bypassed(host, env)? {
        return Ok(None);
    }
    let https = uri.scheme_str() == Some("https");
    let cgi = env("REQUEST_METHOD")?.is_some();
    let names: &[&'static str] = match (https, cgi) {
        (true, _) => &["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"],
        (false, false) => &["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"],
        (false, true) => &["http_proxy", "all_proxy", "ALL_PROXY"],
    };
    for &name in names {
        let Some(value) = env(name)?.filter(|value| !value.trim().is_empty()) else {
            continue;
        };
        // Never echoed: a proxy URL may hold a password.
        let proxy = ureq::Proxy::new(value.trim()).map_err(|_| {
            Error::config(
                name,
                "is not a usable proxy URL: expected http://[user:password@]host[:port]",
            )
        })?;
        return Ok(Some((name, proxy)));
    }
    Ok(None)
}

fn is_loopback(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `no_proxy` (or `NO_PROXY`) names `host`.
fn bypassed(host: &str, env: Env<'_>) -> Result<bool, Error> {
    let list = match env("no_proxy")? {
        Some(list) => list,
        None => env("NO_PROXY")?.unwrap_or_default(),
    };
    Ok(list
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .any(|entry| matches(entry, host)))
}

fn matches(entry: &str, host: &str) -> bool {
    if entry == "*" {
        return true;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        let entry = entry.trim_start_matches('[').trim_end_matches(']');
        return match entry.split_once('/') {
            Some((network, bits)) => in_block(ip, network, bits),
            None => entry.parse::<IpAddr>() == Ok(ip),
        };
    }
    let domain = entry
        .trim_start_matches("*.")
        .trim_start_matches('.')
        .to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    host == domain
        || host
            .strip_suffix(&domain)
            .is_some_and(|head| head.ends_with('.'))
}

/// Whether `ip` is in the CIDR block `network/bits`.
fn in_block(ip: IpAddr, network: &str, bits: &str) -> bool {
    let (Ok(network), Ok(bits)) = (network.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(network)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(network)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(network) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environ::fixed;

    fn chosen(endpoint: &str, vars: &[(&str, &str)]) -> Option<&'static str> {
        for_endpoint(endpoint, &fixed(vars))
            .unwrap()
            .map(|(name, _)| name)
    }

    const ALL: &[(&str, &str)] = &[
        ("HTTPS_PROXY", "http://127.0.0.1:1"),
        ("HTTP_PROXY", "http://127.0.0.1:2"),
        ("ALL_PROXY", "http://127.0.0.1:3"),
    ];

    #[test]
    fn each_scheme_takes_its_own_variable_then_all_proxy() {
        assert_eq!(
            chosen("https://c.example/v1/logs", ALL),
            Some("HTTPS_PROXY")
        );
        assert_eq!(chosen("http://c.example/v1/logs", ALL), Some("HTTP_PROXY"));
        let only_https = &[("HTTPS_PROXY", "http://127.0.0.1:1")];
        assert_eq!(chosen("http://c.example/v1/logs", only_https), None);
        let fallback = &[("ALL_PROXY", "http://127.0.0.1:3")];
        assert_eq!(
            chosen("http://c.example/v1/logs", fallback),
            Some("ALL_PROXY")
        );
        let lower = &[("https_proxy", "http://p:1"), ("HTTPS_PROXY", "http://q:1")];
        assert_eq!(chosen("https://c.example", lower), Some("https_proxy"));
        let blank = &[("HTTPS_PROXY", " "), ("ALL_PROXY", "http://p:3")];
        assert_eq!(chosen("https://c.example", blank), Some("ALL_PROXY"));
    }

    #[test]
    fn loopback_never_goes_through_a_proxy() {
        for endpoint in [
            "http://127.0.0.1:4318/v1/logs",
            "http://127.8.9.1:4318",
            "http://localhost:4318",
            "http://relay.localhost:1",
            "http://[::1]:4318",
        ] {
            assert_eq!(chosen(endpoint, ALL), None, "{endpoint}");
        }
    }

    #[test]
    fn no_proxy_takes_hosts_domains_addresses_and_blocks() {
        let with = |no_proxy: &'static str| {
            let mut vars = ALL.to_vec();
            vars.push(("NO_PROXY", no_proxy));
            vars
        };
        let cases = [
            ("*", "http://c.example", None),
            ("example", "http://c.example", None),
            ("c.example", "http://c.example", None),
            (".example", "http://a.b.example", None),
            ("*.example", "http://a.example", None),
            ("other.example, c.example", "http://C.Example", None),
            ("xample", "http://c.example", Some("HTTP_PROXY")),
            ("10.0.0.0/8", "http://10.1.2.3:1", None),
            ("10.0.0.0/8", "http://11.1.2.3:1", Some("HTTP_PROXY")),
            ("10.1.2.3", "http://10.1.2.3:1", None),
            ("fd00::/8", "http://[fd12::1]:1", None),
            ("[fd12::1]", "http://[fd12::1]:1", None),
            ("10.0.0.0/99", "http://10.1.2.3:1", Some("HTTP_PROXY")),
        ];
        for (no_proxy, endpoint, expected) in cases {
            assert_eq!(
                chosen(endpoint, &with(no_proxy)),
                expected,
                "{no_proxy} {endpoint}"
            );
        }
        let lower = &[("HTTP_PROXY", "http://p:1"), ("no_proxy", "c.example")];
        assert_eq!(chosen("http://c.example", lower), None);
    }

    #[test]
    fn a_cgi_request_cannot_set_the_http_proxy() {
        let cgi = &[("HTTP_PROXY", "http://p:1"), ("REQUEST_METHOD", "GET")];
        assert_eq!(chosen("http://c.example", cgi), None);
    }

    #[test]
    fn a_bad_proxy_url_names_its_variable_and_never_echoes_it() {
        let bad = &[("HTTPS_PROXY", "gopher://user:SECRET@p:1")];
        let error = for_endpoint("https://c.example", &fixed(bad)).unwrap_err();
        assert_eq!(error.field(), Some("HTTPS_PROXY"));
        assert!(!error.to_string().contains("SECRET"), "{error}");
    }
}
