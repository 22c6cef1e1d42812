//! The command line: parses arguments and starts the matching command.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// mimalloc: a request allocates and frees a few thousand small blocks (the object's JSON
/// strings and maps); mimalloc does that in a fraction of glibc's instructions and returns
/// memory to the OS without fragmentation growing under load. The bench baseline uses it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

use applyguard::audit::{self, AuditOptions};
use applyguard::certs::CertRequest;
use applyguard::commands::{
    self, DEFAULT_LISTEN, DEV_CERT_DIR, DEV_LISTEN, ServeOptions, TlsSource,
};
use applyguard::engine::Engine;
use applyguard::inventory::{EmptyInventory, Inventory};
use applyguard::logging::{self, LogFormat};
use applyguard::review;
use applyguard::scan::report::{Format, render};
use applyguard::scan::{self, ScanOptions};
use applyguard::server::Limits;

#[derive(Parser)]
#[command(
    name = "applyguard",
    version,
    about = "Kubernetes admission webhook: missing Secrets, placeholder images, root containers, plaintext Kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the admission webhook over HTTPS.
    Serve {
        /// Policy file (YAML).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on [default: 0.0.0.0:8443, or 127.0.0.1:8443 with --dev].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Serving certificate chain (PEM, leaf first).
        #[arg(long, requires = "tls_key", conflicts_with = "dev")]
        tls_cert: Option<PathBuf>,
        /// Private key of the serving certificate (PEM).
        #[arg(long, requires = "tls_cert", conflicts_with = "dev")]
        tls_key: Option<PathBuf>,
        /// Create or reuse a dev CA and certificate in certs-dev/ and listen on 127.0.0.1:8443.
        #[arg(long)]
        dev: bool,
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Largest AdmissionReview body accepted, in bytes.
        #[arg(long, default_value_t = 8 * 1024 * 1024)]
        max_body_bytes: usize,
        /// Seconds in-flight requests get to finish after SIGTERM.
        #[arg(long, default_value_t = 20)]
        shutdown_timeout: u64,
        /// Seconds to report not-ready before refusing new connections after SIGTERM.
        #[arg(long, default_value_t = 0)]
        shutdown_delay: u64,
        /// Take cluster state from these manifests (files or directories) instead of the API
        /// server (repeatable).
        #[arg(long)]
        inventory: Vec<PathBuf>,
        /// Plain-HTTP address for /metrics, /healthz and /readyz [default: 0.0.0.0:9090, or
        /// 127.0.0.1:9090 with --dev]; "off" disables it.
        #[arg(long)]
        metrics_listen: Option<String>,
        /// Seconds between checks of the certificate and policy files for changes (SIGHUP
        /// reloads the policy at once).
        #[arg(long, default_value_t = 10)]
        reload_interval: u64,
        /// Seconds the cluster watches may keep failing before the cache counts as stale and
        /// failureMode decides secret-ref.
        #[arg(long, default_value_t = 300)]
        stale_after: u64,
        /// Seconds between background audits of the objects already in the cluster (gauges
        /// applyguard_existing_violations, a log line per finding found or resolved); 0, the
        /// default, turns it off. Needs the cluster inventory.
        #[arg(long, default_value_t = 0)]
        audit_interval: u64,
        /// With --audit-interval: also write a PolicyReport (wgpolicyk8s.io/v1alpha2) per
        /// namespace with findings, when that API is served.
        #[arg(long, requires = "audit_interval")]
        policy_reports: bool,
    },
    /// Answer one AdmissionReview (file or - for stdin) offline, exactly as serve would.
    Review {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Cluster state as manifests (files or directories; repeatable). Without it, no
        /// Secret is known to exist.
        #[arg(long)]
        inventory: Vec<PathBuf>,
        /// AdmissionReview JSON; - or nothing reads standard input.
        file: Option<PathBuf>,
    },
    /// Evaluate manifests (files, directories, or - for stdin) with the same rules, offline.
    Scan {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Objects that exist elsewhere (files or directories; repeatable).
        #[arg(long)]
        inventory: Vec<PathBuf>,
        /// Namespace for objects that name none.
        #[arg(long, default_value = "default")]
        namespace: String,
        /// Build each kustomize project found in a directory (kubectl kustomize, or kustomize)
        /// and scan what it deploys, with findings at the source files' lines.
        #[arg(long)]
        kustomize: bool,
        /// Files, directories (*.yaml, *.yml, *.json, recursively) or - for standard input.
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Evaluate what is already in the cluster (kubeconfig, or in-cluster), with the cluster as
    /// inventory; the same report as scan.
    Audit {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Only this namespace (default: every namespace).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// Seconds to wait for the cluster inventory's first lists.
        #[arg(long, default_value_t = 120)]
        ready_timeout: u64,
    },
    /// Create a CA and a serving certificate signed by it.
    Certs {
        #[arg(long)]
        out: PathBuf,
        /// DNS names for the serving certificate (repeatable).
        #[arg(long)]
        dns: Vec<String>,
        /// IP addresses for the serving certificate (repeatable).
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// Replace an existing CA instead of reusing it.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            tls_cert,
            tls_key,
            dev,
            log_format,
            max_body_bytes,
            shutdown_timeout,
            shutdown_delay,
            inventory,
            metrics_listen,
            reload_interval,
            stale_after,
            audit_interval,
            policy_reports,
        } => {
            // Held to the end of serve: dropping it flushes the queued log lines.
            let _log_lines = logging::init(log_format);
            let tls = match (tls_cert, tls_key, dev) {
                (Some(cert), Some(key), false) => TlsSource::Files { cert, key },
                (None, None, true) => TlsSource::Dev {
                    dir: PathBuf::from(DEV_CERT_DIR),
                },
                _ => {
                    eprintln!("applyguard serve: pass --tls-cert and --tls-key, or --dev");
                    return ExitCode::from(2);
                }
            };
            let metrics_listen = match metrics_listen.as_deref() {
                Some("off") => None,
                Some(addr) => match addr.parse::<SocketAddr>() {
                    Ok(addr) => Some(addr),
                    Err(err) => {
                        eprintln!("applyguard serve: --metrics-listen {addr:?}: {err}");
                        return ExitCode::from(2);
                    }
                },
                None => Some(SocketAddr::from((
                    if dev { [127, 0, 0, 1] } else { [0, 0, 0, 0] },
                    9090,
                ))),
            };
            let listen = listen.unwrap_or(if dev { DEV_LISTEN } else { DEFAULT_LISTEN });
            let options = ServeOptions {
                config,
                listen,
                tls,
                limits: Limits {
                    max_body_bytes,
                    shutdown_timeout: Duration::from_secs(shutdown_timeout),
                    shutdown_delay: Duration::from_secs(shutdown_delay),
                    ..Limits::default()
                },
                inventory,
                metrics_listen,
                reload_interval: Duration::from_secs(reload_interval.max(1)),
                stale_after: Duration::from_secs(stale_after.max(1)),
                audit_interval: (audit_interval > 0).then(|| Duration::from_secs(audit_interval)),
                policy_reports,
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(err) => {
                    eprintln!("applyguard serve: cannot start the runtime: {err}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(commands::serve(options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!("{err:#}");
                    eprintln!("applyguard serve: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Review {
            config,
            inventory,
            file,
        } => {
            let result = commands::load_policy(config.as_deref())
                .and_then(|policy| {
                    let inventory = if inventory.is_empty() {
                        Arc::new(EmptyInventory) as Arc<dyn Inventory>
                    } else {
                        commands::manifest_inventory(&inventory)?
                    };
                    Ok(Engine::with_inventory(policy, inventory)?)
                })
                .and_then(|engine| {
                    let (name, body) =
                        review::read_input(file.as_deref(), Limits::default().max_body_bytes)?;
                    Ok(review::review(&engine, &name, &body)?)
                });
            match result {
                Ok(body) => {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    if out.write_all(&body).and_then(|()| out.flush()).is_err() {
                        return ExitCode::from(2);
                    }
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("applyguard review: {err:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Scan {
            config,
            format,
            inventory,
            namespace,
            kustomize,
            paths,
        } => {
            let options = ScanOptions {
                paths,
                inventory,
                namespace,
                kustomize,
            };
            let result = commands::load_policy(config.as_deref())
                .and_then(|policy| Ok(scan::scan(&options, policy, &mut std::io::stdin().lock())?));
            match result {
                Ok(report) => {
                    print_report(&report, format);
                    ExitCode::from(report.exit_code())
                }
                Err(err) => {
                    eprintln!("applyguard scan: {err:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Audit {
            config,
            format,
            namespace,
            ready_timeout,
        } => {
            let options = AuditOptions {
                namespace,
                ready_timeout: Duration::from_secs(ready_timeout),
            };
            let result = commands::load_policy(config.as_deref()).and_then(|policy| {
                tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .map_err(anyhow::Error::from)?
                    .block_on(audit::audit(&options, policy))
            });
            match result {
                Ok(report) => {
                    print_report(&report, format);
                    ExitCode::from(report.exit_code())
                }
                Err(err) => {
                    eprintln!("applyguard audit: {err:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Certs {
            out,
            dns,
            ip,
            force,
        } => match commands::certs(&CertRequest::with_defaults(out, dns, ip, force)) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("applyguard certs: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn print_report(report: &scan::Report, format: Format) {
    // A closed pipe (`| head`) is not an error worth a panic.
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    let _ = out
        .write_all(render(report, format).as_bytes())
        .and_then(|()| out.flush());
}
