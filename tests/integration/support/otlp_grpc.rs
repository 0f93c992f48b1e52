//! A real OTLP/gRPC receiver for the tests: `otlp_grpc_receiver.py` (a grpcio server) records
//! every call; the test decodes the request bytes with the OpenTelemetry protobuf types.

use base64::Engine;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One received call: the gRPC method path and the request message's bytes.
pub type Call = (String, Vec<u8>);

pub struct GrpcReceiver {
    pub port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
    child: Child,
    // Held open: the receiver exits when it closes.
    _stdin: ChildStdin,
}

impl GrpcReceiver {
    pub fn start() -> GrpcReceiver {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/integration/support/otlp_grpc_receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with grpcio (scripts/setup.sh installs it)");
        let stdin = child.stdin.take().expect("stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines
            .next()
            .and_then(Result::ok)
            .expect("the receiver prints its port");
        let port: u16 = serde_json::from_str::<serde_json::Value>(&first)
            .ok()
            .and_then(|v| v["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("receiver said {first:?}"));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let c = calls.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let body = base64::engine::general_purpose::STANDARD
                    .decode(v["body"].as_str().unwrap_or_default())
                    .unwrap_or_default();
                let method = v["method"].as_str().unwrap_or_default().to_string();
                c.lock().unwrap().push((method, body));
            }
        });
        GrpcReceiver {
            port,
            calls,
            child,
            _stdin: stdin,
        }
    }

    /// The calls to `method` so far, waiting up to `limit` for at least `n`.
    pub fn calls(&self, method: &str, n: usize, limit: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + limit;
        loop {
            let got: Vec<Vec<u8>> = self
                .calls
                .lock()
                .unwrap()
                .iter()
                .filter(|(m, _)| m == method)
                .map(|(_, b)| b.clone())
                .collect();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for GrpcReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
