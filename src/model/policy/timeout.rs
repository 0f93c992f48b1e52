//! MeshTimeout `default` (K:`pkg/plugins/policies/meshtimeout/api/v1alpha1/meshtimeout.go`).

use crate::merge_fields;
use std::time::Duration;

/// Every field optional; `Some(ZERO)` where Kuma allows `0s` (off).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TimeoutConf {
    pub connection_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub http: Option<HttpTimeouts>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HttpTimeouts {
    pub request_timeout: Option<Duration>,
    pub stream_idle_timeout: Option<Duration>,
    pub max_stream_duration: Option<Duration>,
    pub max_connection_duration: Option<Duration>,
    pub request_headers_timeout: Option<Duration>,
}

merge_fields!(TimeoutConf {
    replace: [connection_timeout, idle_timeout],
    nested: [http],
});

merge_fields!(HttpTimeouts {
    replace: [
        request_timeout,
        stream_idle_timeout,
        max_stream_duration,
        max_connection_duration,
        request_headers_timeout,
    ],
    nested: [],
});

impl TimeoutConf {
    /// An `http` field, if set.
    pub fn http<T>(&self, f: impl Fn(&HttpTimeouts) -> Option<T>) -> Option<T> {
        self.http.as_ref().and_then(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::policy::Merge;

    #[test]
    fn a_later_conf_overrides_only_what_it_sets() {
        let mut base = TimeoutConf {
            connection_timeout: Some(Duration::from_secs(5)),
            http: Some(HttpTimeouts {
                request_timeout: Some(Duration::from_secs(15)),
                stream_idle_timeout: Some(Duration::from_secs(5)),
                ..Default::default()
            }),
            ..Default::default()
        };
        base.merge(&TimeoutConf {
            http: Some(HttpTimeouts {
                request_timeout: Some(Duration::ZERO),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(base.connection_timeout, Some(Duration::from_secs(5)));
        let http = base.http.expect("http kept");
        assert_eq!(http.request_timeout, Some(Duration::ZERO), "0s overrides");
        assert_eq!(http.stream_idle_timeout, Some(Duration::from_secs(5)));
    }
}
