//! The end-to-end suite: applyguard against a real etcd and kube-apiserver on loopback, with
//! kubectl as the client, asserting what a person sees (exit codes, kubectl's own text).
//!
//! Part of `make test` (`cargo test` runs it: harness = false in Cargo.toml). Binaries come from
//! `KUBEBUILDER_ASSETS` or scripts/envtest-assets.sh. Without them it skips loudly, except under
//! `CI=true`, where that is a failure. `cargo test --test e2e -- NAME` runs the scenarios whose
//! name contains NAME; `KEEP_E2E=1` keeps the work directory (logs, kubeconfigs) for a look.

mod cluster;
mod kubectl;
mod procs;
mod scenarios;
mod webhook;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::cluster::{Assets, ControlPlane};

/// Counts checks and prints each as it runs, like the kind suite.
pub struct Suite {
    passed: usize,
    failed: Vec<String>,
}

impl Suite {
    pub fn failures(&self) -> usize {
        self.failed.len()
    }

    pub fn check(&mut self, what: &str, ok: bool, detail: impl FnOnce() -> String) -> bool {
        if ok {
            self.passed += 1;
            println!("ok   {what}");
        } else {
            println!("FAIL {what}");
            for line in detail().lines() {
                println!("     | {line}");
            }
            self.failed.push(what.to_string());
        }
        ok
    }

    /// `check` of a judged kubectl run: the error is what to show.
    pub fn expect(&mut self, what: &str, result: Result<(), String>) -> bool {
        match result {
            Ok(()) => self.check(what, true, String::new),
            Err(detail) => self.check(what, false, || detail),
        }
    }

    /// Retries `attempt` every 100 ms for up to `within`: for what serve learns through its
    /// watches. Reports how long it took.
    pub fn eventually(
        &mut self,
        what: &str,
        within: Duration,
        mut attempt: impl FnMut() -> Result<(), String>,
    ) -> bool {
        let start = Instant::now();
        loop {
            match attempt() {
                Ok(()) => {
                    let took = start.elapsed();
                    return self.check(
                        &format!("{what} (after {} ms)", took.as_millis()),
                        true,
                        String::new,
                    );
                }
                Err(detail) if start.elapsed() >= within => {
                    return self.check(&format!("{what} (within {within:?})"), false, || detail);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn skip_or_fail(reason: &str) -> ExitCode {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        eprintln!(
            "e2e: FAILED: {reason} (CI=true: a missing API server is a failure, never a skip)"
        );
        ExitCode::FAILURE
    } else {
        eprintln!("\n*** e2e: SKIPPED: {reason} ***\n");
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let mut filter = None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            // cargo-nextest and `cargo test -- --list` ask what is here.
            "--list" => {
                println!("e2e: test");
                return ExitCode::SUCCESS;
            }
            a if a.starts_with('-') => {}
            a => filter = Some(a.to_string()),
        }
    }
    // `cargo test some_unit_test` passes its filter to every test binary: run only when it
    // names this suite or one of its scenarios.
    if let Some(f) = &filter
        && !"e2e".contains(f.as_str())
        && !scenarios::NAMES.iter().any(|n| n.contains(f.as_str()))
    {
        return ExitCode::SUCCESS;
    }
    let filter = filter.filter(|f| !"e2e".contains(f.as_str()));

    if !kubectl::available() {
        return skip_or_fail(&format!(
            "no kubectl ({} did not run); put kubectl on PATH or set KUBECTL",
            kubectl::binary().display()
        ));
    }
    let assets = match cluster::assets(&root()) {
        Assets::Found(dir) => dir,
        Assets::Unavailable(reason) => return skip_or_fail(&reason),
        Assets::Broken(reason) => {
            eprintln!("e2e: FAILED: {reason}");
            return ExitCode::FAILURE;
        }
    };
    procs::clean_up_on_signals();
    let work = match tempfile::Builder::new().prefix("applyguard-e2e.").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("e2e: FAILED: no temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    procs::set_work_dir(work.path());
    let started = Instant::now();
    let code = run(work.path(), &assets, filter.as_deref());
    procs::kill_all_children();
    println!("e2e: {:.0} s in all", started.elapsed().as_secs_f64());
    if std::env::var("KEEP_E2E").is_ok_and(|v| v == "1") {
        let kept = work.keep();
        println!("e2e: KEEP_E2E=1: kept {}", kept.display());
    }
    code
}

fn run(work: &Path, assets: &Path, filter: Option<&str>) -> ExitCode {
    let mut suite = Suite {
        passed: 0,
        failed: Vec::new(),
    };
    let plane = match ControlPlane::start(work, assets) {
        Ok(plane) => plane,
        Err(e) => {
            eprintln!("e2e: FAILED: the control plane did not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "e2e: etcd and kube-apiserver {} on 127.0.0.1:{}, kubectl {}",
        plane.version,
        plane.port,
        kubectl::binary().display()
    );
    let outcome = scenarios::run(&mut suite, plane, work, filter);
    if let Err(e) = outcome {
        suite.check("the suite ran to the end", false, || e);
    }
    println!("\n{} passed, {} failed", suite.passed, suite.failed.len());
    for what in &suite.failed {
        println!("  failed: {what}");
    }
    if suite.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
