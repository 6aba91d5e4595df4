//! What every event payload knows about itself.
//!
//! `#[derive(herald_macros::Event)]` implements [`Event`] from the `#[herald(...)]` attribute that
//! the generator writes from a schema's `x-herald` object, so these facts cannot drift from the
//! schema.

use std::fmt;

use serde::Serializer;

/// The category a notification is filed under, for filtering in the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// Batch processing updates.
    BatchProgress,
    /// A processing service finished its work.
    ProcessingResults,
    /// Files added to or removed from a batch.
    FileOperations,
    /// Classes and students created or changed.
    ClassManagement,
    /// Student matching and validation.
    StudentWorkflow,
    /// Errors the teacher needs to act on.
    SystemAlerts,
}

/// How urgently a notification should reach the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Real-time delivery required.
    Immediate,
    /// Normal delivery.
    Standard,
    /// May be batched or delayed.
    Low,
}

/// Whether the handler of an event is generated or written by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Handling {
    /// The generated handler builds the notification, finds the recipient and delivers it.
    Declarative,
    /// The handler trait method has no default body; the service must implement it.
    Custom,
}

macro_rules! snake_names {
    ($type:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $type {
            /// Every value, in declaration order.
            pub const ALL: &'static [$type] = &[$($type::$variant),+];

            /// The snake_case name used on the wire and in `x-herald`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($type::$variant => $name),+
                }
            }

            /// The Rust name of the variant, for code generators that name it.
            pub const fn variant_name(self) -> &'static str {
                match self {
                    $($type::$variant => stringify!($variant)),+
                }
            }

            /// The value with this snake_case name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some($type::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

snake_names!(Category {
    BatchProgress => "batch_progress",
    ProcessingResults => "processing_results",
    FileOperations => "file_operations",
    ClassManagement => "class_management",
    StudentWorkflow => "student_workflow",
    SystemAlerts => "system_alerts",
});

snake_names!(Priority {
    Immediate => "immediate",
    Standard => "standard",
    Low => "low",
});

snake_names!(Handling {
    Declarative => "declarative",
    Custom => "custom",
});

/// Who an event is for, as far as the event itself can tell.
///
/// `user` is the value of the schema's `recipient.user` key when it names a real user; `batch` is the
/// value of `recipient.batch`, whose owner is notified when there is no user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipient<'a> {
    /// The user named by the event, if any.
    pub user: Option<&'a str>,
    /// The batch whose owner is notified when no user is named.
    pub batch: Option<&'a str>,
}

impl<'a> Recipient<'a> {
    /// Builds a recipient, discarding user ids that do not name a user (see [`is_real_user_id`]).
    pub fn new(user: Option<&'a str>, batch: Option<&'a str>) -> Self {
        Recipient { user: user.filter(|user| is_real_user_id(user)), batch: batch.filter(|batch| !batch.is_empty()) }
    }
}

/// A fact learnt from an event that carries both a user and a batch: the user owns the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOwner<'a> {
    /// The batch.
    pub batch: &'a str,
    /// Its owner.
    pub user: &'a str,
}

impl<'a> BatchOwner<'a> {
    /// The ownership fact, when both ids are present and the user is a real one.
    pub fn new(batch: Option<&'a str>, user: Option<&'a str>) -> Option<Self> {
        match (batch, user) {
            (Some(batch), Some(user)) if !batch.is_empty() && is_real_user_id(user) => Some(BatchOwner { batch, user }),
            _ => None,
        }
    }
}

/// Whether a user id names a user: not empty, and not the literal `"unknown"` that one producer
/// path sends when it does not know the user.
pub fn is_real_user_id(user: &str) -> bool {
    !user.is_empty() && user != "unknown"
}

/// A field type that can hold a user or batch id: `String`, [`Uuid`](crate::Uuid), and the `Option`
/// forms that optional and nullable keys generate.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot hold a user or batch id",
    label = "recipient and batch-owner fields must be strings (`String`, `Uuid`, or an `Option` of one)"
)]
pub trait RecipientId {
    /// The id, when the key is present and not null.
    fn recipient_id(&self) -> Option<&str>;
}

impl RecipientId for String {
    fn recipient_id(&self) -> Option<&str> {
        Some(self)
    }
}

impl RecipientId for crate::Uuid {
    fn recipient_id(&self) -> Option<&str> {
        Some(self.as_str())
    }
}

impl<T: RecipientId> RecipientId for Option<T> {
    fn recipient_id(&self) -> Option<&str> {
        self.as_ref().and_then(RecipientId::recipient_id)
    }
}

/// An event payload with its routing facts. Implemented by `#[derive(herald_macros::Event)]`.
pub trait Event {
    /// The `event_type` producers set in the envelope.
    const EVENT_TYPE: &'static str;
    /// Other `event_type` values real producers send for this event.
    const ALIASES: &'static [&'static str];
    /// The Kafka topics consumed for this event by default (the design's topic first, then the
    /// topics real producers use); `--topic NOTIFICATION=TOPIC` replaces the list.
    const TOPICS: &'static [&'static str];
    /// The notification name browsers receive in `event`.
    const NOTIFICATION: &'static str;
    /// The notification's category.
    const CATEGORY: Category;
    /// The notification's priority.
    const PRIORITY: Priority;
    /// Whether the handler is generated or written by hand.
    const HANDLING: Handling;
    /// How long a delivered notification is remembered to suppress a re-sent copy.
    const DEDUPE_TTL_SECONDS: u64;
    /// The payload keys forwarded to the browser, in order.
    const FORWARDED_FIELDS: &'static [&'static str];

    /// Who this event is for.
    fn recipient(&self) -> Recipient<'_>;

    /// The batch owner this event reveals, if it carries both a user and a batch.
    fn batch_owner(&self) -> Option<BatchOwner<'_>>;

    /// Writes the notification's `data` object: the forwarded fields, with the same presence and
    /// null-ness as in the payload.
    fn serialize_notification_data<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error>;
}

/// One row of the generated event catalogue (`herald::EVENTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventInfo {
    /// The payload type's name.
    pub type_name: &'static str,
    /// The `event_type` producers set.
    pub event_type: &'static str,
    /// Other `event_type` values producers send.
    pub aliases: &'static [&'static str],
    /// The Kafka topics consumed by default: the design's topic first, then the topics real
    /// producers use.
    pub topics: &'static [&'static str],
    /// The notification name browsers receive.
    pub notification: &'static str,
    /// The notification's category.
    pub category: Category,
    /// The notification's priority.
    pub priority: Priority,
    /// Whether the handler is generated.
    pub handling: Handling,
    /// The handler trait method.
    pub handler: &'static str,
    /// How the recipient is found, in words (`user_id, else owner of batch_id`).
    pub recipient: &'static str,
    /// The payload key holding the user to notify, when the event names one.
    pub recipient_user_key: Option<&'static str>,
    /// The payload key holding the batch whose owner is notified when no user is named.
    pub recipient_batch_key: Option<&'static str>,
    /// The first example envelope of the definition, as compact JSON: a sample that routes.
    pub example: &'static str,
}
