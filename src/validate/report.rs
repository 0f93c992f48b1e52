//! Collects the violations of one resource, stamping each with the resource's origin and
//! `Kind/name`, so rule code only says *where* (a [`FieldPath`]) and *what* (Kuma's words).

use super::path::FieldPath;
use crate::resources::Meta;
use crate::violation::Violation;

pub struct Report<'a> {
    meta: &'a Meta,
    out: &'a mut Vec<Violation>,
}

impl<'a> Report<'a> {
    pub fn new(meta: &'a Meta, out: &'a mut Vec<Violation>) -> Self {
        Report { meta, out }
    }

    pub fn meta(&self) -> &Meta {
        self.meta
    }

    pub fn add(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.out.push(Violation::new(
            &self.meta.origin,
            Some(self.meta.display_name()),
            path.as_str(),
            message,
        ));
    }
}
