//! Choosing an endpoint of a backend (MeshLoadBalancingStrategy, spec §8.1): round robin,
//! random, least request, and the consistent-hash rings (RingHash, Maglev) built when the
//! snapshot is compiled, with the request hash their hash policies produce.
//!
//! Rings hash each endpoint's `ip:port` as Envoy does (xxHash64, or MurmurHash2 when asked),
//! so they depend on the endpoint set only: a reload that keeps the endpoints keeps every
//! key where it was, and removing one endpoint moves only its keys.

use super::cluster::{Lb, LbKind};
use super::endpoint_state::EndpointState;
use crate::model::policy::load_balancing::{HashPolicy, HashSource};
use http::HeaderMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use twox_hash::XxHash64;

/// What a balancer picks from: each endpoint's address and run-time state.
pub trait Endpoints {
    fn endpoint_count(&self) -> usize;
    fn state(&self, i: usize) -> &EndpointState;
}

/// A list of endpoint states (outlier detection's tests and sweeps).
impl Endpoints for Vec<&EndpointState> {
    fn endpoint_count(&self) -> usize {
        self.len()
    }
    fn state(&self, i: usize) -> &EndpointState {
        self[i]
    }
}

#[derive(Debug)]
pub enum Balancer {
    RoundRobin(AtomicUsize),
    Random,
    LeastRequest {
        choices: u32,
    },
    /// (hash, endpoint index), sorted by hash.
    Ring(Box<[(u64, u32)]>),
    /// Endpoint index per slot; the size is prime.
    Maglev(Box<[u32]>),
}

impl Balancer {
    pub fn new(lb: &Lb, addrs: &[SocketAddr]) -> Balancer {
        match lb.kind {
            LbKind::RoundRobin => Balancer::RoundRobin(AtomicUsize::new(0)),
            LbKind::Random => Balancer::Random,
            LbKind::LeastRequest { choices } => Balancer::LeastRequest { choices },
            LbKind::RingHash {
                murmur,
                min_ring_size,
                max_ring_size,
            } => Balancer::Ring(ring(addrs, murmur, min_ring_size, max_ring_size)),
            LbKind::Maglev { table_size } => Balancer::Maglev(maglev(addrs, table_size)),
        }
    }

    /// The endpoint for this request: `hash` from the hash policies (a hash balancer without
    /// one picks at random, as Envoy does).
    pub fn pick(&self, eps: &dyn Endpoints, hash: Option<u64>) -> usize {
        let n = eps.endpoint_count();
        if n <= 1 {
            return 0;
        }
        match self {
            Balancer::RoundRobin(next) => next.fetch_add(1, Ordering::Relaxed) % n,
            Balancer::Random => fastrand::usize(..n),
            Balancer::LeastRequest { choices } => {
                let mut best = fastrand::usize(..n);
                for _ in 1..*choices {
                    let other = fastrand::usize(..n);
                    if in_flight(eps, other) < in_flight(eps, best) {
                        best = other;
                    }
                }
                best
            }
            Balancer::Ring(entries) => match hash {
                Some(h) => ring_slot(entries, h)
                    .and_then(|i| entries.get(i))
                    .map_or(0, |e| e.1 as usize),
                None => fastrand::usize(..n),
            },
            Balancer::Maglev(table) => match hash {
                Some(h) if !table.is_empty() => table
                    .get((h % table.len() as u64) as usize)
                    .map_or(0, |&i| i as usize),
                _ => fastrand::usize(..n),
            },
        }
    }

    /// An available endpoint other than `first` (which is not): the next one the balancer
    /// would give; for rings, the next endpoint clockwise (where a ring rebuilt without the
    /// unavailable endpoints sends the key). `None` when none is available.
    pub fn pick_available(
        &self,
        eps: &dyn Endpoints,
        first: usize,
        hash: Option<u64>,
    ) -> Option<usize> {
        let n = eps.endpoint_count();
        let ok = |i: usize| i < n && eps.state(i).available();
        match self {
            Balancer::RoundRobin(_) => (0..n).map(|_| self.pick(eps, hash)).find(|&i| ok(i)),
            Balancer::Ring(entries) if hash.is_some() => {
                let start = hash.and_then(|h| ring_slot(entries, h)).unwrap_or(0);
                (0..entries.len())
                    .map(|k| entries[(start + k) % entries.len()].1 as usize)
                    .find(|&i| ok(i))
            }
            Balancer::Maglev(table) if hash.is_some() && !table.is_empty() => {
                let start = hash.map_or(0, |h| (h % table.len() as u64) as usize);
                (0..table.len())
                    .map(|k| table[(start + k) % table.len()] as usize)
                    .find(|&i| ok(i))
            }
            Balancer::LeastRequest { choices } => {
                let available: Vec<usize> = (0..n).filter(|&i| ok(i)).collect();
                let mut best = *available.get(fastrand::usize(..available.len().max(1)))?;
                for _ in 1..*choices {
                    let other = available[fastrand::usize(..available.len())];
                    if in_flight(eps, other) < in_flight(eps, best) {
                        best = other;
                    }
                }
                Some(best)
            }
            _ => {
                let available: Vec<usize> = (0..n).filter(|&i| ok(i) && i != first).collect();
                available
                    .get(fastrand::usize(..available.len().max(1)))
                    .copied()
            }
        }
    }
}

