// The custom fixture compiles once the service implements the custom event's handler.
#![deny(warnings)]
#![allow(dead_code)]

include!("../../codegen/tests/snapshots/custom.rs");

struct Service;

impl EventHandler for Service {
    type Output = ();
    type Error = ();

    fn deliver(
        &self,
        _notification: herald_runtime::Notification,
    ) -> impl std::future::Future<Output = Result<(), ()>> + Send {
        std::future::ready(Ok(()))
    }

    fn handle_unknown(
        &self,
        _envelope: &EventEnvelope<Box<serde_json::value::RawValue>>,
    ) -> impl std::future::Future<Output = Result<(), ()>> + Send {
        std::future::ready(Ok(()))
    }

    fn handle_audit_flagged(
        &self,
        _envelope: &EventEnvelope<AuditFlaggedV1>,
    ) -> impl std::future::Future<Output = Result<(), ()>> + Send {
        std::future::ready(Ok(()))
    }
}

fn main() {
    let _ = Service;
}
