//! ZMQ endpoints: vLLM's bind-or-connect rule and the address forms the
//! pure-Rust `zeromq` crate accepts.

use crate::error::EventsError;

/// An endpoint and whether it is bound or connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The address as handed to the socket (`tcp://*:N` becomes `tcp://0.0.0.0:N`).
    pub addr: String,
    /// Bind (`true`) or connect.
    pub bind: bool,
}

/// vLLM's rule: an endpoint binds if it contains `*`, `::`, or starts with
/// `ipc://` or `inproc://`; any other endpoint connects.
pub fn binds_by_rule(endpoint: &str) -> bool {
    endpoint.contains('*')
        || endpoint.contains("::")
        || endpoint.starts_with("ipc://")
        || endpoint.starts_with("inproc://")
}

impl Endpoint {
    /// Resolve `endpoint`, binding by [`binds_by_rule`] unless `bind` says
    /// otherwise. `inproc://` is refused: the pure-Rust transport has no
    /// in-process sockets (use `ipc://` or loopback TCP).
    pub fn resolve(endpoint: &str, bind: Option<bool>) -> Result<Endpoint, EventsError> {
        let bad = |reason: &str| EventsError::Endpoint {
            endpoint: endpoint.to_string(),
            reason: reason.to_string(),
        };
        if endpoint.starts_with("inproc://") {
            return Err(bad(
                "inproc:// is not supported by the pure-Rust ZMQ transport; use ipc:// or tcp://127.0.0.1:PORT",
            ));
        }
        let addr = if let Some(rest) = endpoint.strip_prefix("tcp://*:") {
            format!("tcp://0.0.0.0:{rest}")
        } else if endpoint.starts_with("tcp://") || endpoint.starts_with("ipc://") {
            endpoint.to_string()
        } else {
            return Err(bad("expected tcp://HOST:PORT or ipc://PATH"));
        };
        Ok(Endpoint {
            addr,
            bind: bind.unwrap_or_else(|| binds_by_rule(endpoint)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vllm_rule() {
        for (e, b) in [
            ("tcp://*:5557", true),
            ("tcp://[::]:5557", true),
            ("ipc:///tmp/x", true),
            ("inproc://x", true),
            ("tcp://127.0.0.1:5557", false),
            ("tcp://router:5557", false),
        ] {
            assert_eq!(binds_by_rule(e), b, "{e}");
        }
        let r = Endpoint::resolve("tcp://*:5557", None).unwrap();
        assert_eq!((r.addr.as_str(), r.bind), ("tcp://0.0.0.0:5557", true));
        assert!(
            Endpoint::resolve("tcp://127.0.0.1:0", Some(true))
                .unwrap()
                .bind
        );
        assert!(Endpoint::resolve("inproc://x", None).is_err());
        assert!(Endpoint::resolve("udp://x:1", None).is_err());
    }
}
