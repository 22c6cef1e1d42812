//! Bench-only driver for instruction counts (`make bench`, under `valgrind --tool=callgrind`):
//! loads a policy and an inventory from manifests, then answers one AdmissionReview file with
//! `admission::respond` a given number of times. Running it with 1 and with 1 + N repetitions
//! and dividing the difference by N gives the instructions of one request, free of the start-up
//! work; callgrind counts the same number whatever else the machine is doing, so two builds can
//! be compared exactly.
//!
//! ```sh
//! cargo build --release --example respond_instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/respond_instructions POLICY INVENTORY REVIEW.json 11
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use applyguard::admission;
use applyguard::engine::Engine;
use applyguard::inventory::manifests::ManifestInventory;
use applyguard::policy::Policy;

/// As in `applyguard serve`: the allocator is part of what a request costs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [policy, inventory, review, times] = args.as_slice() else {
        eprintln!("usage: respond_instructions POLICY INVENTORY REVIEW.json TIMES");
        return ExitCode::from(2);
    };
    let run = || -> Result<(), String> {
        let times: usize = times.parse().map_err(|e| format!("TIMES: {e}"))?;
        let policy = Policy::load(std::path::Path::new(policy)).map_err(|e| e.to_string())?;
        let inventory =
            ManifestInventory::load(&[inventory.into()], "default").map_err(|e| e.to_string())?;
        let engine =
            Engine::with_inventory(policy, Arc::new(inventory)).map_err(|e| e.to_string())?;
        let body = std::fs::read(review).map_err(|e| format!("{review}: {e}"))?;
        let mut bytes = 0;
        for _ in 0..times {
            let reply = admission::respond(&engine, &body).map_err(|e| e.to_string())?;
            bytes += std::hint::black_box(reply.body).len();
        }
        println!("{times} responses, {bytes} bytes");
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("respond_instructions: {e}");
            ExitCode::FAILURE
        }
    }
}
