//! The runtime that code generated from `event-defs/` depends on.
//!
//! The generator (`herald-codegen`) writes plain data types; everything they need at run time lives
//! here, so generated code stays small and this crate stays the one place to read:
//!
//! - [`event`]: the [`Event`] trait that every payload implements through
//!   `#[derive(herald_macros::Event)]`, with the routing facts of `x-herald` ([`Category`],
//!   [`Priority`], [`Recipient`], [`BatchOwner`]).
//! - [`notification`]: [`Notification`], what a declarative handler builds from an event, and the
//!   wire format published on the Redis channel `ws:{user_id}`.
//! - [`protocol`]: the rest of the WebSocket conversation as data (endpoint, query parameters,
//!   client and server frames, close codes), from which the generator writes the AsyncAPI document.
//! - [`text`]: [`Timestamp`] and [`Uuid`], strings that are validated when parsed and keep the exact
//!   text the producer sent.
//! - [`route`]: parsing envelopes and payloads, with errors that name the offending key.
//! - [`open_enum`]: the [`OpenEnum`] trait behind generated enums, which accept values added later.
//! - [`serde_fields`]: the serde helpers that give required-nullable and optional-nullable keys their
//!   exact meaning.
//!
//! This crate does no I/O: publishing to Redis, consuming Kafka and serving sockets belong to the
//! service.

pub mod event;
pub mod notification;
pub mod open_enum;
pub mod protocol;
pub mod route;
pub mod serde_fields;
pub mod text;

pub use event::{BatchOwner, Category, Event, EventInfo, Handling, Priority, Recipient, RecipientId};
pub use notification::{EnvelopeRef, Notification, NotificationData, USER_CHANNEL_PREFIX, user_channel};
pub use open_enum::OpenEnum;
pub use route::{PayloadError, RouteError};
pub use text::{Timestamp, Uuid};

/// Re-exported so that generated code and derive output can name serde through one path.
#[doc(hidden)]
pub use serde as __serde;
/// Re-exported so that generated code can name serde_json through one path.
#[doc(hidden)]
pub use serde_json as __serde_json;
