//! Upstream timeouts (spec ../shared/spec/kuma-gateway-semantics.md §8.1): Kuma's gateway
//! answers 504 `stream timeout` when a backend stays silent for 5 s, and MeshTimeout's
//! `http.requestTimeout` shortens that per route (504 `upstream request timeout`).

use crate::support::*;

// §8.1: every gateway route has a 5 s stream-idle timeout even without a MeshTimeout.
#[test]
fn silent_backend_gets_504_stream_timeout_by_default() {
    let _v1 = EchoHttp::start("v1");
    let gw = catch_all_gateway("r", "v1");
    let ok = gw.send(1, "GET", "/", "a.test", &[("x-echo-delay-ms", "1000")], b"");
    assert_eq!(ok.status, 200);
    let slow = gw.send(1, "GET", "/", "a.test", &[("x-echo-delay-ms", "7000")], b"");
    assert_eq!(slow.status, 504);
    assert!(slow.text().contains("stream timeout"), "{}", slow.text());
}

/// A gateway whose routes get `http.requestTimeout: 1s` from a MeshTimeout, in front of v1.
fn gateway_with_1s_request_timeout() -> Gateway {
    let timeout = dedent(
        r#"
        type: MeshTimeout
        mesh: default
        name: gw-timeout
        spec:
          targetRef:
            kind: MeshGateway
            name: edge-gateway
          to:
          - targetRef:
              kind: Mesh
            default:
              http:
                requestTimeout: 1s
        "#,
    );
    let mut files = catch_all_files("r", "v1");
    files.push(("timeout.yaml", timeout));
    Gateway::start(&files, &[])
}

// §8.1: a MeshTimeout targeting the gateway sets the route's request timeout.
#[test]
fn mesh_timeout_request_timeout_applies_to_gateway_routes() {
    let _v1 = EchoHttp::start("v1");
    let gw = gateway_with_1s_request_timeout();
    let slow = gw.send(1, "GET", "/", "a.test", &[("x-echo-delay-ms", "2500")], b"");
    assert_eq!(slow.status, 504);
    assert!(
        slow.text().contains("upstream request timeout"),
        "{}",
        slow.text()
    );
    let fast = gw.send(1, "GET", "/", "a.test", &[("x-echo-delay-ms", "200")], b"");
    assert_eq!(fast.status, 200);
}

// HTTP/1 upstream waits are bounded by the head guard (src/proxy/guard.rs), which Pingora
// polls only while it watches the client: a request pipelined behind a slow one must not
// switch the bound off. The slow request still gets its 504 after ~1 s, not when the backend
// answers 20 s later.
#[test]
fn a_pipelined_request_does_not_lift_the_timeout_of_the_one_before_it() {
    pipelined_request_after_a_slow_one_gets_504_in_time(
        b"GET /slow HTTP/1.1\r\nHost: a.test\r\nx-echo-delay-ms: 20000\r\n\r\n",
        Pipelined::Later,
    );
}

// The same when both requests come in one segment, as pipelining clients send them: the
// gateway has read the second before it proxies the first.
#[test]
fn a_request_pipelined_in_the_same_write_does_not_lift_the_timeout_either() {
    pipelined_request_after_a_slow_one_gets_504_in_time(
        b"GET /slow HTTP/1.1\r\nHost: a.test\r\nx-echo-delay-ms: 20000\r\n\r\n",
        Pipelined::SameWrite,
    );
    // Behind a body too, of either framing.
    pipelined_request_after_a_slow_one_gets_504_in_time(
        b"POST /slow HTTP/1.1\r\nHost: a.test\r\nx-echo-delay-ms: 20000\r\n\
          Content-Length: 5\r\n\r\nhello",
        Pipelined::SameWrite,
    );
    pipelined_request_after_a_slow_one_gets_504_in_time(
        b"POST /slow HTTP/1.1\r\nHost: a.test\r\nx-echo-delay-ms: 20000\r\n\
          Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Pipelined::SameWrite,
    );
}

// The same behind a chunked upload: the gateway must find where the chunked body ends to tell
// the next request's bytes from the body's.
#[test]
fn a_pipelined_request_behind_a_chunked_upload_does_not_lift_its_timeout() {
    pipelined_request_after_a_slow_one_gets_504_in_time(
        b"POST /slow HTTP/1.1\r\nHost: a.test\r\nx-echo-delay-ms: 20000\r\n\
          Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n\
          0\r\nx-trailer: t\r\n\r\n",
        Pipelined::Later,
    );
}

enum Pipelined {
    /// The second request arrives while the gateway waits for the first one's backend.
    Later,
    /// Both requests in one write.
    SameWrite,
}

