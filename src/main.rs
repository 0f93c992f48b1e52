//! meshgate's command line and server assembly. Everything else lives in the library.

use clap::Parser;
use log::{error, info, warn};
use meshgate::admin::access_log;
use meshgate::admin::Admin;
use meshgate::compile::{CompileOptions, ListenerDefaults};
use meshgate::config::Settings;
use meshgate::proxy::http::HttpGateway;
use meshgate::runtime::drain::DrainWatcher;
use meshgate::runtime::listeners::ListenerManager;
use meshgate::runtime::publish;
use meshgate::runtime::reload::{PolicyBuilder, PolicyWatcher};
use meshgate::runtime::state::GatewayState;
use meshgate::violation::render;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service as ListeningService;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kuma's built-in gateway (MeshGateway, MeshHTTPRoute, MeshTCPRoute) on Pingora.
#[derive(Parser, Debug)]
#[command(name = "meshgate", version = meshgate::build_info::LONG_VERSION, about)]
struct Cli {
    /// Directory of Kuma resources (*.yaml / *.yml, recursively; hot-reloaded).
    #[arg(long, value_name = "DIR")]
    policies: PathBuf,
    /// The MeshGateway to serve (default: the only one in DIR).
    #[arg(long, value_name = "NAME")]
    gateway: Option<String>,
    /// Address every listener binds.
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Admin endpoint (/ready, /config, /metrics).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
    /// Validate DIR and exit: 0 when valid, 1 with one line per problem otherwise.
    #[arg(long)]
    check: bool,
    /// Access log target: `off`, `stdout` or a file path (Kuma's default formats).
    #[arg(long, value_name = "TARGET", default_value = "off")]
    access_log: String,
    /// Seconds a client has to send a complete request head, where no MeshTimeout sets
    /// `requestHeadersTimeout` (and for a TLS port's ClientHello).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    header_timeout: u64,
    /// Idle keep-alive timeout between requests, seconds, where no MeshTimeout sets
    /// `idleTimeout` (Kuma: 300).
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    idle_timeout: u64,
    /// Idle timeout of TCP/TLS route connections, seconds, where no MeshTimeout sets
    /// `idleTimeout` (Kuma: 300).
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    tcp_idle_timeout: u64,
    /// Cap on concurrent downstream connections (0 = no cap).
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_connections: usize,
    /// Accept request header names containing `_` (Kuma's gateway rejects them).
    #[arg(long)]
    allow_underscore_headers: bool,
    /// Response compression: `gzip` (as Kuma's gateway: by Accept-Encoding, Envoy's
    /// defaults) or `off`.
    #[arg(long, value_name = "gzip|off", default_value = "gzip", value_parser = ["gzip", "off"])]
    compression: String,
    /// Diagnostic log lines on stderr: `text` (with journald priority prefixes under
    /// systemd) or `json`.
    #[arg(long, value_name = "text|json", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// HTTP/1.0 requests: `serve` them, or `reject` them with 426 as Kuma's gateway does.
    #[arg(long, value_name = "serve|reject", default_value = "serve", value_parser = ["serve", "reject"])]
    http10: String,
    #[command(flatten)]
    pingora: Opt,
}

