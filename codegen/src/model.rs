//! The normalized model: what the schemas mean, independent of JSON Schema and of any output
//! language. Both the Rust and the TypeScript emitters read only this, so they cannot disagree.

use std::collections::BTreeMap;

/// Everything the generator knows after reading `event-defs/`.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The events, in the sorted order of their files.
    pub events: Vec<EventDef>,
    /// Every named type (payloads, shared objects, enums, the envelope), by name.
    pub types: BTreeMap<String, TypeDef>,
    /// The envelope type.
    pub envelope: EnvelopeDef,
    /// The definition files that were read, sorted, relative to the folder's parent.
    pub files: Vec<String>,
}

/// A named type and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeDef {
    /// The type's name in both languages.
    pub name: String,
    /// The file that defines it.
    pub file: String,
    /// The JSON pointer of its schema in that file.
    pub pointer: String,
    /// The schema's `description`, if any.
    pub description: Option<String>,
    /// What kind of type it is.
    pub kind: TypeKind,
}

/// Objects become structs; string enums become open enums.
#[derive(Debug, Clone, PartialEq)]
pub enum TypeKind {
    /// An object with declared properties.
    Struct(Vec<Field>),
    /// A string enum; values in schema order.
    Enum(Vec<EnumValue>),
}

/// One enum value.
#[derive(Debug, Clone, PartialEq)]
pub struct EnumValue {
    /// The value on the wire.
    pub value: String,
    /// The Rust variant name.
    pub variant: String,
}

/// One property of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The key on the wire.
    pub json_name: String,
    /// The Rust field name (may be a raw identifier such as `r#type`).
    pub ident: String,
    /// The value's type; [`Ty::Nullable`] when null may be sent.
    pub ty: Ty,
    /// Whether the key is always present.
    pub required: bool,
    /// The property's `description`, if any.
    pub description: Option<String>,
}

impl Field {
    /// Whether null may be sent for this key.
    pub fn nullable(&self) -> bool {
        matches!(self.ty, Ty::Nullable(_))
    }

    /// The type without its null-ness.
    pub fn value_ty(&self) -> &Ty {
        match &self.ty {
            Ty::Nullable(inner) => inner,
            other => other,
        }
    }
}

/// A value type.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    /// `string`.
    String,
    /// `string` with `format: date-time`.
    Timestamp,
    /// `string` with `format: uuid`.
    Uuid,
    /// `integer`.
    Integer,
    /// `number`.
    Number,
    /// `boolean`.
    Boolean,
    /// Any JSON value (`{}`).
    Any,
    /// An object without declared properties: any keys, any values.
    Object,
    /// An object whose values all have one type.
    Map(Box<Ty>),
    /// An array.
    Array(Box<Ty>),
    /// A named type from [`Model::types`].
    Named(String),
    /// The inner type, or null.
    Nullable(Box<Ty>),
}

/// The envelope that wraps every event.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvelopeDef {
    /// The envelope's type name.
    pub type_name: String,
    /// The property that holds the event payload; generic in the generated type.
    pub payload_field: String,
    /// The first of the envelope file's `examples`: the envelope a payload-only event example is
    /// wrapped in.
    pub example: Option<serde_json::Value>,
}

/// One event and its routing facts from `x-herald`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDef {
    /// The payload type's name (the schema's `title`).
    pub type_name: String,
    /// The definition file.
    pub file: String,
    /// The `event_type` producers set.
    pub event_type: String,
    /// Other `event_type` values producers send.
    pub aliases: Vec<String>,
    /// The Kafka topics consumed by default: the design's first, then those real producers use.
    pub topics: Vec<String>,
    /// `declarative` or `custom`.
    pub handling: Handling,
    /// The notification name browsers receive.
    pub notification: String,
    /// The notification category.
    pub category: Category,
    /// The notification priority.
    pub priority: Priority,
    /// Payload keys forwarded to the browser, in order.
    pub forwarded_fields: Vec<String>,
    /// Payload key holding the user to notify.
    pub recipient_user: Option<String>,
    /// Payload key holding the batch whose owner is notified.
    pub recipient_batch: Option<String>,
    /// Payload keys `(user, batch)` that reveal a batch's owner.
    pub batch_owner: Option<(String, String)>,
    /// How long a delivered notification suppresses re-sent copies.
    pub dedupe_ttl_seconds: u64,
    /// The examples of the definition (at least one), each a whole envelope.
    pub examples: Vec<Example>,
}

impl EventDef {
    /// The handler trait method for this event.
    pub fn handler_method(&self) -> String {
        format!("handle_{}", self.notification)
    }

    /// A short description of how the recipient is found.
    pub fn recipient_rule(&self) -> String {
        match (&self.recipient_user, &self.recipient_batch) {
            (Some(user), Some(batch)) => format!("{user}, else owner of {batch}"),
            (Some(user), None) => user.clone(),
            (None, Some(batch)) => format!("owner of {batch}"),
            (None, None) => String::new(),
        }
    }
}

/// An example of an event: an envelope as producers send it, under a case name.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The case name (`basic`, `traced`, ...): the fixture file name.
    pub case: String,
    /// The whole envelope, keys in the order the definition gives them.
    pub envelope: serde_json::Value,
}

pub use herald_runtime::{Category, Handling, Priority};
