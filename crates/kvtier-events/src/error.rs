//! Errors of the events crate.

use crate::wire::DecodeError;

/// What can go wrong publishing or subscribing.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The `[events]` configuration cannot work.
    #[error("invalid events config: {0}")]
    Config(String),
    /// An endpoint is malformed or unsupported.
    #[error("endpoint `{endpoint}`: {reason}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A socket could not bind, connect, send or receive.
    #[error("ZMQ {action} `{endpoint}`: {reason}")]
    Socket {
        /// What was attempted (`bind`, `connect`, `recv`, ...).
        action: &'static str,
        /// On which endpoint.
        endpoint: String,
        /// The transport's error.
        reason: String,
    },
    /// A thread or async runtime could not start.
    #[error("cannot start the events {what}: {source}")]
    Start {
        /// Which part.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A bounded wait ran out.
    #[error("timed out after {millis} ms waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long.
        millis: u128,
    },
    /// A message did not have the expected frames.
    #[error("malformed message: {0}")]
    Protocol(String),
    /// A payload did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The publisher has stopped.
    #[error("the events publisher has stopped")]
    Stopped,
}
