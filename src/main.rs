//! meshgate's command line and server assembly. Everything else lives in the library.

use clap::Parser;
use log::{error, info, warn};
use meshgate::admin::access_log;
use meshgate::admin::Admin;
use meshgate::compile::{CompileOptions, ListenerDefaults};
use meshgate::config::Settings;
use meshgate::proxy::http::HttpGateway;
use meshgate::runtime::drain::DrainWatcher;
use meshgate::runtime::etcd::cache as etcd_cache;
use meshgate::runtime::etcd::read::{read_all, Revision};
use meshgate::runtime::etcd::watch::EtcdWatcher;
use meshgate::runtime::etcd::{EtcdAccess, EtcdStatus, EtcdTarget};
use meshgate::runtime::listeners::ListenerManager;
use meshgate::runtime::publish;
use meshgate::runtime::reload::{Input, PolicyBuilder, PolicyWatcher};
use meshgate::runtime::shared_limits;
use meshgate::runtime::state::{GatewayState, PolicySource};
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

#[cfg(not(feature = "heap-profiling"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kuma's built-in gateway (MeshGateway, MeshHTTPRoute, MeshTCPRoute) on Pingora.
#[derive(Parser, Debug)]
#[command(name = "meshgate", version = meshgate::build_info::LONG_VERSION, about)]
struct Cli {
    /// Kuma resources: a directory (*.yaml / *.yml, recursively; hot-reloaded) or an etcd
    /// prefix, `etcd://HOST:PORT[,HOST:PORT...]/PREFIX` (watched).
    #[arg(long, value_name = "DIR|etcd://HOST:PORT/PREFIX")]
    policies: String,
    /// etcd source: keep the last applied revision in DIR and start from it when etcd is
    /// unreachable at start-up.
    #[arg(long, value_name = "DIR")]
    policy_cache: Option<PathBuf>,
    #[command(flatten)]
    etcd: EtcdArgs,
    /// Shared store for fleet-wide rate limits (MeshRateLimit labelled
    /// `meshgate.io/rate-limit-scope: fleet`): `redis://[:PASSWORD@]HOST:PORT[/DB]`.
    #[arg(long, value_name = "redis://HOST:PORT")]
    rate_limit_store: Option<String>,
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

/// How to reach etcd (an `etcd://` policy source and `meshgate publish`).
#[derive(clap::Args, Debug, Clone)]
struct EtcdArgs {
    /// CA certificate (PEM) that signs etcd's server certificates; turns TLS on.
    #[arg(long, value_name = "FILE")]
    etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's mutual TLS; turns TLS on.
    #[arg(long, value_name = "FILE", requires = "etcd_key")]
    etcd_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, value_name = "FILE", requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
    /// etcd user (with --etcd-password-file or MESHGATE_ETCD_PASSWORD).
    #[arg(long, value_name = "NAME")]
    etcd_user: Option<String>,
    /// File holding the etcd user's password (one line).
    #[arg(long, value_name = "FILE")]
    etcd_password_file: Option<PathBuf>,
}

impl EtcdArgs {
    fn access(&self) -> Result<EtcdAccess, String> {
        let password = match (
            &self.etcd_password_file,
            std::env::var("MESHGATE_ETCD_PASSWORD"),
        ) {
            (Some(file), _) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| format!("--etcd-password-file {}: {e}", file.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            ),
            (None, Ok(p)) if !p.is_empty() => Some(p),
            _ => None,
        };
        Ok(EtcdAccess {
            ca: self.etcd_ca.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
            user: self.etcd_user.clone(),
            password,
        })
    }
}

/// `meshgate publish`: write a checked policy directory to an etcd prefix in one
/// transaction (keys whose file is gone are deleted), printing the new revision.
#[derive(Parser, Debug)]
#[command(name = "meshgate publish")]
struct PublishCli {
    /// The directory to publish (checked first; nothing is written unless it is valid).
    #[arg(long, value_name = "DIR")]
    policies: PathBuf,
    /// Where: `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`.
    #[arg(long, value_name = "etcd://HOST:PORT/PREFIX")]
    to: String,
    /// The MeshGateway the check builds (default: the only one in DIR).
    #[arg(long, value_name = "NAME")]
    gateway: Option<String>,
    #[command(flatten)]
    etcd: EtcdArgs,
}

/// A current-thread runtime for the few async steps before the server runs (it is gone
/// before `-d` forks).
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|rt| rt.block_on(f))
        .map_err(|e| format!("cannot start a runtime: {e}"))
}