fn pipelined_request_after_a_slow_one_gets_504_in_time(slow_request: &[u8], next: Pipelined) {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let _v1 = EchoHttp::start("v1");
    let gw = gateway_with_1s_request_timeout();
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", gw.lport(1))).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let started = Instant::now();
    let next_request = b"GET /next HTTP/1.1\r\nHost: a.test\r\n\r\n";
    match next {
        Pipelined::Later => {
            conn.write_all(slow_request).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            conn.write_all(next_request).unwrap();
        }
        Pipelined::SameWrite => conn
            .write_all(&[slow_request, next_request].concat())
            .unwrap(),
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("timeout") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let waited = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 504"),
        "after {waited:?}: {text:?}"
    );
    assert!(text.contains("upstream request timeout"), "{text:?}");
    assert!(
        waited < Duration::from_secs(5),
        "the 504 came after {waited:?}"
    );
}

// Kuma's connection idle timeout (`--idle-timeout`, 300 s by default): a keep-alive connection
// waiting for its next request is closed once that long has passed since its last response.
// Each request starts the wait afresh, and a response slower than the timeout is not cut.
#[test]
fn idle_timeout_closes_a_waiting_keep_alive_connection_only() {
    let _v1 = EchoHttp::start("v1");
    let gw = Gateway::start(&catch_all_files("r", "v1"), &["--idle-timeout", "1"]);
    let mut conn = Conn::open(gw.lport(1)).expect("connect");
    // 1.8 s on one connection, never 1 s without a request.
    for i in 0..3 {
        let r = conn.send("GET", "/", "a.test", &[], b"");
        assert_eq!(r.map(|r| r.status).ok(), Some(200), "request {i}");
        std::thread::sleep(std::time::Duration::from_millis(600));
    }
    let slow = conn.send("GET", "/", "a.test", &[("x-echo-delay-ms", "1500")], b"");
    assert_eq!(slow.map(|r| r.status).ok(), Some(200), "slow request");
    let closed = conn
        .wait_closed(std::time::Duration::from_secs(5))
        .expect("an idle connection is closed after the idle timeout");
    assert!(
        closed >= std::time::Duration::from_millis(800),
        "closed {closed:?} after the response, before the 1 s idle timeout"
    );
    assert!(
        closed <= std::time::Duration::from_millis(2500),
        "closed only {closed:?} after the response"
    );
}