/// Pingora's defaults are unsafe for a gateway run without `-c`: a 300 s grace period slept in
/// full and an upgrade socket in the shared /tmp. These are used when no conf file is given.
/// The upgrade socket and pid file go to a directory only this user can enter
/// (`$XDG_RUNTIME_DIR/meshgate` or `/tmp/meshgate-UID`), so another local user cannot receive
/// the listening sockets (operations.md §1.1 #10). Both processes of an upgrade compute the same
/// path. Production runs pass `-c` with `/run/meshgate` paths.
fn default_server_conf() -> std::io::Result<ServerConf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    let dir = match std::env::var("XDG_RUNTIME_DIR") {
        Ok(d) if !d.is_empty() => PathBuf::from(d).join("meshgate"),
        _ => PathBuf::from(format!("/tmp/meshgate-{uid}")),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let meta = std::fs::metadata(&dir)?;
    if meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        return Err(std::io::Error::other(format!(
            "{} must be owned by uid {uid} with mode 0700",
            dir.display()
        )));
    }
    Ok(ServerConf {
        grace_period_seconds: Some(10),
        graceful_shutdown_timeout_seconds: Some(5),
        work_stealing: false,
        upstream_keepalive_pool_size: 1024,
        upgrade_sock: dir.join("upgrade.sock").display().to_string(),
        pid_file: dir.join("meshgate.pid").display().to_string(),
        ..ServerConf::default()
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    meshgate::logging::init(if cli.log_format == "json" {
        meshgate::logging::LogFormat::Json
    } else {
        meshgate::logging::LogFormat::Text
    });
    let compile = CompileOptions {
        gateway: cli.gateway.clone(),
        policy_dir: cli.policies.clone(),
        listener_defaults: ListenerDefaults {
            request_headers: Duration::from_secs(cli.header_timeout.max(1)),
            idle: Duration::from_secs(cli.idle_timeout.max(1)),
            tcp_idle: Duration::from_secs(cli.tcp_idle_timeout.max(1)),
        },
    };

    // Every snapshot, the first included, is built on the builder thread (see PolicyBuilder).
    let builder = match PolicyBuilder::spawn(compile) {
        Ok(b) => b,
        Err(e) => {
            error!("cannot start the policy builder thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(first) = builder.build_blocking(&cli.policies, 1) else {
        error!("the policy builder thread stopped");
        return ExitCode::FAILURE;
    };
    let built = match first {
        Ok(b) => b,
        Err(rejected) => {
            println!("{}", render(&rejected.violations));
            if !cli.check {
                error!(
                    "{} problem(s) in {}; not starting",
                    rejected.violations.len(),
                    cli.policies.display()
                );
            }
            return ExitCode::FAILURE;
        }
    };
    if cli.check {
        for w in &built.warnings {
            warn!("{w}");
        }
        println!(
            "{}: valid ({} route entries)",
            cli.policies.display(),
            built.snapshot.route_entries
        );
        return ExitCode::SUCCESS;
    }
    if let Err(e) = access_log::init(&cli.access_log) {
        error!("cannot open access log {}: {e}", cli.access_log);
        return ExitCode::FAILURE;
    }
    publish::first(&built);

    let settings = Settings {
        header_timeout: Duration::from_secs(cli.header_timeout.max(1)),
        max_connections: cli.max_connections,
        allow_underscore_headers: cli.allow_underscore_headers,
        compression: cli.compression == "gzip",
        reject_http10: cli.http10 == "reject",
        ..Settings::default()
    };
    let state = GatewayState::new(built.snapshot, settings, cli.policies.clone());

    let mut server = if cli.pingora.conf.is_some() {
        match Server::new(Some(cli.pingora)) {
            Ok(s) => s,
            Err(e) => {
                error!("cannot load the server configuration: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        match default_server_conf() {
            Ok(conf) => Server::new_with_opt_and_conf(Some(cli.pingora), conf),
            Err(e) => {
                error!("cannot prepare the runtime directory: {e}");
                return ExitCode::FAILURE;
            }
        }
    };

    let phases = server.watch_execution_phase();
    let bootstrap = server.bootstrap_as_a_service();

    let watcher = server.add_service(background_service(
        "policy-watcher",
        PolicyWatcher::new(state.clone(), built.fingerprint, builder),
    ));
    server.add_service(background_service(
        "access-log",
        access_log::AccessLogWriter,
    ));
    server.add_service(background_service(
        "endpoint-health",
        meshgate::runtime::health::HealthService {
            state: state.clone(),
        },
    ));
    server.add_service(background_service(
        "drain-watcher",
        DrainWatcher {
            state: state.clone(),
            phases: tokio::sync::Mutex::new(phases),
        },
    ));

    let mut proxy = pingora::proxy::http_proxy(
        &server.configuration,
        HttpGateway {
            state: state.clone(),
        },
    );
    proxy.server_options = Some(meshgate::proxy::h2::server_options(Duration::from_secs(
        cli.idle_timeout.max(1),
    )));
    proxy.h2_options = Some(meshgate::proxy::h2::h2_options());
    let http = Arc::new(proxy);
    let listeners = server.add_service(ListenerManager::new(state.clone(), http, cli.bind));
    listeners.add_dependency(&bootstrap);
    listeners.add_dependency(&watcher);

    let mut admin = ListeningService::new(
        "meshgate-admin".to_string(),
        Admin {
            state: state.clone(),
        },
    );
    admin.add_tcp(&cli.admin.to_string());
    admin.threads = Some(1);
    let admin = server.add_service(admin);
    admin.add_dependency(&bootstrap);

    info!(
        "meshgate serving MeshGateway {:?} (admin on {})",
        state.snapshot.load().gateway.name,
        cli.admin
    );
    server.run_forever();
}
