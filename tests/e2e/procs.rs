//! The suite's child processes (etcd, kube-apiserver, serve): started here, always stopped, also
//! on Ctrl-C or SIGTERM, so no process or port outlives the run.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Entry {
    id: u64,
    child: Child,
}

static CHILDREN: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(1);
/// Removed on a signal too (TempDir's Drop does not run when the process exits from a handler).
static WORK_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// A started process; dropping the handle kills it.
pub struct Proc {
    id: u64,
    pub name: String,
    pub pid: u32,
    pub log: PathBuf,
}

pub fn set_work_dir(dir: &Path) {
    *lock(&WORK_DIR) = Some(dir.to_path_buf());
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts `command` with stdout and stderr appended to `log`.
pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Proc, String> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    let pid = child.id();
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    lock(&CHILDREN).push(Entry { id, child });
    Ok(Proc {
        id,
        name: name.to_string(),
        pid,
        log: log.to_path_buf(),
    })
}

impl Proc {
    /// Whether the process has exited (and with what), without waiting.
    pub fn exited(&self) -> Option<String> {
        let mut children = lock(&CHILDREN);
        let entry = children.iter_mut().find(|e| e.id == self.id)?;
        match entry.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; waits for the exit.
    pub fn stop(self, grace: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && self.exited().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(self);
    }

    /// The last `lines` lines of the log, for a failure report.
    pub fn tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let mut children = lock(&CHILDREN);
        if let Some(pos) = children.iter().position(|e| e.id == self.id) {
            let mut entry = children.swap_remove(pos);
            let _ = entry.child.kill();
            let _ = entry.child.wait();
        }
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Kills every child still running.
pub fn kill_all_children() {
    for mut entry in lock(&CHILDREN).drain(..) {
        let _ = entry.child.kill();
        let _ = entry.child.wait();
    }
}

/// On SIGINT or SIGTERM: stop everything, then exit 130 / 143 like a shell would.
pub fn clean_up_on_signals() {
    std::thread::spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            let code = tokio::select! {
                _ = int.recv() => 130,
                _ = term.recv() => 143,
            };
            eprintln!("e2e: interrupted: stopping etcd, kube-apiserver and serve");
            kill_all_children();
            if let Some(dir) = lock(&WORK_DIR).take() {
                let _ = std::fs::remove_dir_all(dir);
            }
            std::process::exit(code);
        });
    });
}
