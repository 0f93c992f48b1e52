//! MeshGateway → [`model::Gateway`].

use super::{required, unreadable, Lowered};
use crate::model::gateway::{Gateway, Listener, ListenerTls, Protocol, TlsMode};
use crate::resources::MeshGateway;
use crate::validate::values;

pub fn gateway(spec: &MeshGateway, prefix: &str) -> Lowered<Gateway> {
    let mut listeners = Vec::new();
    let raw = spec.conf.as_ref().map(|c| c.listeners.as_slice());
    for (index, l) in raw.unwrap_or_default().iter().enumerate() {
        let at = format!("{prefix}conf.listeners[{index}]");
        let port = required(l.port.and_then(values::port), &format!("{at}.port"))?;
        let protocol = required(
            l.protocol.as_deref().and_then(Protocol::parse),
            &format!("{at}.protocol"),
        )?;
        let tls = match &l.tls {
            None => None,
            Some(t) => {
                let mode = match t.mode.as_deref() {
                    None | Some("TERMINATE") => TlsMode::Terminate,
                    Some("PASSTHROUGH") => TlsMode::Passthrough,
                    Some(other) => {
                        return Err(unreadable(format!("{at}.tls.mode"), other.to_string()))
                    }
                };
                let mut certificates = Vec::new();
                for (j, c) in t.certificates.iter().enumerate() {
                    certificates.push(required(
                        values::datasource(c),
                        &format!("{at}.tls.certificates[{j}]"),
                    )?);
                }
                Some(ListenerTls { mode, certificates })
            }
        };
        listeners.push(Listener {
            index,
            port,
            protocol,
            hostname: l.effective_hostname().to_ascii_lowercase(),
            tags: l.tags.clone().unwrap_or_default(),
            tls,
            connection_limit: l
                .resources
                .as_ref()
                .and_then(|r| r.connection_limit)
                .and_then(|c| u32::try_from(c).ok())
                .filter(|c| *c > 0),
        });
    }
    Ok(Gateway {
        selectors: spec
            .selectors
            .iter()
            .map(|s| s.match_tags.clone())
            .collect(),
        tags: spec.tags.clone().unwrap_or_default(),
        listeners,
    })
}
