//! A fleet: several meshgate processes on one etcd prefix, and rate limits shared through
//! Redis. Real `etcd` and `redis-server` on loopback (scripts/setup.sh installs them).

use crate::support::client::{admin_get, backend_of, try_send_to};
use crate::support::policy::PolicyDir;
use crate::support::*;
use meshgate::testkit::{catch_all_route, dataplanes, gateway_one_http};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ------------------------------------------------------------------------------ etcd / redis

/// One etcd member on loopback ports, with its data in a temporary directory (restartable
/// on the same data and ports).
struct Etcd {
    data: PathBuf,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    /// Mutual TLS on the client port: (CA, etcd's server leaf, etcdctl's client leaf).
    tls: Option<(PathBuf, Leaf, Leaf)>,
    /// `user:password` for etcdctl once auth is on.
    ctl_user: Option<String>,
}

impl Etcd {
    fn start() -> Etcd {
        Etcd::start_with(None)
    }

    fn start_with(tls: Option<(PathBuf, Leaf, Leaf)>) -> Etcd {
        let data = std::env::temp_dir().join(format!(
            "meshgate-etcd-{}-{}",
            std::process::id(),
            free_port()
        ));
        let mut etcd = Etcd {
            data,
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
            tls,
            ctl_user: None,
        };
        etcd.run();
        etcd
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    fn run(&mut self) {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = Command::new("etcd");
        if let Some((ca, server, _)) = &self.tls {
            command
                .arg("--trusted-ca-file")
                .arg(ca)
                .arg("--cert-file")
                .arg(&server.cert)
                .arg("--key-file")
                .arg(&server.key)
                .arg("--client-cert-auth")
                // Auth tokens expire after 2 s idle (300 s by default), so a test sees a
                // gateway outlive its token.
                .args(["--auth-token-ttl", "2"]);
        }
        let child = command
            .args(["--name", "t", "--data-dir"])
            .arg(&self.data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("t={peer}")])
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (Debian etcd-server; scripts/setup.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.ctl(&["endpoint", "health"]).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!("etcd did not become healthy on {}", self.endpoint());
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `etcdctl --endpoints … ARGS`: its stdout, or its stderr as the error.
    fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let mut command = Command::new("etcdctl");
        if let Some((ca, _, client)) = &self.tls {
            command
                .arg("--cacert")
                .arg(ca)
                .arg("--cert")
                .arg(&client.cert)
                .arg("--key")
                .arg(&client.key);
        }
        if let Some(user) = &self.ctl_user {
            command.args(["--user", user]);
        }
        let out = command
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint(), "--dial-timeout", "2s"])
            .args(args)
            .output()
            .map_err(|e| format!("etcdctl (Debian etcd-client): {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn revision(&self) -> i64 {
        let out = self
            .ctl(&["endpoint", "status", "-w", "json"])
            .expect("etcdctl endpoint status");
        let v: serde_json::Value = serde_json::from_str(&out).expect("status json");
        v[0]["Status"]["header"]["revision"]
            .as_i64()
            .expect("revision")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.data);
    }
}

struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian redis-server; scripts/setup.sh installs it)");
        // Owned from here: Drop kills and reaps it whatever happens below.
        let redis = Redis {
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return redis;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not listen on {port}");
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

// ------------------------------------------------------------------------------ helpers

/// `meshgate publish --policies DIR --to URL`: exit code and output.
fn publish(dir: &Path, url: &str) -> (i32, String) {
    publish_with(dir, url, &[])
}

fn publish_with(dir: &Path, url: &str, extra: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["publish", "--policies"])
        .arg(dir)
        .args(["--to", url])
        .args(extra)
        .output()
        .expect("meshgate publish");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The policies of one route to `service`, written with `dir`'s ports.
fn route_files(service: &str) -> Vec<(&'static str, String)> {
    vec![
        ("gateway.yaml", gateway_one_http()),
        ("routes/route.yaml", catch_all_route("route", service)),
        ("dataplanes.yaml", dataplanes(&["echo-a", "echo-b"])),
    ]
}

/// Which backend instance `ip` sends `/` to (`None` when it does not answer 200).
fn backend_at(ip: &str, port: u16) -> Option<String> {
    let r = try_send_to(ip, port, "GET", "/", "fleet.test", &[], b"").ok()?;
    (r.status == 200).then(|| backend_of(&r)).flatten()
}

fn config(admin: u16) -> serde_json::Value {
    let r = admin_get(admin, "/config").expect("GET /config");
    serde_json::from_slice(&r.body).expect("/config is JSON")
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Three gateways on one prefix, each on its own loopback address and admin port.
struct Fleet {
    /// The directory holding the ports and the published files.
    dir: PolicyDir,
    members: Vec<(String, Gateway)>,
}

fn start_member(url: &str, ip: &str, extra: &[&str]) -> Gateway {
    // A directory of its own for the admin port and the log; the listener port comes from
    // the published policies.
    let own = PolicyDir::new(&[]);
    let mut gw = Gateway::spawn_from(own, url, ip, extra);
    if let Err(why) = gw.wait_ready(READY_TIMEOUT) {
        panic!("{ip}: not ready: {why}\n{}", gw.log());
    }
    gw
}

// ------------------------------------------------------------------------------ etcd tests

#[test]
fn three_gateways_on_one_prefix_converge_survive_etcd_loss_and_catch_up() {
    let _a = EchoHttp::start("echo-a");
    let _b = EchoHttp::start("echo-b");
    let mut etcd = Etcd::start();
    let url = format!("etcd://{}/meshgate/fleet", etcd.endpoint());
    let fleet_dir = PolicyDir::new(&route_files("echo-a"));
    let port = fleet_dir.lport(1);
    let (code, out) = publish(&fleet_dir.path, &url);
    assert_eq!(code, 0, "publish: {out}");
    assert!(out.contains("3 written"), "publish output: {out}");

    let fleet = Fleet {
        members: ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
            .iter()
            .map(|ip| (ip.to_string(), start_member(&url, ip, &[])))
            .collect(),
        dir: fleet_dir,
    };
    for (ip, gw) in &fleet.members {
        assert_eq!(backend_at(ip, port).as_deref(), Some("echo-a"), "{ip}");
        let c = config(gw.admin_port());
        assert_eq!(c["source"]["kind"], "etcd");
        assert_eq!(c["source"]["prefix"], "/meshgate/fleet/");
        assert_eq!(c["source"]["revision"].as_i64(), Some(etcd.revision()));
    }

    // One publish reaches every member.
    fleet
        .dir
        .write_atomic("routes/route.yaml", &catch_all_route("route", "echo-b"));
    let published = Instant::now();
    let (code, out) = publish(&fleet.dir.path, &url);
    assert_eq!(code, 0, "publish: {out}");
    for (ip, _) in &fleet.members {
        wait_for(&format!("{ip} routes to echo-b"), RELOAD_TIMEOUT, || {
            (backend_at(ip, port).as_deref() == Some("echo-b")).then_some(())
        });
    }
    eprintln!(
        "fleet of 3 converged {} ms after publish returned",
        published.elapsed().as_millis()
    );

    // An invalid directory is not published: etcd's revision does not move.
    let before = etcd.revision();
    fleet.dir.write_atomic(
        "routes/route.yaml",
        "type: MeshHTTPRoute\nmesh: default\nname: route\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n  to:\n  - targetRef:\n      kind: Mesh\n    rules:\n    - matches:\n      - path: {type: Bogus, value: /}\n      default:\n        backendRefs: [{kind: MeshService, name: echo-a}]\n",
    );
    let (code, out) = publish(&fleet.dir.path, &url);
    assert_ne!(code, 0, "an invalid directory must not publish: {out}");
    assert!(out.contains("routes/route.yaml"), "names the file: {out}");
    assert_eq!(etcd.revision(), before, "nothing written");

    // An invalid key written straight to etcd is rejected whole, naming the key.
    etcd.ctl(&[
        "put",
        "/meshgate/fleet/routes/broken.yaml",
        "kind: [unclosed",
    ])
    .expect("put");
    for (ip, gw) in &fleet.members {
        let err = wait_for(&format!("{ip} reports the bad key"), RELOAD_TIMEOUT, || {
            config(gw.admin_port())["last_error"]
                .as_str()
                .map(str::to_string)
        });
        assert!(err.contains("routes/broken.yaml"), "{ip}: {err}");
        assert_eq!(backend_at(ip, port).as_deref(), Some("echo-b"), "{ip}");
    }
    etcd.ctl(&["del", "/meshgate/fleet/routes/broken.yaml"])
        .expect("del");

    // etcd goes away: every member keeps serving and says so; a change made when it comes
    // back is applied.
    etcd.stop();
    for (ip, gw) in &fleet.members {
        let body = wait_for(
            &format!("{ip} reports etcd unreachable"),
            RELOAD_TIMEOUT,
            || {
                let r = admin_get(gw.admin_port(), "/ready").ok()?;
                assert_eq!(r.status, 200, "{ip}: /ready stays 200 while serving");
                let text = r.text();
                text.contains("unreachable").then_some(text)
            },
        );
        assert!(body.contains("serving revision"), "{ip}: {body}");
        assert_eq!(backend_at(ip, port).as_deref(), Some("echo-b"), "{ip}");
        let metrics = admin_get(gw.admin_port(), "/metrics")
            .expect("metrics")
            .text();
        assert!(metrics.contains("meshgate_etcd_connected 0"), "{ip}");
    }
    etcd.run();
    fleet
        .dir
        .write_atomic("routes/route.yaml", &catch_all_route("route", "echo-a"));
    let (code, out) = publish(&fleet.dir.path, &url);
    assert_eq!(code, 0, "publish after etcd returned: {out}");
    for (ip, gw) in &fleet.members {
        wait_for(&format!("{ip} catches up"), Duration::from_secs(15), || {
            (backend_at(ip, port).as_deref() == Some("echo-a")).then_some(())
        });
        let c = config(gw.admin_port());
        assert_eq!(c["source"]["connected"], true, "{ip}");
        assert!(c["last_error"].is_null(), "{ip}: {}", c["last_error"]);
    }
    drop(fleet);
}

#[test]
fn a_gateway_starts_from_its_policy_cache_when_etcd_is_down() {
    let _a = EchoHttp::start("echo-a");
    let _b = EchoHttp::start("echo-b");
    let mut etcd = Etcd::start();
    let url = format!("etcd://{}/meshgate/cached", etcd.endpoint());
    let dir = PolicyDir::new(&route_files("echo-a"));
    let port = dir.lport(1);
    let (code, out) = publish(&dir.path, &url);
    assert_eq!(code, 0, "publish: {out}");
    let revision = etcd.revision();
    let cache = dir.root.join("cache");
    let cache_arg = cache.display().to_string();
    let args = ["--policy-cache", cache_arg.as_str()];

    let mut first = start_member(&url, "127.0.0.5", &args);
    assert_eq!(backend_at("127.0.0.5", port).as_deref(), Some("echo-a"));
    assert!(cache.join("current").exists(), "the revision was cached");
    first.stop();

    // Without etcd and without a cache, a gateway does not start.
    etcd.stop();
    let mut bare = Gateway::spawn_from(PolicyDir::new(&[]), &url, "127.0.0.6", &[]);
    let status = bare.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(!status.success());
    assert!(bare.log().contains("meshgate/cached"), "{}", bare.log());

    // With the cache it starts, serves the cached revision and says where it came from.
    let cached = start_member(&url, "127.0.0.5", &args);
    assert_eq!(backend_at("127.0.0.5", port).as_deref(), Some("echo-a"));
    let c = config(cached.admin_port());
    assert_eq!(c["source"]["from_cache"], true);
    assert_eq!(c["source"]["revision"].as_i64(), Some(revision));
    let ready = admin_get(cached.admin_port(), "/ready").expect("ready");
    assert_eq!(ready.status, 200);
    assert!(
        ready.text().contains("from the policy cache"),
        "{}",
        ready.text()
    );

    // etcd returns with a change: applied, no longer from the cache.
    etcd.run();
    dir.write_atomic("routes/route.yaml", &catch_all_route("route", "echo-b"));
    let (code, out) = publish(&dir.path, &url);
    assert_eq!(code, 0, "publish: {out}");
    wait_for(
        "the cached gateway catches up",
        Duration::from_secs(15),
        || (backend_at("127.0.0.5", port).as_deref() == Some("echo-b")).then_some(()),
    );
    assert_eq!(config(cached.admin_port())["source"]["from_cache"], false);
}

/// etcd with mutual TLS and auth on: `root` may write, `reader` may only read the prefix.
/// Returns etcd and the files a gateway needs (CA, its client leaf, password files).
struct SecureEtcd {
    etcd: Etcd,
    ca: PathBuf,
    client: Leaf,
    _dir: TempDir,
}

impl SecureEtcd {
    fn start(prefix: &str) -> SecureEtcd {
        let dir = tempdir("etcd-tls");
        let ca = TestCa::new(&dir);
        let server = ca.leaf("etcd-server", "IP:127.0.0.1");
        // etcdctl's leaf is named after etcd's root user; meshgate's after no user at all,
        // so only its password can authenticate it.
        let ctl = ca.leaf("root", "IP:127.0.0.1");
        let client = ca.leaf("meshgate-gw", "IP:127.0.0.1");
        let mut etcd = Etcd::start_with(Some((ca.cert.clone(), server, ctl)));
        for args in [
            &["user", "add", "root", "--new-user-password", "root-pw"][..],
            &["user", "grant-role", "root", "root"],
            &["role", "add", "fleet-reader"],
            &[
                "role",
                "grant-permission",
                "fleet-reader",
                "read",
                prefix,
                "--prefix=true",
            ],
            &["user", "add", "reader", "--new-user-password", "reader-pw"],
            &["user", "grant-role", "reader", "fleet-reader"],
            &["auth", "enable"],
        ] {
            etcd.ctl(args)
                .unwrap_or_else(|e| panic!("etcdctl {args:?}: {e}"));
        }
        etcd.ctl_user = Some("root:root-pw".into());
        for (name, password) in [
            ("root", "root-pw"),
            ("reader", "reader-pw"),
            ("wrong", "nope"),
        ] {
            fs::write(
                dir.join(format!("{name}.password")),
                format!("{password}\n"),
            )
            .unwrap();
        }
        SecureEtcd {
            etcd,
            ca: ca.cert,
            client,
            _dir: dir,
        }
    }

    /// `--etcd-*` flags for `user` (its password from a file).
    fn flags(&self, user: &str) -> Vec<String> {
        let password = self._dir.join(format!("{user}.password"));
        [
            ("--etcd-ca", self.ca.display().to_string()),
            ("--etcd-cert", self.client.cert.display().to_string()),
            ("--etcd-key", self.client.key.display().to_string()),
            ("--etcd-user", user.to_string()),
            ("--etcd-password-file", password.display().to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect()
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn etcd_with_mutual_tls_and_password_auth() {
    let _a = EchoHttp::start("echo-a");
    let _b = EchoHttp::start("echo-b");
    let secure = SecureEtcd::start("/meshgate/secure/");
    let url = format!("etcd://{}/meshgate/secure", secure.etcd.endpoint());
    let dir = PolicyDir::new(&route_files("echo-a"));
    let port = dir.lport(1);

    // Publishing needs write access: the read-only user is refused, and says why.
    let (code, out) = publish_with(&dir.path, &url, &strs(&secure.flags("reader")));
    assert_ne!(code, 0, "a read-only user must not publish: {out}");
    assert!(out.contains("permission denied"), "{out}");
    let (code, out) = publish_with(&dir.path, &url, &strs(&secure.flags("root")));
    assert_eq!(code, 0, "publish as root: {out}");

    // A gateway reads with the read-only user over mutual TLS.
    let reader = secure.flags("reader");
    let gw = start_member(&url, "127.0.0.10", &strs(&reader));
    assert_eq!(backend_at("127.0.0.10", port).as_deref(), Some("echo-a"));
    let c = config(gw.admin_port());
    assert_eq!(c["source"]["connected"], true);
    assert!(c["source"]["endpoints"]
        .to_string()
        .contains(&secure.etcd.endpoint()));
    // The password is not shown anywhere the admin port answers.
    assert!(!c.to_string().contains("reader-pw"));

    // Changes arrive through the authenticated watch, also after the gateway's auth token
    // expired while nothing changed.
    thread::sleep(Duration::from_secs(3));
    dir.write_atomic("routes/route.yaml", &catch_all_route("route", "echo-b"));
    let (code, out) = publish_with(&dir.path, &url, &strs(&secure.flags("root")));
    assert_eq!(code, 0, "publish as root: {out}");
    wait_for("the change through TLS", RELOAD_TIMEOUT, || {
        (backend_at("127.0.0.10", port).as_deref() == Some("echo-b")).then_some(())
    });
    let metrics = admin_get(gw.admin_port(), "/metrics")
        .expect("metrics")
        .text();
    assert!(
        metrics.contains("meshgate_etcd_disconnects_total 0"),
        "an expired token is renewed, not a lost session: {metrics}"
    );

    // A wrong password, or no TLS to a TLS-only etcd, and the gateway does not start
    // (no cache to start from); the log says which etcd refused it.
    let wrong = secure.flags("wrong");
    let mut refused = Gateway::spawn_from(PolicyDir::new(&[]), &url, "127.0.0.11", &strs(&wrong));
    let status = refused.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(!status.success());
    let log = refused.log();
    assert!(log.contains("authentication failed"), "{log}");
    assert!(log.contains("meshgate/secure"), "{log}");
    let mut plain = Gateway::spawn_from(PolicyDir::new(&[]), &url, "127.0.0.11", &[]);
    let status = plain.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(!status.success(), "{}", plain.log());
}

// ------------------------------------------------------------------------------ redis

fn limited_files(num: u32) -> Vec<(&'static str, String)> {
    let mut files = route_files("echo-a");
    files.push((
        "ratelimit.yaml",
        format!(
            "type: MeshRateLimit\nmesh: default\nname: fleet-limit\nlabels:\n  meshgate.io/rate-limit-scope: fleet\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n  to:\n  - targetRef:\n      kind: Mesh\n    default:\n      local:\n        http:\n          requestRate: {{num: {num}, interval: 1s}}\n"
        ),
    ));
    files
}

/// Drives keep-alive load at every member for `seconds` whole Unix seconds and returns the
/// requests let through (200) in each whole second, summed over the members.
fn allowed_per_second(ips: &[&str], port: u16, seconds: u64) -> Vec<usize> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    // Start at the next whole second, so every counted second is a full window.
    let start = now.as_secs() + 1;
    thread::sleep(Duration::from_secs(start) - now);
    let end = start + seconds;
    let counts: Vec<Vec<u64>> = thread::scope(|s| {
        let handles: Vec<_> = ips
            .iter()
            // Eight clients per member: a proxied request to the test's echo backend takes
            // ~40 ms here, and each member must be offered well over its 100 per second.
            .flat_map(|ip| std::iter::repeat_n(ip, 8))
            .map(|ip| {
                s.spawn(move || {
                    let mut seen = Vec::new();
                    let mut conn = crate::support::client::Conn::open_to(ip, port).ok();
                    loop {
                        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
                        if t.as_secs() >= end {
                            return seen;
                        }
                        let Some(c) = conn.as_mut() else {
                            conn = crate::support::client::Conn::open_to(ip, port).ok();
                            continue;
                        };
                        match c.send("GET", "/", "fleet.test", &[], b"") {
                            Ok(r) if r.status == 200 => seen.push(t.as_secs()),
                            Ok(_) => {}
                            Err(_) => conn = None,
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    (start..end)
        .map(|sec| counts.iter().flatten().filter(|s| **s == sec).count())
        .collect()
}

#[test]
fn a_fleet_limit_is_shared_through_redis_and_local_when_redis_stops() {
    let _a = EchoHttp::start("echo-a");
    let _b = EchoHttp::start("echo-b");
    let mut redis = Redis::start();
    let etcd = Etcd::start();
    let url = format!("etcd://{}/meshgate/limits", etcd.endpoint());
    let dir = PolicyDir::new(&limited_files(100));
    let port = dir.lport(1);
    let (code, out) = publish(&dir.path, &url);
    assert_eq!(code, 0, "publish: {out}");
    let store = format!("redis://127.0.0.1:{}", redis.port);
    let ips = ["127.0.0.7", "127.0.0.8", "127.0.0.9"];
    let members: Vec<Gateway> = ips
        .iter()
        .map(|ip| start_member(&url, ip, &["--rate-limit-store", &store]))
        .collect();
    for gw in &members {
        wait_for("store connected", Duration::from_secs(10), || {
            let m = admin_get(gw.admin_port(), "/metrics").ok()?.text();
            m.contains("meshgate_rate_limit_store_up 1").then_some(())
        });
    }

    // Shared: the three together get 100 per second (± 10 %). The average over whole
    // seconds: a client stamps a request when it sends it, the store counts it a few
    // milliseconds later, so single seconds trade a few requests at their edges.
    let shared = allowed_per_second(&ips, port, 3);
    let average = shared.iter().sum::<usize>() / shared.len();
    assert!(
        (90..=110).contains(&average),
        "{average} per second let through by the fleet, want 100 ± 10 % (per second: {shared:?})"
    );
    assert!(
        shared.iter().all(|n| *n <= 130),
        "no second far over: {shared:?}"
    );

    // Redis stops: each member's own bucket takes over (100 each, so ~300 together).
    redis.stop();
    for gw in &members {
        wait_for("store down", Duration::from_secs(10), || {
            let m = admin_get(gw.admin_port(), "/metrics").ok()?.text();
            m.contains("meshgate_rate_limit_store_up 0").then_some(())
        });
    }
    // The first second also spends what was left in each bucket's current window (the
    // buckets were idle while Redis counted), so only the later ones are steady.
    let local = allowed_per_second(&ips, port, 3);
    let average = local[1..].iter().sum::<usize>() / 2;
    assert!(
        (270..=330).contains(&average),
        "{average} per second let through with Redis down, want each member's own 100 (per second: {local:?})"
    );
    let m = admin_get(members[0].admin_port(), "/metrics")
        .expect("metrics")
        .text();
    let fallbacks: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("meshgate_rate_limit_store_fallbacks_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(fallbacks > 0.0, "fallbacks counted: {m}");
}