fn in_flight(eps: &dyn Endpoints, i: usize) -> u32 {
    eps.state(i).in_flight.load(Ordering::Relaxed)
}

/// The first ring entry at or after `h` (wrapping).
fn ring_slot(entries: &[(u64, u32)], h: u64) -> Option<usize> {
    if entries.is_empty() {
        return None;
    }
    let i = entries.partition_point(|e| e.0 < h);
    Some(if i == entries.len() { 0 } else { i })
}

/// A consistent-hash ring in Envoy's manner (`RingHashLoadBalancer::Ring`: points hashed from
/// `"<ip:port>_<i>"`, a key going to the first point at or after its hash), with one
/// difference: every endpoint gets `min_ring_size` points (fewer only when `max_ring_size`
/// caps the ring), where Envoy spreads `min_ring_size` over all endpoints. Envoy's points per
/// endpoint change with the number of endpoints, so removing one moves keys between the
/// others too; here an endpoint's points never change, and only the keys of an endpoint
/// that leaves move.
fn ring(addrs: &[SocketAddr], murmur: bool, min: u32, max: u32) -> Box<[(u64, u32)]> {
    let n = addrs.len().max(1) as u64;
    let per_host = u64::from(min).min((u64::from(max) / n).max(1)).max(1);
    let mut entries = Vec::with_capacity((per_host * n) as usize);
    for (idx, addr) in addrs.iter().enumerate() {
        let base = addr.to_string();
        for i in 0..per_host {
            let key = format!("{base}_{i}");
            let h = if murmur {
                murmur2_64(key.as_bytes(), MURMUR_SEED)
            } else {
                XxHash64::oneshot(0, key.as_bytes())
            };
            entries.push((h, idx as u32));
        }
    }
    entries.sort_unstable();
    entries.into_boxed_slice()
}

