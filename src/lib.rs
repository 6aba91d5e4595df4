//! herald's event types, generated from the JSON Schemas in `event-defs/` by `build.rs`.
//!
//! Everything here comes from the definitions; nothing is written by hand:
//!
//! - one payload struct per event (`BatchFileAddedV1`, ...) and per shared type, and an open enum
//!   per string enum;
//! - [`EventEnvelope`], the Kafka record value, generic over its payload;
//! - [`Event`], the dispatch enum with one variant per event and `Unknown`, and [`route`], which
//!   parses record bytes into an `EventEnvelope<Event>` by `event_type` or alias;
//! - [`EventHandler`], one method per event (generated defaults for declarative events) returning
//!   the handler's own `Output`, and [`dispatch`], which gives that output to its caller;
//! - [`EVENTS`] and [`TOPICS`], the catalogue;
//! - [`ASYNCAPI`], the AsyncAPI 3.0 document of the Kafka topics and the WebSocket protocol (the
//!   same bytes as the checked-in `clients/asyncapi/asyncapi.json`), which the service serves.
//!
//! The runtime these types use is re-exported as [`runtime`].

pub use herald_runtime as runtime;

#[allow(missing_docs, clippy::all)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/events.rs"));
}

pub use generated::*;

/// The AsyncAPI 3.0 document (JSON) generated from the same definitions: the Kafka channels herald
/// consumes and the WebSocket channel `/ws` with every notification, frame and close code.
pub const ASYNCAPI: &str = include_str!(concat!(env!("OUT_DIR"), "/asyncapi.json"));
