// An event marked `"handling": "custom"` has no generated handler: leaving it out must not compile.
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
}

fn main() {}
