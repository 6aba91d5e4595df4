//! herald's event types, generated from the JSON Schemas in `event-defs/` by `build.rs`.
//!
//! Everything here comes from the definitions; nothing is written by hand:
//!
//! - one payload struct per event (`BatchFileAddedV1`, ...) and per shared type, and an open enum
//!   per string enum;
//! - [`EventEnvelope`], the Kafka record value, generic over its payload;
//! - [`Event`], the dispatch enum with one variant per event and `Unknown`, and [`route`], which
//!   parses record bytes into an `EventEnvelope<Event>` by `event_type` or alias;
//! - [`EventHandler`], one method per event (generated defaults for declarative events), and
//!   [`dispatch`];
//! - [`EVENTS`] and [`TOPICS`], the catalogue.
//!
//! The runtime these types use is re-exported as [`runtime`].

pub use herald_runtime as runtime;

#[allow(missing_docs, clippy::all)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/events.rs"));
}

pub use generated::*;
