//! kubectl as the client: each run keeps its exit code and exactly what it printed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

static KUBECTL: OnceLock<PathBuf> = OnceLock::new();

/// `$KUBECTL`, else `$KUBEBUILDER_ASSETS/kubectl`, else `kubectl` on PATH.
pub fn binary() -> &'static Path {
    KUBECTL.get_or_init(|| {
        if let Some(path) = std::env::var_os("KUBECTL") {
            return PathBuf::from(path);
        }
        if let Some(dir) = std::env::var_os("KUBEBUILDER_ASSETS") {
            let path = Path::new(&dir).join("kubectl");
            if path.exists() {
                return path;
            }
        }
        PathBuf::from("kubectl")
    })
}

pub fn available() -> bool {
    Command::new(binary())
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[derive(Debug, Clone, Default)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub command: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    /// stdout then stderr, as a terminal shows them.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
    pub fn warnings(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("Warning: "))
            .collect()
    }
    /// What to show when a check fails.
    pub fn show(&self) -> String {
        format!(
            "$ {}\n(exit {})\n{}",
            self.command,
            self.code.map_or("signal".to_string(), |c| c.to_string()),
            self.all()
        )
    }
}

pub fn run(kubeconfig: &Path, args: &[&str]) -> Out {
    run_with_stdin(kubeconfig, args, None)
}

pub fn run_with_stdin(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Out {
    let command = format!("kubectl {}", args.join(" "));
    let child = Command::new(binary())
        .env("KUBECONFIG", kubeconfig)
        // A caller's context or cache must not leak in; warnings are what kubectl prints on a tty too.
        .env_remove("KUBECTL_EXTERNAL_DIFF")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            return Out {
                code: None,
                stderr: format!("cannot run {}: {e}", binary().display()),
                command,
                ..Out::default()
            };
        }
    };
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(text.as_bytes());
    }
    match child.wait_with_output() {
        Ok(out) => Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            command,
        },
        Err(e) => Out {
            code: None,
            stderr: e.to_string(),
            command,
            ..Out::default()
        },
    }
}
