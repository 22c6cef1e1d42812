//! `applyguard review`: one AdmissionReview from a file or stdin, answered offline exactly as
//! `serve` would answer it.

use std::io::Read;
use std::path::Path;

use crate::admission::{self, BadReview};
use crate::engine::Engine;

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("cannot read {input}: {source}")]
    Read {
        input: String,
        source: std::io::Error,
    },
    #[error("{input} is larger than the {limit}-byte limit")]
    TooLarge { input: String, limit: usize },
    #[error("{input}: {source}")]
    Bad { input: String, source: BadReview },
}

/// Reads the review from `path` (`-` or `None` is stdin), at most `limit` bytes.
pub fn read_input(path: Option<&Path>, limit: usize) -> Result<(String, Vec<u8>), ReviewError> {
    let (name, mut reader): (String, Box<dyn Read>) = match path {
        None => ("standard input".to_string(), Box::new(std::io::stdin())),
        Some(p) if p.as_os_str() == "-" => {
            ("standard input".to_string(), Box::new(std::io::stdin()))
        }
        Some(p) => {
            let file = std::fs::File::open(p).map_err(|source| ReviewError::Read {
                input: p.display().to_string(),
                source,
            })?;
            (p.display().to_string(), Box::new(file))
        }
    };
    let mut body = Vec::new();
    // Read one byte past the limit to tell "exactly at the limit" from "over it".
    (&mut reader)
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|source| ReviewError::Read {
            input: name.clone(),
            source,
        })?;
    if body.len() > limit {
        return Err(ReviewError::TooLarge { input: name, limit });
    }
    Ok((name, body))
}

/// Evaluates the review and returns the response AdmissionReview bytes.
pub fn review(engine: &Engine, input: &str, body: &[u8]) -> Result<Vec<u8>, ReviewError> {
    admission::respond(engine, body)
        .map(|reply| reply.body)
        .map_err(|source| ReviewError::Bad {
            input: input.to_string(),
            source,
        })
}