// A plain-text keep-alive connection idle for more than a second parks: only its socket is
// kept, in its worker's parking lot (src/proxy/parked.rs), until its next request arrives,
// counted by `meshgate_downstream_connections_parked`. Requests after such a pause, one (whose body
// goes on past the first 1 KiB read) and two pipelined in one write, are answered whole, and
// the idle timeout still counts from the last response, not from when the connection parked.
#[test]
fn a_connection_idle_past_a_second_parks_serves_its_next_requests_and_still_idles_out() {
    const PARKED: &str = "meshgate_downstream_connections_parked{listener=";
    let _v1 = EchoHttp::start("v1");
    let gw = Gateway::start(&catch_all_files("r", "v1"), &["--idle-timeout", "3"]);
    let mut conn = Conn::open(gw.lport(1)).expect("connect");
    let body = vec![b'x'; 20_000];
    let first = conn.send("POST", "/", "a.test", &[], &body).expect("first");
    assert_eq!(first.status, 200);
    assert_eq!(gw.metric(PARKED), 0.0, "parked while busy");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(gw.metric(PARKED), 1.0, "idle for 1.5 s, not parked");
    let after_pause = conn
        .send("POST", "/", "a.test", &[], &body)
        .expect("after a pause");
    assert_eq!(after_pause.status, 200);
    assert_eq!(
        after_pause.echo()["body_len"],
        20_000,
        "{}",
        after_pause.text()
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    conn.write_raw(
        b"GET /one HTTP/1.1\r\nHost: a.test\r\n\r\nGET /two HTTP/1.1\r\nHost: a.test\r\n\r\n",
    )
    .expect("pipelined pair");
    let one = conn.receive("GET").expect("first of the pair");
    let two = conn.receive("GET").expect("second of the pair");
    assert_eq!((one.status, one.seen_path()), (200, "/one".to_string()));
    assert_eq!((two.status, two.seen_path()), (200, "/two".to_string()));
    let closed = conn
        .wait_closed(std::time::Duration::from_secs(8))
        .expect("the idle connection is closed after the idle timeout");
    assert!(
        closed >= std::time::Duration::from_millis(2500)
            && closed <= std::time::Duration::from_millis(4500),
        "closed {closed:?} after the last response, with a 3 s idle timeout"
    );
    assert_eq!(gw.metric(PARKED), 0.0, "a closed connection still counted");
}

// A parked connection whose client goes away is closed and uncounted at once, not kept until
// the idle timeout; connections parked together are each served when they wake.
#[test]
fn a_parked_connection_the_client_closes_is_released() {
    const PARKED: &str = "meshgate_downstream_connections_parked{listener=";
    const ACTIVE: &str = "meshgate_downstream_connections_active{listener=";
    let _v1 = EchoHttp::start("v1");
    let gw = Gateway::start(&catch_all_files("r", "v1"), &["--idle-timeout", "60"]);
    let mut conns: Vec<Conn> = (0..3)
        .map(|i| {
            let mut c = Conn::open(gw.lport(1)).expect("connect");
            let r = c.send("GET", "/", "a.test", &[], b"").expect("request");
            assert_eq!(r.status, 200, "connection {i}");
            c
        })
        .collect();
    let parked = gw.metric_when(PARKED, 3.0, std::time::Duration::from_secs(5));
    assert_eq!(parked, 3.0, "three idle connections, parked");
    assert_eq!(gw.metric(ACTIVE), 3.0);
    drop(conns.remove(0));
    assert_eq!(
        gw.metric_when(ACTIVE, 2.0, std::time::Duration::from_secs(5)),
        2.0,
        "the closed connection is still open on the gateway"
    );
    assert_eq!(gw.metric(PARKED), 2.0);
    for (i, c) in conns.iter_mut().enumerate() {
        let r = c.send("GET", &format!("/woken{i}"), "a.test", &[], b"");
        let r = r.expect("a parked connection answers");
        assert_eq!((r.status, r.seen_path()), (200, format!("/woken{i}")));
    }
    assert_eq!(gw.metric(PARKED), 0.0, "woken connections still counted");
}

// More parked connections than the parking lot takes from its epoll set in one wait (256)
// wake in the same moment: each is served, parks again and is closed at its idle timeout.
#[test]
fn hundreds_of_parked_connections_woken_at_once_are_all_served_and_idle_out() {
    const PARKED: &str = "meshgate_downstream_connections_parked{listener=";
    const ACTIVE: &str = "meshgate_downstream_connections_active{listener=";
    const N: usize = 300;
    let _v1 = EchoHttp::start("v1");
    let gw = Gateway::start(&catch_all_files("r", "v1"), &["--idle-timeout", "5"]);
    // Opened from 30 threads: one after another they would take 14 s (the echo backend's
    // responses wait ~45 ms each for a delayed ACK), and the first would idle out before
    // the last parks.
    let port = gw.lport(1);
    let mut conns: Vec<Conn> = std::thread::scope(|s| {
        let openers: Vec<_> = (0..30)
            .map(|t| {
                s.spawn(move || {
                    (0..N / 30)
                        .map(|i| {
                            let mut c = Conn::open(port).expect("connect");
                            let r = c.send("GET", "/", "a.test", &[], b"").expect("request");
                            assert_eq!(r.status, 200, "connection {i} of opener {t}");
                            c
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        openers
            .into_iter()
            .flat_map(|o| o.join().expect("opener"))
            .collect()
    });
    let parked = gw.metric_when(PARKED, N as f64, std::time::Duration::from_secs(5));
    assert_eq!(parked, N as f64, "idle connections parked");
    for (i, c) in conns.iter_mut().enumerate() {
        let request = format!("GET /woken{i} HTTP/1.1\r\nHost: a.test\r\n\r\n");
        c.write_raw(request.as_bytes()).expect("wake");
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let r = c.receive("GET").expect("a woken connection answers");
        assert_eq!((r.status, r.seen_path()), (200, format!("/woken{i}")));
    }
    let parked = gw.metric_when(PARKED, N as f64, std::time::Duration::from_secs(5));
    assert_eq!(parked, N as f64, "served connections parked again");
    let mut waits = conns.iter_mut().enumerate().map(|(i, c)| {
        c.wait_closed(std::time::Duration::from_secs(10))
            .unwrap_or_else(|| panic!("connection {i} still open after its idle timeout"))
    });
    let first = waits.next().expect("connections");
    assert!(
        first >= std::time::Duration::from_secs(3),
        "closed {first:?} after the responses, with a 5 s idle timeout"
    );
    assert_eq!(waits.count(), N - 1);
    assert_eq!(
        gw.metric_when(ACTIVE, 0.0, std::time::Duration::from_secs(2)),
        0.0
    );
    assert_eq!(gw.metric(PARKED), 0.0, "closed connections still counted");
}

/// A backend that answers every request with a 64 MiB body, written as fast as it is taken.
fn endless_backend(name: &str) -> u16 {
    raw_backend(name, |conn| {
        use std::io::Write;
        let mut reader = std::io::BufReader::new(conn.try_clone().expect("clone"));
        let mut writer = conn;
        if !matches!(
            crate::support::http1::read_request_head(&mut reader),
            Ok(Some(_))
        ) {
            return;
        }
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", 64 << 20);
        let chunk = vec![0u8; 64 << 10];
        let _ = writer.write_all(head.as_bytes());
        for _ in 0..1024 {
            if writer.write_all(&chunk).is_err() {
                return;
            }
        }
    })
}

// An HTTP/1.1 client that stops reading a response cannot hold its stream open: once the
// gateway's writes to it stall, Kuma's stream idle timeout (here 1 s, from a MeshTimeout)
// ends the connection, well before the client would have taken the whole body.
#[test]
fn an_http1_client_that_stops_reading_is_ended_by_the_stream_idle_timeout() {
    use std::io::{Read, Write};
    endless_backend("big");
    let gw = Gateway::start(&catch_all_files_with_1s_stream_idle("route", "big"), &[]);
    let mut client = std::net::TcpStream::connect(("127.0.0.1", gw.lport(1))).expect("connect");
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: a.test\r\n\r\n")
        .expect("send");
    let mut buf = vec![0u8; 64 << 10];
    let first = client.read(&mut buf).expect("first bytes");
    assert!(
        String::from_utf8_lossy(&buf[..first]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..first.min(200)])
    );
    // Stop reading: the socket buffers fill and the gateway's writes stall.
    std::thread::sleep(std::time::Duration::from_secs(4));
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let mut total = first;
    let ended = loop {
        match client.read(&mut buf) {
            Ok(0) => break "closed",
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break "reset",
            Err(e) => panic!("the stalled connection was not ended: {e} after {total} bytes"),
        }
    };
    assert!(
        total < 64 << 20,
        "the whole body arrived ({total} bytes, {ended}): the stall was not timed out"
    );
}

// A client that hangs up while its request waits for a silent backend ends the upstream
// request at once (Envoy resets the upstream stream when the downstream one goes), not when
// the 5 s stream timeout fires: the gateway watches the client while it waits, with a body
// or without one, over HTTP/1 or HTTP/2.
#[test]
fn a_client_that_hangs_up_ends_its_upstream_request_at_once() {
    use std::io::{BufReader, Read, Write};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};
    let (closed_tx, closed_rx) = mpsc::channel::<(String, Duration)>();
    let closed_tx = std::sync::Mutex::new(closed_tx);
    raw_backend("v1", move |conn| {
        let mut reader = BufReader::new(conn.try_clone().expect("clone"));
        let Ok(Some(head)) = crate::support::http1::read_request_head(&mut reader) else {
            return;
        };
        // Never answer; time how long until the gateway closes the connection.
        let asked = Instant::now();
        conn.set_read_timeout(Some(Duration::from_secs(20))).ok();
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        let tx = closed_tx.lock().expect("lock").clone();
        let _ = tx.send((head.target_or_status.clone(), asked.elapsed()));
    });
    let gw = catch_all_gateway("r", "v1");
    for (path, request) in [
        (
            "/bodyless",
            "GET /bodyless HTTP/1.1\r\nHost: a.test\r\n\r\n".to_string(),
        ),
        (
            "/with-body",
            "POST /with-body HTTP/1.1\r\nHost: a.test\r\ncontent-length: 2\r\n\r\nhi".to_string(),
        ),
    ] {
        let mut client = std::net::TcpStream::connect(("127.0.0.1", gw.lport(1))).expect("connect");
        client.write_all(request.as_bytes()).expect("request");
        std::thread::sleep(Duration::from_millis(500));
        drop(client);
        let (seen, after) = closed_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the backend connection is closed");
        assert_eq!(seen, path);
        assert!(
            after < Duration::from_secs(2),
            "{path}: the upstream request outlived its client by {after:?}"
        );
    }
    // HTTP/2 with prior knowledge on the same port: curl gives up after half a second and
    // closes its connection.
    let url = format!("http://127.0.0.1:{}/h2c", gw.lport(1));
    let status = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--http2-prior-knowledge",
            "--max-time",
            "0.5",
        ])
        .args(["-H", "Host: a.test", &url])
        .status()
        .expect("curl");
    assert!(
        !status.success(),
        "curl got an answer from a silent backend"
    );
    let (seen, after) = closed_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the backend connection is closed");
    assert_eq!(seen, "/h2c");
    assert!(
        after < Duration::from_secs(2),
        "h2c: the upstream request outlived its client by {after:?}"
    );
}
