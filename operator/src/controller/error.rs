//! What can stop a reconcile. Each variant maps to a condition reason and a
//! metric label; messages name the Secret, key, ConfigMap or field, never a
//! value read from a Secret.

use crate::engine;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "Secret {name:?} was not found in namespace {namespace:?}; create it, or fix spec.database"
    )]
    SecretNotFound { namespace: String, name: String },

    #[error("Secret {name:?} has no key {key:?}; add the key, or fix spec.database")]
    SecretKeyNotFound { name: String, key: String },

    #[error("key {key:?} of Secret {name:?} is not valid UTF-8; store the value as text")]
    SecretNotText { name: String, key: String },

    #[error(
        "ConfigMap {name:?} was not found in namespace {namespace:?}; create it, or fix spec.source.configMapRefs"
    )]
    ConfigMapNotFound { namespace: String, name: String },

    #[error("file {file:?} appears in both ConfigMap {first:?} and ConfigMap {second:?}; keep one")]
    DuplicateFile {
        file: String,
        first: String,
        second: String,
    },

    #[error("{field}: {message}")]
    InvalidSpec {
        field: &'static str,
        message: String,
    },

    /// The migration source or the database, as the engine reports it.
    #[error(transparent)]
    Engine(#[from] engine::Error),

    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A CamelCase reason for conditions, Events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::SecretNotFound { .. } => "SecretNotFound",
            Error::SecretKeyNotFound { .. } | Error::SecretNotText { .. } => "SecretKeyNotFound",
            Error::ConfigMapNotFound { .. } | Error::DuplicateFile { .. } => "InvalidSource",
            Error::InvalidSpec { .. } => "InvalidSpec",
            Error::Engine(e) => e.reason(),
            Error::Kube(_) => "KubernetesApiError",
        }
    }

    /// True when only a person can fix it: retrying as things are cannot help.
    /// The resource then reports Stalled.
    pub fn needs_a_person(&self) -> bool {
        match self {
            Error::Engine(e) => e.needs_a_person(),
            Error::Kube(_) => false,
            _ => true,
        }
    }
}
