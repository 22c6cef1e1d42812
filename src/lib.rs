//! applyguard: a Kubernetes validating admission webhook that stops missing Secrets, placeholder
//! images, root containers and plaintext Kafka at `kubectl apply` time.
//!
//! The crate is split the way the design notes draw it: front doors (`server`, `review`), one
//! engine (`engine`, `workload`, `rules`, `policy`), and support (`certs`, `tls`, `logging`).

pub mod admission;
pub mod audit;
pub mod certs;
pub mod commands;
pub mod engine;
pub mod env;
pub mod exemptions;
pub mod inventory;
pub mod kafka;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod policy_reports;
pub mod references;
pub mod review;
pub mod rules;
pub mod scan;
pub mod server;
pub mod tls;
pub mod warnings;
pub mod workload;
