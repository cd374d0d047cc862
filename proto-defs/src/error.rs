//! Wire error codes (SPEC §3). Every error carries a code, a message for people and a
//! `retryable` flag that tells a client whether the same call may succeed later.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// The closed set of error codes a node answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The request is malformed or violates a limit; retrying it unchanged fails again.
    InvalidArgument,
    /// The idempotency key or object key is taken by other content.
    AlreadyExists,
    /// The named object or consumer does not exist.
    NotFound,
    /// The caller presented no usable identity.
    Unauthenticated,
    /// The caller is known but not allowed to do this.
    PermissionDenied,
    /// Backpressure: a buffer is above its watermark. Retry later.
    ResourceExhausted,
    /// Draining, or a storage fault. Retry later.
    Unavailable,
    /// A bug or an unexpected condition on the node.
    Internal,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 8] = [
        Self::InvalidArgument,
        Self::AlreadyExists,
        Self::NotFound,
        Self::Unauthenticated,
        Self::PermissionDenied,
        Self::ResourceExhausted,
        Self::Unavailable,
        Self::Internal,
    ];

    /// The stable name printed by the CLI and logged (`INVALID_ARGUMENT`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::NotFound => "NOT_FOUND",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Self::Unavailable => "UNAVAILABLE",
            Self::Internal => "INTERNAL",
        }
    }

    /// Whether a call that failed with this code may succeed when retried unchanged.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::ResourceExhausted | Self::Unavailable)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as it travels on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RpcError {
    pub code: ErrorCode,
    pub message: String,
    pub retryable: bool,
}

impl RpcError {
    /// An error whose `retryable` flag follows its code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retryable: code.is_retryable(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// A request the receiver did not read because its frame is over the receiver's
    /// `limits.max_frame_bytes`: nothing of it was stored, and the same messages fit when sent
    /// in smaller calls.
    pub fn frame_too_large(detail: impl std::fmt::Display) -> Self {
        Self::invalid(format!("{FRAME_TOO_LARGE}{detail}"))
    }

    /// Whether this is [`RpcError::frame_too_large`].
    pub fn is_frame_too_large(&self) -> bool {
        self.code == ErrorCode::InvalidArgument && self.message.starts_with(FRAME_TOO_LARGE)
    }
}

/// How [`RpcError::frame_too_large`] begins.
const FRAME_TOO_LARGE: &str = "request over the node's limits.max_frame_bytes: ";
