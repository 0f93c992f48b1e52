//! Secret (Universal `type: Secret`, `data` = base64; Kubernetes `data.value`). Kuma decodes
//! `data` as protobuf bytes, so a Secret that is not base64 cannot be stored; meshgate
//! reports it here rather than when a certificate refers to it.

use super::path::FieldPath;
use super::report::Report;
use crate::resources::{Form, Secret};
use base64::Engine;

pub fn validate_secret(r: &mut Report, spec: &Secret) {
    let path = match r.meta().form {
        Form::Universal => FieldPath::root().field("data"),
        Form::Kubernetes => FieldPath::root().field("data").field("value"),
    };
    match spec.base64_payload() {
        None => r.add(&path, "cannot be empty"),
        Some(p) => {
            if base64::engine::general_purpose::STANDARD
                .decode(p.trim())
                .is_err()
            {
                r.add(&path, "must be valid base64");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::testutil::assert_yaml;

    #[test]
    fn data_must_be_base64() {
        assert_yaml(
            "type: Secret\nmesh: default\nname: s\ndata: aGVsbG8=\n",
            &[],
        );
        assert_yaml(
            "type: Secret\nmesh: default\nname: s\ndata: '***'\n",
            &["data: must be valid base64"],
        );
        assert_yaml(
            "type: Secret\nmesh: default\nname: s\n",
            &["data: cannot be empty"],
        );
    }

    #[test]
    fn kubernetes_secret_payload() {
        assert_yaml(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: kuma-system\ndata:\n  value: '***'\n",
            &["data.value: must be valid base64"],
        );
    }
}
