//! How a request ended, in Envoy's terms: the response flag Kuma's access log prints, and the
//! responses meshgate writes itself.

use pingora::protocols::http::v1::server::{REQUEST_HEAD_TIMEOUT, REQUEST_HEAD_TOO_LARGE};
use pingora::{Error, ErrorSource, ErrorType};

/// Envoy's response flags (`%RESPONSE_FLAGS%`), the ones a Kuma gateway request can end with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResponseFlag {
    /// Nothing went wrong (printed `-`).
    #[default]
    None,
    /// `NR`: no route for the request.
    NoRoute,
    /// `NC`: the route names a backend that does not resolve.
    NoClusterFound,
    /// `UH`: the backend has no healthy endpoint.
    NoHealthyUpstream,
    /// `UF`: connecting to the backend failed.
    UpstreamConnectionFailure,
    /// `UT`: the backend did not answer in time.
    UpstreamRequestTimeout,
    /// `UC`: the backend closed or reset the connection.
    UpstreamConnectionTermination,
    /// `DC`: the client went away.
    DownstreamConnectionTermination,
    /// `DPE`: the request broke the protocol or a limit and was refused.
    DownstreamProtocolError,
    /// `RL`: a local rate limit refused the request.
    RateLimited,
    /// `FI`: fault injection aborted the request.
    FaultInjected,
    /// `SI`: no bytes on the stream for the stream idle timeout.
    StreamIdleTimeout,
    /// `URX`: the request was retried as many times as allowed and still failed.
    RetryLimitExceeded,
    /// `UMSDR`: the upstream stream reached its maximum duration.
    MaxStreamDurationReached,
    /// `UO`: a circuit breaker's connection limit refused the request.
    UpstreamOverflow,
}

impl ResponseFlag {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseFlag::None => "-",
            ResponseFlag::NoRoute => "NR",
            ResponseFlag::NoClusterFound => "NC",
            ResponseFlag::NoHealthyUpstream => "UH",
            ResponseFlag::UpstreamConnectionFailure => "UF",
            ResponseFlag::UpstreamRequestTimeout => "UT",
            ResponseFlag::UpstreamConnectionTermination => "UC",
            ResponseFlag::DownstreamConnectionTermination => "DC",
            ResponseFlag::DownstreamProtocolError => "DPE",
            ResponseFlag::RateLimited => "RL",
            ResponseFlag::FaultInjected => "FI",
            ResponseFlag::StreamIdleTimeout => "SI",
            ResponseFlag::RetryLimitExceeded => "URX",
            ResponseFlag::MaxStreamDurationReached => "UMSDR",
            ResponseFlag::UpstreamOverflow => "UO",
        }
    }
}

/// A response meshgate writes itself instead of proxying: status, body and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Local {
    pub status: u16,
    pub body: &'static str,
    pub flag: ResponseFlag,
}

impl Local {
    pub const NO_ROUTE: Local = Local {
        status: 404,
        body: "",
        flag: ResponseFlag::NoRoute,
    };
    pub const BAD_PATH: Local = Local {
        status: 400,
        body: "bad request path\n",
        flag: ResponseFlag::DownstreamProtocolError,
    };
    /// Kuma answers 500 for a route whose backend cannot be resolved (§6.2).
    pub const UNRESOLVED_BACKEND: Local = Local {
        status: 500,
        body: "",
        flag: ResponseFlag::NoClusterFound,
    };
    /// Envoy's answer when a cluster has no endpoint to send to (§6.4).
    pub const NO_HEALTHY_UPSTREAM: Local = Local {
        status: 503,
        body: "no healthy upstream",
        flag: ResponseFlag::NoHealthyUpstream,
    };
    /// Envoy's answer when a circuit breaker's limit is reached (spec §7.1); it carries
    /// `x-envoy-overloaded: true`.
    pub const OVERFLOW: Local = Local {
        status: 503,
        body: OVERFLOW_BODY,
        flag: ResponseFlag::UpstreamOverflow,
    };
}

/// Envoy's body for a request a circuit breaker refused.
pub const OVERFLOW_BODY: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: overflow";

/// The error `upstream_peer` returns when no connection slot is free and the pending queue
/// is full.
pub const OVERFLOW: ErrorType = ErrorType::Custom("upstream overflow");

/// The header Envoy adds to a circuit breaker's 503.
pub fn overloaded_header() -> &'static [(http::HeaderName, http::HeaderValue)] {
    static HEADER: std::sync::LazyLock<[(http::HeaderName, http::HeaderValue); 1]> =
        std::sync::LazyLock::new(|| {
            [(
                http::HeaderName::from_static("x-envoy-overloaded"),
                http::HeaderValue::from_static("true"),
            )]
        });
    &*HEADER
}

/// The listener's MeshTimeout `http.requestTimeout` passed before the whole request was
/// received: 408 `request timeout`.
pub const REQUEST_TIMEOUT: ErrorType = ErrorType::Custom("request timeout");