fn publish_main(args: Vec<std::ffi::OsString>) -> ExitCode {
    let cli = PublishCli::parse_from(args);
    meshgate::logging::init(meshgate::logging::LogFormat::Text);
    let fail = |e: String| {
        eprintln!("meshgate publish: {e}");
        ExitCode::FAILURE
    };
    let target = match EtcdTarget::parse(&cli.to) {
        Ok(Some(t)) => t,
        Ok(None) => return fail(format!("--to {}: must be etcd://HOST:PORT/PREFIX", cli.to)),
        Err(e) => return fail(e),
    };
    let access = match cli.etcd.access() {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let opts = CompileOptions {
        gateway: cli.gateway.clone(),
        policy_dir: cli.policies.clone(),
        listener_defaults: ListenerDefaults::default(),
        check_only: true,
    };
    if let Err(rejected) = meshgate::runtime::reload::build(&cli.policies, &opts, 1) {
        println!("{}", render(&rejected.violations));
        return fail(format!(
            "{} problem(s) in {}; nothing published",
            rejected.violations.len(),
            cli.policies.display()
        ));
    }
    let files = match meshgate::runtime::reload::pipeline::read_dir(&cli.policies) {
        Ok(f) => f,
        Err(v) => return fail(render(&[v])),
    };
    match block_on(meshgate::runtime::etcd::publish::publish(
        &files, &target, &access,
    )) {
        Ok(Ok(p)) => {
            println!(
                "{}: revision {} ({} written, {} deleted, {} unchanged)",
                target.url(),
                p.revision,
                p.written,
                p.deleted,
                p.unchanged
            );
            ExitCode::SUCCESS
        }
        Ok(Err(e)) | Err(e) => fail(e),
    }
}

/// The first read of an etcd source.
fn first_etcd_read(target: &EtcdTarget, access: &EtcdAccess) -> Result<Revision, String> {
    block_on(async {
        let mut client = access.connect(target).await?;
        read_all(&mut client, target).await
    })?
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
    // One TLS crypto provider for the whole process, before anything builds a TLS client:
    // the OTLP exporters' HTTPS client (reqwest without a provider of its own) needs the
    // process default, which Pingora installs only once it sets up its own TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Pingora adds up how long each stream's reads and writes wait, for figures meshgate does
    // not report: two clock reads per proxied request (the upstream response always waits).
    pingora::protocols::l4::stream::set_pending_time_tracking(false);
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "publish") {
        let mut rest = vec![args[0].clone()];
        rest.extend(args[2..].iter().cloned());
        return publish_main(rest);
    }
    let cli = Cli::parse();
    meshgate::logging::init(if cli.log_format == "json" {
        meshgate::logging::LogFormat::Json
    } else {
        meshgate::logging::LogFormat::Text
    });
    let etcd_target = match EtcdTarget::parse(&cli.policies) {
        Ok(t) => t,
        Err(e) => {
            error!("--policies {e}");
            return ExitCode::FAILURE;
        }
    };
    let access = match cli.etcd.access() {
        Ok(a) => a,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let compile = CompileOptions {
        gateway: cli.gateway.clone(),
        // Relative certificate `file` paths: below the directory, or the working directory
        // for an etcd source.
        policy_dir: match &etcd_target {
            None => PathBuf::from(&cli.policies),
            Some(_) => PathBuf::from("."),
        },
        listener_defaults: ListenerDefaults {
            request_headers: Duration::from_secs(cli.header_timeout.max(1)),
            idle: Duration::from_secs(cli.idle_timeout.max(1)),
            tcp_idle: Duration::from_secs(cli.tcp_idle_timeout.max(1)),
        },
        check_only: cli.check,
    };

    // The first content: the directory, or the etcd prefix (or, with etcd unreachable, the
    // revision `--policy-cache` kept).
    let etcd_status = etcd_target.clone().map(|t| Arc::new(EtcdStatus::new(t)));
    let mut first_revision = None;
    let first_input = match (&etcd_target, &etcd_status) {
        (Some(target), Some(status)) => match first_etcd_read(target, &access) {
            Ok(revision) => {
                status.set_revision(revision.revision);
                status.set_connected();
                let input = Input::Files(revision.files.clone());
                first_revision = Some(revision);
                input
            }
            Err(e) => match cli.policy_cache.as_deref().and_then(etcd_cache::latest) {
                Some((number, dir)) if !cli.check => {
                    warn!(
                        "{e}; starting from revision {number} cached in {} and retrying etcd",
                        dir.display()
                    );
                    status.set_revision(number);
                    status
                        .from_cache
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    status.set_disconnected(&e);
                    Input::Dir(dir)
                }
                _ => {
                    error!(
                        "{e}{}",
                        if cli.check || cli.policy_cache.is_none() {
                            ""
                        } else {
                            "; and no revision in --policy-cache to start from"
                        }
                    );
                    return ExitCode::FAILURE;
                }
            },
        },
        _ => Input::Dir(PathBuf::from(&cli.policies)),
    };
    let source_label = match &etcd_target {
        Some(t) => match &first_revision {
            Some(r) => format!("{} (revision {})", t.url(), r.revision),
            None => t.url(),
        },
        None => cli.policies.clone(),
    };

    // Every snapshot, the first included, is built on the builder thread (see PolicyBuilder).
    let builder = match PolicyBuilder::spawn(compile) {
        Ok(b) => b,
        Err(e) => {
            error!("cannot start the policy builder thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(first) = builder.build_blocking(first_input, 1) else {
        error!("the policy builder thread stopped");
        return ExitCode::FAILURE;
    };
    let built = match first {
        Ok(b) => b,
        Err(rejected) => {
            println!("{}", render(&rejected.violations));
            if !cli.check {
                error!(
                    "{} problem(s) in {source_label}; not starting",
                    rejected.violations.len(),
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
            "{source_label}: valid ({} route entries)",
            built.snapshot.route_entries
        );
        return ExitCode::SUCCESS;
    }
    if let (Some(dir), Some(revision)) = (&cli.policy_cache, &first_revision) {
        if let Err(e) = etcd_cache::store(dir, revision.revision, &revision.files) {
            warn!("policy cache {}: {e}", dir.display());
        }
    }
    drop(first_revision);
    if let Some(url) = &cli.rate_limit_store {
        match shared_limits::configure(url) {
            Ok(store) => info!("fleet rate limits count in {}", store.display),
            Err(e) => {
                error!("--rate-limit-store {e}");
                return ExitCode::FAILURE;
            }
        }
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
    };
    let source = match &etcd_status {
        Some(status) => PolicySource::Etcd(status.clone()),
        None => PolicySource::Dir(PathBuf::from(&cli.policies)),
    };
    let state = GatewayState::new(built.snapshot, settings, source);

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

    let watcher = match (&etcd_status, &etcd_target) {
        (Some(status), Some(_)) => server.add_service(background_service(
            "policy-watcher",
            EtcdWatcher {
                state: state.clone(),
                status: status.clone(),
                access,
                builder,
                initial_fingerprint: built.fingerprint,
                cache: cli.policy_cache.clone(),
            },
        )),
        _ => server.add_service(background_service(
            "policy-watcher",
            PolicyWatcher::new(
                state.clone(),
                PathBuf::from(&cli.policies),
                built.fingerprint,
                builder,
            ),
        )),
    };
    if shared_limits::store().is_some() {
        server.add_service(background_service(
            "rate-limit-store",
            shared_limits::StoreSupervisor,
        ));
    }
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
    server.run(pingora::server::RunArgs::default());
    // Lines still queued in the access-log writers reach their files before the exit.
    meshgate::runtime::log_sinks::flush_all(Duration::from_secs(2));
    std::process::exit(0)
}
