//! Hosted (locally published) packages. Placeholder until implemented.

use std::path::Path;

/// Errors of the hosted store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostedError {
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
}

/// Durable store of hosted packuments and tarballs.
#[derive(Debug)]
pub struct HostedStore {}

impl HostedStore {
    pub fn open(storage: &Path) -> Result<Self, HostedError> {
        std::fs::create_dir_all(storage)?;
        Ok(Self {})
    }
}
