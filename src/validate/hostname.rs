//! Host name and address checks shared by several resources. Kuma uses three different
//! notions, reproduced exactly:
//! - gateway listener hostnames (K:`pkg/core/resources/apis/mesh/validators.go`
//!   `ValidateHostname`): `*`, `*.<domain>` or `<domain>`, lower-case RFC 1123 labels;
//! - "precise" hostnames of redirect / URL-rewrite filters
//!   (K:`pkg/plugins/policies/meshhttproute/api/v1alpha1/validation.go`
//!   `validatePreciseHostname`): not an IP, then Kubernetes' `IsDNS1123Subdomain`;
//! - addresses of Dataplanes and MeshExternalService endpoints: govalidator's `IsIP` or
//!   `IsDNSName` (mixed case and `_` allowed).
//!
//! The fixed patterns are hand-written character checks (no regex to compile).

use std::net::IpAddr;

/// Kubernetes' `validation.IsDNS1123Subdomain` pattern, quoted in its message.
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

/// One label of `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
fn is_rfc1123_label(label: &str) -> bool {
    let b = label.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            alnum(first) && alnum(last) && b.iter().all(|c| alnum(c) || *c == b'-')
        }
        _ => false,
    }
}

/// Kuma's `DomainRegexp`: `^label(\.label)*$` with lower-case RFC 1123 labels.
pub fn is_rfc1123_domain(s: &str) -> bool {
    s.split('.').all(is_rfc1123_label)
}

/// K:`ValidateHostname` for a non-empty listener hostname. Returns Kuma's messages.
pub fn gateway_hostname_problems(hostname: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    if hostname == "*" {
        return out;
    }
    if hostname.len() > 253 {
        out.push("must be at most 253 characters");
    }
    if let Some(rest) = hostname.strip_prefix("*.") {
        if !is_rfc1123_domain(rest) {
            out.push("invalid wildcard domain");
        }
        return out;
    }
    if !is_rfc1123_domain(hostname) {
        out.push("invalid hostname");
    }
    out
}

/// Kubernetes' `IsDNS1123Subdomain` messages (empty when valid).
pub fn dns1123_subdomain_problems(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 253 {
        out.push("must be no more than 253 characters".to_string());
    }
    if !is_rfc1123_domain(s) {
        out.push(format!(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \
             '-' or '.', and must start and end with an alphanumeric character (e.g. \
             'example.com', regex used for validation is '{DNS1123_SUBDOMAIN_FMT}')"
        ));
    }
    out
}

/// K:`validatePreciseHostname`: an IP is refused first, otherwise RFC 1123 subdomain rules.
pub fn precise_hostname_problems(hostname: &str) -> Vec<String> {
    if is_ip_sloppy(hostname) {
        return vec!["cannot be an IP address".to_string()];
    }
    dns1123_subdomain_problems(hostname)
}

/// Go's `net.ParseIP` (govalidator `IsIP`): strict IPv4 dotted quad or IPv6.
pub fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// `k8s.io/utils/net.ParseIPSloppy`: like [`is_ip`] but IPv4 octets may have leading zeros.
pub fn is_ip_sloppy(s: &str) -> bool {
    if is_ip(s) {
        return true;
    }
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) && p.parse::<u8>().is_ok()
        })
}

/// govalidator `IsDNSName`: labels `[a-zA-Z0-9_][a-zA-Z0-9_-]{0,62}` joined by dots, an
/// optional trailing dot, at most 255 characters without the dots, and not an IP.
pub fn is_dns_name(s: &str) -> bool {
    if s.is_empty() || s.chars().filter(|c| *c != '.').count() > 255 || is_ip(s) {
        return false;
    }
    let body = s.strip_suffix('.').unwrap_or(s);
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        let head = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
        !b.is_empty()
            && b.len() <= 63
            && b.first().is_some_and(head)
            && b.iter().all(|c| head(c) || *c == b'-')
    };
    body.split('.').all(label_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_hostnames_follow_kuma() {
        for ok in [
            "*",
            "foo.example.com",
            "*.example.com",
            "a-b.c0",
            "localhost",
        ] {
            assert!(gateway_hostname_problems(ok).is_empty(), "{ok}");
        }
        assert_eq!(
            gateway_hostname_problems("*.foo.*.example.com"),
            ["invalid wildcard domain"]
        );
        for bad in [
            "Foo.com",
            "foo_bar.com",
            "foo.example$.com",
            "-a.com",
            "a..b",
            "a.com.",
        ] {
            assert_eq!(
                gateway_hostname_problems(bad),
                ["invalid hostname"],
                "{bad}"
            );
        }
        let long = format!("{}.com", "a".repeat(250));
        assert_eq!(
            gateway_hostname_problems(&long),
            ["must be at most 253 characters"]
        );
    }

    #[test]
    fn precise_hostnames_refuse_ips_then_check_rfc1123() {
        assert_eq!(
            precise_hostname_problems("10.0.0.1"),
            ["cannot be an IP address"]
        );
        assert_eq!(
            precise_hostname_problems("010.000.0.1"),
            ["cannot be an IP address"]
        );
        assert_eq!(
            precise_hostname_problems("::1"),
            ["cannot be an IP address"]
        );
        assert!(precise_hostname_problems("example.com").is_empty());
        let p = precise_hostname_problems("Example.com");
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("a lowercase RFC 1123 subdomain"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn dns_names_follow_govalidator() {
        for ok in [
            "example.com",
            "Example.COM",
            "my_host",
            "a.b.c.",
            "localhost",
        ] {
            assert!(is_dns_name(ok), "{ok}");
        }
        for bad in ["", "1.2.3.4", "a..b", "-a.com", "a b", &"a".repeat(64)] {
            assert!(!is_dns_name(bad), "{bad}");
        }
        assert!(is_ip("127.0.0.1") && is_ip("::") && !is_ip("01.2.3.4"));
    }
}