/// Envoy's body for a 503 after connect failures or an upstream reset.
pub const UPSTREAM_RESET_BODY: &str = "upstream connect error or disconnect/reset before headers";

/// What a failed proxy attempt means for the client: the status Envoy answers with (`None`:
/// nothing can be sent, the client is gone) and the flag.
pub fn failure(e: &Error) -> (Option<u16>, ResponseFlag) {
    match e.etype() {
        ErrorType::HTTPStatus(code) => (Some(*code), ResponseFlag::None),
        ErrorType::ConnectTimedout
        | ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::ConnectProxyFailure
        | ErrorType::TLSHandshakeFailure
        | ErrorType::TLSHandshakeTimedout => (Some(503), ResponseFlag::UpstreamConnectionFailure),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if e.esource() == &ErrorSource::Upstream =>
        {
            (Some(504), ResponseFlag::UpstreamRequestTimeout)
        }
        // The listener's stream idle timeout passed while the request body was coming in.
        ErrorType::ReadTimedout if e.esource() == &ErrorSource::Downstream => {
            (Some(408), ResponseFlag::StreamIdleTimeout)
        }
        etype if *etype == REQUEST_TIMEOUT => (Some(408), ResponseFlag::DownstreamProtocolError),
        etype if *etype == OVERFLOW => (Some(503), ResponseFlag::UpstreamOverflow),
        _ => match e.esource() {
            ErrorSource::Upstream => (Some(503), ResponseFlag::UpstreamConnectionTermination),
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError
                | ErrorType::ReadError
                | ErrorType::ConnectionClosed
                | ErrorType::WriteTimedout => (None, ResponseFlag::DownstreamConnectionTermination),
                _ => (Some(400), ResponseFlag::DownstreamProtocolError),
            },
            ErrorSource::Internal | ErrorSource::Unset => (Some(500), ResponseFlag::None),
        },
    }
}

/// The metric reason and answer for a head Pingora's reader refused.
pub fn head_error_answer(e: &Error) -> Option<(&'static str, Option<u16>)> {
    let etype = e.etype();
    if *etype == REQUEST_HEAD_TOO_LARGE {
        return Some(("header_too_large", Some(431)));
    }
    if *etype == REQUEST_HEAD_TIMEOUT {
        return Some(("header_timeout", Some(408)));
    }
    match etype {
        // The first request did not start within the header timeout.
        ErrorType::ReadTimedout => Some(("header_timeout", Some(408))),
        ErrorType::InvalidHTTPHeader => {
            let cause = e.root_cause();
            let reason = match cause.downcast_ref::<httparse::Error>() {
                Some(httparse::Error::Version) => "bad_version",
                Some(httparse::Error::Token) => "bad_request_target",
                Some(_) => "bad_header",
                None if cause.is::<http::uri::InvalidUri>() => "bad_request_target",
                // Pingora's other checks of a parsed head: Content-Length,
                // Transfer-Encoding, Host and authority.
                None => "bad_request",
            };
            Some((reason, Some(400)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_failures_map_to_envoys_statuses() {
        let refused = Error::new(ErrorType::ConnectRefused);
        assert_eq!(
            failure(&refused),
            (Some(503), ResponseFlag::UpstreamConnectionFailure)
        );
        let mut slow = Error::new(ErrorType::ReadTimedout);
        slow.as_up();
        assert_eq!(
            failure(&slow),
            (Some(504), ResponseFlag::UpstreamRequestTimeout)
        );
        let mut reset = Error::new(ErrorType::ConnectionClosed);
        reset.as_up();
        assert_eq!(
            failure(&reset),
            (Some(503), ResponseFlag::UpstreamConnectionTermination)
        );
        let mut gone = Error::new(ErrorType::ConnectionClosed);
        gone.as_down();
        assert_eq!(
            failure(&gone),
            (None, ResponseFlag::DownstreamConnectionTermination)
        );
    }

    #[test]
    fn refused_heads_are_counted_by_reason() {
        let too_large = Error::new(REQUEST_HEAD_TOO_LARGE);
        assert_eq!(
            head_error_answer(&too_large),
            Some(("header_too_large", Some(431)))
        );
        let slow = Error::new(REQUEST_HEAD_TIMEOUT);
        assert_eq!(
            head_error_answer(&slow),
            Some(("header_timeout", Some(408)))
        );
        let malformed = Error::because(
            ErrorType::InvalidHTTPHeader,
            "buf",
            httparse::Error::Version,
        );
        assert_eq!(
            head_error_answer(&malformed),
            Some(("bad_version", Some(400)))
        );
        assert_eq!(
            head_error_answer(&Error::new(ErrorType::ConnectionClosed)),
            None,
            "a client leaving mid-head is not refused"
        );
    }
}