/// Envoy's Maglev table (`MaglevTable`): each host fills the slots of its permutation
/// (offset and skip from two hashes of its address) in turn until the table is full.
fn maglev(addrs: &[SocketAddr], size: u32) -> Box<[u32]> {
    let m = u64::from(size.max(2));
    if addrs.is_empty() {
        return Box::new([]);
    }
    let perms: Vec<(u64, u64)> = addrs
        .iter()
        .map(|a| {
            let key = a.to_string();
            let offset = XxHash64::oneshot(0, key.as_bytes()) % m;
            let skip = XxHash64::oneshot(1, key.as_bytes()) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut table = vec![u32::MAX; m as usize];
    let mut next = vec![0u64; addrs.len()];
    let mut filled = 0u64;
    'fill: loop {
        for (i, &(offset, skip)) in perms.iter().enumerate() {
            let mut c = (offset + next[i] * skip) % m;
            while table[c as usize] != u32::MAX {
                next[i] += 1;
                c = (offset + next[i] * skip) % m;
            }
            table[c as usize] = i as u32;
            next[i] += 1;
            filled += 1;
            if filled == m {
                break 'fill;
            }
        }
    }
    table.into_boxed_slice()
}

/// Envoy's seed for `MurmurHash::murmurHash2` (`STD_HASH_SEED`).
const MURMUR_SEED: u64 = 0xc70f_6907;

/// MurmurHash64A, as Envoy's `murmurHash2` computes it.
fn murmur2_64(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let mut k = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, b) in rest.iter().enumerate() {
            h ^= u64::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// What the hash policies of a request read.
pub struct HashInput<'a> {
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub client: Option<SocketAddr>,
}

/// A cookie the gateway sets because a Cookie hash policy with a `ttl` found none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCookie(pub http::HeaderValue);

/// The request's hash under `policies` (Envoy's `HashPolicyImpl::generateHash`: hashes
/// combined in order, `terminal` stopping at the first that produced one), and the cookie to
/// set when a Cookie policy generated one.
pub fn request_hash(
    policies: &[HashPolicy],
    input: &HashInput,
) -> (Option<u64>, Option<NewCookie>) {
    let mut hash: Option<u64> = None;
    let mut cookie = None;
    for p in policies {
        let new = match &p.source {
            HashSource::Header(name) => input
                .headers
                .get(name.as_str())
                .map(|v| XxHash64::oneshot(0, v.as_bytes())),
            HashSource::QueryParameter(name) => input
                .query
                .and_then(|q| query_value(q, name))
                .map(|v| XxHash64::oneshot(0, v.as_bytes())),
            HashSource::SourceIp => input
                .client
                .map(|c| XxHash64::oneshot(0, ip_text(c.ip()).as_bytes())),
            HashSource::Cookie { name, ttl, path } => match cookie_value(input.headers, name) {
                Some(v) => Some(XxHash64::oneshot(0, v.as_bytes())),
                None => match (ttl, input.client) {
                    (Some(ttl), Some(client)) => {
                        let value = format!(
                            "{:016x}",
                            XxHash64::oneshot(0, client.to_string().as_bytes())
                        );
                        cookie = set_cookie(name, &value, path.as_deref(), *ttl).map(NewCookie);
                        Some(XxHash64::oneshot(0, value.as_bytes()))
                    }
                    _ => None,
                },
            },
            HashSource::FilterState(_) => None,
        };
        if let Some(new) = new {
            hash = Some(match hash {
                Some(h) => h.rotate_left(1) ^ new,
                None => new,
            });
            if p.terminal {
                break;
            }
        }
    }
    (hash, cookie)
}

fn ip_text(ip: IpAddr) -> String {
    ip.to_string()
}

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.trim_matches('"'))
        })
}

