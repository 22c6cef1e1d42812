//! Log set-up: tracing to stderr, as JSON lines (for log pipelines) or human-readable text.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// kube-client logs a whole response body at warn level when it cannot decode it; for a list
/// of Secrets that body holds their values. Keep kube-client to errors, whatever RUST_LOG says.
const SILENCE: &str = "kube_client=error";

/// Installs the global subscriber. `RUST_LOG` overrides the default level (`info`), but never
/// re-enables kube-client's response dumps.
///
/// Lines are formatted on the calling thread and written to stderr by a writer thread, so a
/// request never waits for a write to a slow log pipe; the queue blocks rather than drops when it
/// is full (a lost decision line is a hole in the record). Keep the returned guard until the
/// process ends: dropping it writes out every queued line.
pub fn init(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("applyguard-log")
        // Buffered: the writer thread flushes each time its queue is empty, so under load many
        // lines go out in one write.
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| EnvFilter::try_new(format!("{spec},{SILENCE}")).ok())
        .unwrap_or_else(|| EnvFilter::new(format!("info,{SILENCE}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        // Colour codes only for a terminal, never into log files or collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    // A second init (tests) keeps the first subscriber; that is not an error worth failing on.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    guard
}