/// Envoy's generated cookie: `name="value"; Max-Age=N; Path=P; HttpOnly` (no Max-Age for a
/// zero ttl: a session cookie).
fn set_cookie(
    name: &str,
    value: &str,
    path: Option<&str>,
    ttl: std::time::Duration,
) -> Option<http::HeaderValue> {
    let mut s = format!("{name}=\"{value}\"");
    if !ttl.is_zero() {
        s.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if let Some(p) = path {
        s.push_str(&format!("; Path={p}"));
    }
    s.push_str("; HttpOnly");
    http::HeaderValue::from_str(&s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Eps(Vec<EndpointState>);
    impl Endpoints for Eps {
        fn endpoint_count(&self) -> usize {
            self.0.len()
        }
        fn state(&self, i: usize) -> &EndpointState {
            &self.0[i]
        }
    }

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([10, 0, 0, 1], 8000 + i)))
            .collect()
    }

    fn eps(n: usize) -> Eps {
        Eps((0..n).map(|_| EndpointState::default()).collect())
    }

    fn ring_lb() -> Lb {
        Lb {
            kind: LbKind::RingHash {
                murmur: false,
                min_ring_size: 1024,
                max_ring_size: 8_388_608,
            },
            hash_policies: Vec::new(),
        }
    }

    #[test]
    fn ring_keeps_keys_and_moves_only_a_removed_endpoints_keys() {
        let three = Balancer::new(&ring_lb(), &addrs(3));
        let two = Balancer::new(&ring_lb(), &addrs(2));
        let (e3, e2) = (eps(3), eps(2));
        let mut moved = 0;
        for k in 0..1000u64 {
            let h = XxHash64::oneshot(0, &k.to_le_bytes());
            let a = three.pick(&e3, Some(h));
            assert_eq!(a, three.pick(&e3, Some(h)), "stable");
            let b = two.pick(&e2, Some(h));
            if a != 2 {
                assert_eq!(a, b, "a key of a kept endpoint stays");
            } else {
                moved += 1;
            }
        }
        assert!((200..450).contains(&moved), "about a third moved: {moved}");
    }

    #[test]
    fn an_unavailable_endpoint_s_keys_go_to_the_next_on_the_ring() {
        let ring = Balancer::new(&ring_lb(), &addrs(3));
        let e = eps(3);
        e.0[1].set_check_failed(true);
        for k in 0..300u64 {
            let h = XxHash64::oneshot(0, &k.to_le_bytes());
            let first = ring.pick(&e, Some(h));
            if first == 1 {
                let next = ring.pick_available(&e, first, Some(h));
                assert!(matches!(next, Some(0) | Some(2)));
                assert_eq!(next, ring.pick_available(&e, first, Some(h)), "stable");
            }
        }
    }

    #[test]
    fn maglev_spreads_and_is_stable() {
        let lb = Lb {
            kind: LbKind::Maglev { table_size: 65537 },
            hash_policies: Vec::new(),
        };
        let m = Balancer::new(&lb, &addrs(3));
        let Balancer::Maglev(t) = &m else {
            panic!("maglev")
        };
        let mut counts = [0usize; 3];
        for i in t.iter() {
            counts[*i as usize] += 1;
        }
        for c in counts {
            assert!((21_000..23_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn least_request_prefers_the_idle_endpoint() {
        let lb = Lb {
            kind: LbKind::LeastRequest { choices: 2 },
            hash_policies: Vec::new(),
        };
        let b = Balancer::new(&lb, &addrs(2));
        let e = eps(2);
        e.0[0].in_flight.store(10, Ordering::Relaxed);
        let idle = (0..1000).filter(|_| b.pick(&e, None) == 1).count();
        assert!(idle > 700, "{idle}");
    }

    #[test]
    fn round_robin_skips_unavailable_endpoints_fairly() {
        let b = Balancer::new(&Lb::default(), &addrs(3));
        let e = eps(3);
        e.0[2].set_check_failed(true);
        let mut counts = [0usize; 3];
        for _ in 0..300 {
            let first = b.pick(&e, None);
            let i = if e.0[first].available() {
                first
            } else {
                b.pick_available(&e, first, None).expect("one is up")
            };
            counts[i] += 1;
        }
        assert_eq!(counts[2], 0);
        assert!(counts[0].abs_diff(counts[1]) <= 2, "{counts:?}");
    }

    #[test]
    fn hash_policies_combine_and_generate_cookies() {
        let mut headers = HeaderMap::new();
        headers.insert("x-user", "alice".parse().expect("value"));
        let client = Some(SocketAddr::from(([192, 0, 2, 1], 5555)));
        let input = HashInput {
            headers: &headers,
            query: Some("a=1&user=bob"),
            client,
        };
        let header = HashPolicy {
            source: HashSource::Header("x-user".into()),
            terminal: false,
        };
        let (h1, _) = request_hash(std::slice::from_ref(&header), &input);
        assert_eq!(h1, Some(XxHash64::oneshot(0, b"alice")));
        let query = HashPolicy {
            source: HashSource::QueryParameter("user".into()),
            terminal: false,
        };
        let (both, _) = request_hash(&[header.clone(), query.clone()], &input);
        assert_eq!(
            both,
            Some(XxHash64::oneshot(0, b"alice").rotate_left(1) ^ XxHash64::oneshot(0, b"bob"))
        );
        let terminal = HashPolicy {
            terminal: true,
            ..header
        };
        assert_eq!(request_hash(&[terminal, query], &input).0, h1);
        let cookie = HashPolicy {
            source: HashSource::Cookie {
                name: "sticky".into(),
                ttl: Some(std::time::Duration::from_secs(3600)),
                path: Some("/".into()),
            },
            terminal: false,
        };
        let (h, set) = request_hash(std::slice::from_ref(&cookie), &input);
        let set = set.expect("a cookie is generated");
        let text = set.0.to_str().expect("ascii");
        assert!(
            text.starts_with("sticky=\"") && text.ends_with("; Max-Age=3600; Path=/; HttpOnly")
        );
        let value = text.split('"').nth(1).expect("quoted");
        let mut with_cookie = HeaderMap::new();
        with_cookie.insert(
            http::header::COOKIE,
            format!("a=b; sticky={value}").parse().expect("v"),
        );
        let again = HashInput {
            headers: &with_cookie,
            query: None,
            client,
        };
        let (h2, none) = request_hash(&[cookie], &again);
        assert_eq!(h, h2, "the returned cookie hashes the same");
        assert!(none.is_none());
    }

    #[test]
    fn murmur_matches_the_reference_vector() {
        // MurmurHash64A("", seed 0) = 0; a non-empty key changes with the seed.
        assert_eq!(murmur2_64(b"", 0), 0);
        assert_ne!(murmur2_64(b"key", 0), murmur2_64(b"key", 1));
    }
}
