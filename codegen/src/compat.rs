//! The breaking-change check: compares two [`Model`]s (the definitions before and after a change)
//! and classifies every difference for its two readers, in the vocabulary of schema registries.
//!
//! - **herald** reads the envelopes producers send. The old definitions are what producers were
//!   told to send; the new ones are what herald will read.
//! - **browsers** read the notifications herald sends: a notification's name, category, priority
//!   and its forwarded fields, with every type reachable from them.
//!
//! For one reader, a change is
//!
//! - **BACKWARD** compatible when a reader built from the new definitions reads everything a writer
//!   following the old definitions sends (herald after a deploy reads what the producers, and the
//!   records already in Kafka, still carry; a new browser reads notifications replayed from
//!   history),
//! - **FORWARD** compatible when a reader built from the old definitions reads everything a writer
//!   following the new definitions sends (herald before a deploy, or rolled back, reads what updated
//!   producers send; a browser tab still running the old bundle reads what the new herald sends),
//! - **FULL** when both hold, **NONE** when neither does.
//!
//! "Reads" means: every value the writer may send is one the reader accepts, and every event or
//! notification the reader was built to receive still arrives. Herald requires BACKWARD (it is
//! deployed while producers still run the old code and old records wait in the topics); browsers
//! require FORWARD (open tabs run the old bundle for hours). A change that does not reach its
//! reader's requirement is breaking. Enums are open on both sides, so enum values never break
//! anything; keys a schema does not declare are accepted and ignored, so an added optional key
//! never does either. A change to a payload field that is never forwarded is FULL for browsers:
//! they never see it.
//!
//! Pure: the command (`herald-codegen compat`) does the git and file work.

use std::collections::BTreeSet;
use std::fmt;

use crate::diagnostic::pointer_segment;
use crate::model::{EventDef, Field, Model, Ty, TypeDef, TypeKind};

/// Who reads what the definitions describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Audience {
    /// herald, reading the envelopes producers send to Kafka.
    Herald,
    /// Browsers, reading the notifications herald sends over WebSocket.
    Browsers,
}

impl Audience {
    /// Both audiences.
    pub const ALL: &'static [Audience] = &[Audience::Herald, Audience::Browsers];

    /// The name in the report and the acknowledgement file.
    pub const fn as_str(self) -> &'static str {
        match self {
            Audience::Herald => "herald",
            Audience::Browsers => "browsers",
        }
    }

    /// The audience named `name`.
    pub fn from_name(name: &str) -> Option<Audience> {
        Audience::ALL.iter().copied().find(|audience| audience.as_str() == name)
    }

    /// The compatibility a change must have not to break this audience.
    pub const fn required(self) -> Compatibility {
        match self {
            Audience::Herald => Compatibility::Backward,
            Audience::Browsers => Compatibility::Forward,
        }
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change's compatibility for one audience, as schema registries name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Compatibility {
    /// New readers read old writers, and old readers read new writers.
    Full,
    /// New readers read old writers.
    Backward,
    /// Old readers read new writers.
    Forward,
    /// Neither.
    None,
}

impl Compatibility {
    /// The compatibility of a change whose backward and forward reading hold or not.
    pub const fn of(backward: bool, forward: bool) -> Compatibility {
        match (backward, forward) {
            (true, true) => Compatibility::Full,
            (true, false) => Compatibility::Backward,
            (false, true) => Compatibility::Forward,
            (false, false) => Compatibility::None,
        }
    }

    /// The name in the report.
    pub const fn as_str(self) -> &'static str {
        match self {
            Compatibility::Full => "FULL",
            Compatibility::Backward => "BACKWARD",
            Compatibility::Forward => "FORWARD",
            Compatibility::None => "NONE",
        }
    }

    fn backward(self) -> bool {
        matches!(self, Compatibility::Full | Compatibility::Backward)
    }

    fn forward(self) -> bool {
        matches!(self, Compatibility::Full | Compatibility::Forward)
    }

    /// Whether this compatibility meets `required`.
    pub fn satisfies(self, required: Compatibility) -> bool {
        (!required.backward() || self.backward()) && (!required.forward() || self.forward())
    }
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! rules {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// The kinds of change the check knows; each is one line of the report.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Rule {
            $(#[doc = $doc] $variant,)*
        }

        impl Rule {
            /// Every rule.
            pub const ALL: &'static [Rule] = &[$(Rule::$variant),*];

            /// The rule's name in the report and the acknowledgement file.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Rule::$variant => $name,)*
                }
            }
        }
    };
}

rules! {
    EventAdded => "event-added", "A new event: herald reads its event types from now on.";
    EventRemoved => "event-removed", "An event is gone: herald no longer reads its event types.";
    EventTypeAdded => "event-type-added", "A new event type or alias for an event.";
    EventTypeRemoved => "event-type-removed", "An event type or alias herald no longer reads.";
    TopicAdded => "topic-added", "A new topic an event is consumed from.";
    TopicRemoved => "topic-removed", "A topic herald no longer consumes an event from.";
    RecipientChanged => "recipient-changed", "The keys that name the recipient changed.";
    BatchOwnerChanged => "batch-owner-changed", "The keys that reveal a batch's owner changed.";
    EnvelopePayloadChanged => "envelope-payload-changed", "The envelope holds the payload under another key.";
    NotificationAdded => "notification-added", "A new notification.";
    NotificationRemoved => "notification-removed", "A notification browsers will no longer receive.";
    NotificationRenamed => "notification-renamed", "A notification's name changed.";
    CategoryChanged => "category-changed", "A notification's category changed.";
    PriorityChanged => "priority-changed", "A notification's priority changed.";
    FieldForwarded => "field-forwarded", "A payload key is forwarded to browsers from now on.";
    FieldNoLongerForwarded => "field-no-longer-forwarded", "A payload key browsers received is no longer forwarded.";
    FieldAdded => "field-added", "A new property.";
    FieldRemoved => "field-removed", "A property is gone.";
    FieldBecameRequired => "field-became-required", "A property is required now.";
    FieldBecameOptional => "field-became-optional", "A required property is optional now.";
    FieldBecameNullable => "field-became-nullable", "A value may be null now.";
    FieldNoLongerNullable => "field-no-longer-nullable", "A value may no longer be null.";
    TypeChanged => "type-changed", "A value's type changed (widened, narrowed or replaced).";
    EnumValueAdded => "enum-value-added", "A new enum value.";
    EnumValueRemoved => "enum-value-removed", "An enum value is gone.";
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One difference between two sets of definitions, for one audience.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    /// The file it is visible in: the new definitions' file, or the old one for something removed
    /// (`event-defs/x.json`).
    pub file: String,
    /// A JSON pointer into that file.
    pub pointer: String,
    /// Who reads it.
    pub audience: Audience,
    /// What kind of change it is.
    pub rule: Rule,
    /// Its compatibility for `audience`.
    pub compatibility: Compatibility,
    /// What changed and what it means for `audience`.
    pub message: String,
}

impl Change {
    /// Whether the change falls short of what its audience requires.
    pub fn breaking(&self) -> bool {
        !self.compatibility.satisfies(self.audience.required())
    }

    /// The definition file's name without its folder, which is what acknowledgements match.
    pub fn file_name(&self) -> &str {
        file_name(&self.file)
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Compares the definitions `old` (read from a folder labelled `old_folder`) with `new` (labelled
/// `new_folder`) and returns every change, sorted by file, pointer, audience and rule.
pub fn compare(old: &Model, old_folder: &str, new: &Model, new_folder: &str) -> Vec<Change> {
    let mut walk = Walk {
        old: Side { model: old, folder: old_folder },
        new: Side { model: new, folder: new_folder },
        changes: Vec::new(),
        visited: BTreeSet::new(),
    };
    walk.envelope();
    walk.events();
    walk.finish()
}

/// The envelope keys every notification carries, for browsers to read.
const ENVELOPE_KEYS_IN_NOTIFICATIONS: &[&str] = &["event_id", "event_timestamp", "correlation_id"];

/// The end of the message of a browsers line about a value browsers never receive.
const NEVER_FORWARDED: &str = "; never forwarded to browsers";

#[derive(Clone, Copy)]
struct Side<'a> {
    model: &'a Model,
    folder: &'a str,
}

impl Side<'_> {
    fn label(&self, file: &str) -> String {
        format!("{}/{file}", self.folder)
    }

    fn struct_fields(&self, name: &str) -> Option<(&TypeDef, &[Field])> {
        let def = self.model.types.get(name)?;
        match &def.kind {
            TypeKind::Struct(fields) => Some((def, fields)),
            TypeKind::Enum(_) => None,
        }
    }
}

/// Where a value sits: the file label and JSON pointer, and whether browsers see it.
#[derive(Clone)]
struct Place {
    file: String,
    pointer: String,
    /// Whether the value is forwarded to browsers in both the old and the new definitions. (A key
    /// forwarded on one side only is reported by the forwarding rules.)
    forwarded: bool,
    /// Whether the value is forwarded on one side only; then no browsers line is written for it.
    forwarding_changed: bool,
}

impl Place {
    fn child(&self, segment: &str) -> Place {
        Place { pointer: format!("{}/{}", self.pointer, pointer_segment(segment)), ..self.clone() }
    }
}

struct Walk<'a> {
    old: Side<'a>,
    new: Side<'a>,
    changes: Vec<Change>,
    /// Pairs of named types already compared, with whether they were forwarded.
    visited: BTreeSet<(String, String, bool, bool)>,
}

impl Walk<'_> {
    fn push(
        &mut self,
        place: (&str, &str),
        audience: Audience,
        rule: Rule,
        compatibility: Compatibility,
        message: String,
    ) {
        self.changes.push(Change {
            file: place.0.to_owned(),
            pointer: place.1.to_owned(),
            audience,
            rule,
            compatibility,
            message,
        });
    }

    /// A change in a value: herald reads it; browsers read it when it is forwarded, and otherwise
    /// never see it.
    fn value_change(&mut self, place: &Place, rule: Rule, compatibility: Compatibility, message: String) {
        let at = (place.file.as_str(), place.pointer.as_str());
        self.push(at, Audience::Herald, rule, compatibility, message.clone());
        if place.forwarding_changed {
            return;
        }
        if place.forwarded {
            self.push(at, Audience::Browsers, rule, compatibility, message);
        } else {
            self.push(at, Audience::Browsers, rule, Compatibility::Full, format!("{message}{NEVER_FORWARDED}"));
        }
    }

    /// Sorts, removes repeats (a shared type is reached from several events) and drops a
    /// "never forwarded" browsers line where the same value is forwarded through another event.
    fn finish(mut self) -> Vec<Change> {
        let forwarded: BTreeSet<(String, String, Rule)> = self
            .changes
            .iter()
            .filter(|change| change.audience == Audience::Browsers && !change.message.ends_with(NEVER_FORWARDED))
            .map(|change| (change.file.clone(), change.pointer.clone(), change.rule))
            .collect();
        self.changes.retain(|change| {
            !(change.audience == Audience::Browsers
                && change.message.ends_with(NEVER_FORWARDED)
                && forwarded.contains(&(change.file.clone(), change.pointer.clone(), change.rule)))
        });
        self.changes.sort();
        self.changes.dedup();
        self.changes
    }

    fn envelope(&mut self) {
        let (old, new) = (self.old, self.new);
        if old.model.envelope.payload_field != new.model.envelope.payload_field {
            let file = new.model.types.get(&new.model.envelope.type_name).map(|def| new.label(&def.file));
            let file = file.unwrap_or_else(|| new.folder.to_owned());
            self.push(
                (&file, "/x-herald/envelope/payload"),
                Audience::Herald,
                Rule::EnvelopePayloadChanged,
                Compatibility::None,
                format!(
                    "the payload moved from {:?} to {:?}: each side's herald finds no payload in the other side's envelopes",
                    old.model.envelope.payload_field, new.model.envelope.payload_field
                ),
            );
        }
        let payloads = [old.model.envelope.payload_field.clone(), new.model.envelope.payload_field.clone()];
        let (Some((old_def, old_fields)), Some((new_def, new_fields))) =
            (old.struct_fields(&old.model.envelope.type_name), new.struct_fields(&new.model.envelope.type_name))
        else {
            return;
        };
        let base = |side: Side<'_>, def: &TypeDef| Place {
            file: side.label(&def.file),
            pointer: def.pointer.clone(),
            forwarded: false,
            forwarding_changed: false,
        };
        // Every notification carries these envelope keys (as `event_id`, `timestamp` and
        // `correlation_id`); the payload keys' schemas are the events', compared per event.
        let forwarding = |key: &str| (ENVELOPE_KEYS_IN_NOTIFICATIONS.contains(&key), false);
        self.fields(old_fields, new_fields, &base(old, old_def), &base(new, new_def), &forwarding, &payloads);
    }

    fn events(&mut self) {
        let (old, new) = (self.old, self.new);
        let mut pairs: Vec<(&EventDef, &EventDef)> = Vec::new();
        let mut unmatched_old: Vec<&EventDef> = Vec::new();
        let mut matched_new: BTreeSet<&str> = BTreeSet::new();
        for event in &old.model.events {
            let types = event_types(event);
            let partner = new.model.events.iter().find(|candidate| candidate.file == event.file).or_else(|| {
                new.model.events.iter().find(|candidate| {
                    !old.model.events.iter().any(|other| other.file == candidate.file)
                        && event_types(candidate).iter().any(|t| types.contains(t))
                })
            });
            match partner {
                Some(partner) if matched_new.insert(&partner.file) => pairs.push((event, partner)),
                _ => unmatched_old.push(event),
            }
        }
        for event in unmatched_old {
            let file = old.label(&event.file);
            let types = event_types(event).into_iter().collect::<Vec<_>>().join(", ");
            self.push(
                (&file, "/x-herald"),
                Audience::Herald,
                Rule::EventRemoved,
                Compatibility::Forward,
                format!(
                    "event {} is gone: herald no longer reads {types}, which producers on the old definitions send",
                    event.type_name
                ),
            );
            self.push(
                (&file, "/x-herald"),
                Audience::Browsers,
                Rule::NotificationRemoved,
                Compatibility::Backward,
                format!("notification {:?} is gone: browsers built for it stop receiving it", event.notification),
            );
        }
        for event in &new.model.events {
            if matched_new.contains(event.file.as_str()) {
                continue;
            }
            let file = new.label(&event.file);
            let types = event_types(event).into_iter().collect::<Vec<_>>().join(", ");
            self.push(
                (&file, "/x-herald"),
                Audience::Herald,
                Rule::EventAdded,
                Compatibility::Backward,
                format!(
                    "new event {}: herald reads {types} from now on (herald on the old definitions skips them)",
                    event.type_name
                ),
            );
            self.push(
                (&file, "/x-herald"),
                Audience::Browsers,
                Rule::NotificationAdded,
                Compatibility::Full,
                format!("new notification {:?}: browsers built before it ignore it", event.notification),
            );
        }
        for (old_event, new_event) in pairs {
            self.event(old_event, new_event);
        }
    }

    fn event(&mut self, old_event: &EventDef, new_event: &EventDef) {
        let (old, new) = (self.old, self.new);
        let file = new.label(&new_event.file);
        let old_file = old.label(&old_event.file);
        let at = |pointer: &str| (file.clone(), pointer.to_owned());

        // Event types and aliases: one list on each side, canonical first.
        let old_types: Vec<String> =
            std::iter::once(old_event.event_type.clone()).chain(old_event.aliases.clone()).collect();
        let new_types: Vec<String> =
            std::iter::once(new_event.event_type.clone()).chain(new_event.aliases.clone()).collect();
        let type_pointer = |index: usize| {
            if index == 0 {
                "/x-herald/event/event_type".to_owned()
            } else {
                format!("/x-herald/event/aliases/{}", index - 1)
            }
        };
        for (index, event_type) in old_types.iter().enumerate() {
            if !new_types.contains(event_type) {
                self.push(
                    (&old_file, &type_pointer(index)),
                    Audience::Herald,
                    Rule::EventTypeRemoved,
                    Compatibility::Forward,
                    format!(
                        "herald no longer reads event type {event_type:?}, which producers on the old definitions send"
                    ),
                );
            }
        }
        for (index, event_type) in new_types.iter().enumerate() {
            if !old_types.contains(event_type) {
                self.push(
                    (&file, &type_pointer(index)),
                    Audience::Herald,
                    Rule::EventTypeAdded,
                    Compatibility::Backward,
                    format!(
                        "herald reads event type {event_type:?} from now on (herald on the old definitions skips it)"
                    ),
                );
            }
        }
        for (index, topic) in old_event.topics.iter().enumerate() {
            if !new_event.topics.contains(topic) {
                self.push(
                    (&old_file, &format!("/x-herald/event/topics/{index}")),
                    Audience::Herald,
                    Rule::TopicRemoved,
                    Compatibility::Forward,
                    format!(
                        "herald no longer consumes topic {topic:?}, where producers on the old definitions publish"
                    ),
                );
            }
        }
        for (index, topic) in new_event.topics.iter().enumerate() {
            if !old_event.topics.contains(topic) {
                self.push(
                    (&file, &format!("/x-herald/event/topics/{index}")),
                    Audience::Herald,
                    Rule::TopicAdded,
                    Compatibility::Backward,
                    format!("herald consumes topic {topic:?} from now on (herald on the old definitions does not)"),
                );
            }
        }
        let (old_rule, new_rule) = (old_event.recipient_rule(), new_event.recipient_rule());
        if old_rule != new_rule {
            let (f, p) = at("/x-herald/recipient");
            self.push(
                (&f, &p),
                Audience::Herald,
                Rule::RecipientChanged,
                Compatibility::None,
                format!(
                    "the recipient was {old_rule:?} and is {new_rule:?}: envelopes on either side may be addressed to someone else \
                     or to no one by the other side's herald"
                ),
            );
        }
        if old_event.batch_owner != new_event.batch_owner {
            let show = |owner: &Option<(String, String)>| match owner {
                Some((user, batch)) => format!("{user} owns {batch}"),
                None => "none".to_owned(),
            };
            let (f, p) = at("/x-herald/batch_owner");
            self.push(
                (&f, &p),
                Audience::Herald,
                Rule::BatchOwnerChanged,
                Compatibility::None,
                format!(
                    "batch ownership was learnt as \"{}\" and is learnt as \"{}\": notifications parked for a batch owner may \
                     wait for an owner the other side never learns",
                    show(&old_event.batch_owner),
                    show(&new_event.batch_owner)
                ),
            );
        }

        if old_event.notification != new_event.notification {
            let (f, p) = at("/x-herald/notification/name");
            self.push(
                (&f, &p),
                Audience::Browsers,
                Rule::NotificationRenamed,
                Compatibility::Backward,
                format!(
                    "notification {:?} is now {:?}: browsers built for {:?} stop receiving it",
                    old_event.notification, new_event.notification, old_event.notification
                ),
            );
        }
        if old_event.category != new_event.category {
            let (f, p) = at("/x-herald/notification/category");
            self.push(
                (&f, &p),
                Audience::Browsers,
                Rule::CategoryChanged,
                Compatibility::None,
                format!(
                    "{:?} moved from category {} to {}: each side's browsers file it under a category the other side's types \
                     do not allow (and per-category subscriptions miss it)",
                    new_event.notification, old_event.category, new_event.category
                ),
            );
        }
        if old_event.priority != new_event.priority {
            let (f, p) = at("/x-herald/notification/priority");
            self.push(
                (&f, &p),
                Audience::Browsers,
                Rule::PriorityChanged,
                Compatibility::None,
                format!(
                    "{:?} changed priority from {} to {}: the generated types fix the priority, so each side's browsers get \
                     one their types do not allow",
                    new_event.notification, old_event.priority, new_event.priority
                ),
            );
        }

        // Forwarding: keys forwarded on one side only.
        let old_payload = old.struct_fields(&old_event.type_name);
        let new_payload = new.struct_fields(&new_event.type_name);
        let (Some((old_def, old_fields)), Some((new_def, new_fields))) = (old_payload, new_payload) else {
            return;
        };
        let find = |fields: &[Field], key: &str| fields.iter().find(|field| field.json_name == key).cloned();
        for (index, key) in old_event.forwarded_fields.iter().enumerate() {
            if new_event.forwarded_fields.contains(key) {
                continue;
            }
            let required = find(old_fields, key).is_some_and(|field| field.required && !field.nullable());
            let (compatibility, why) = if required {
                (Compatibility::Backward, "browsers on the old definitions count on it: it was required and not null")
            } else {
                (Compatibility::Full, "it was optional or nullable, so browsers already handle its absence")
            };
            self.push(
                (&old_file, &format!("/x-herald/notification/fields/{index}")),
                Audience::Browsers,
                Rule::FieldNoLongerForwarded,
                compatibility,
                format!("{key:?} is no longer forwarded in {:?}: {why}", new_event.notification),
            );
        }
        for (index, key) in new_event.forwarded_fields.iter().enumerate() {
            if old_event.forwarded_fields.contains(key) {
                continue;
            }
            let required = find(new_fields, key).is_some_and(|field| field.required && !field.nullable());
            let (compatibility, why) = if required {
                (
                    Compatibility::Forward,
                    "browsers on the old definitions ignore it; notifications sent before (and replayed from history) lack it",
                )
            } else {
                (Compatibility::Full, "browsers on the old definitions ignore it, and it is optional or nullable")
            };
            self.push(
                (&file, &format!("/x-herald/notification/fields/{index}")),
                Audience::Browsers,
                Rule::FieldForwarded,
                compatibility,
                format!("{key:?} is forwarded in {:?} from now on: {why}", new_event.notification),
            );
        }

        // The payload, field by field.
        let forwarding = |key: &str| {
            let (was, is) = (
                old_event.forwarded_fields.iter().any(|k| k == key),
                new_event.forwarded_fields.iter().any(|k| k == key),
            );
            (was && is, was != is)
        };
        let old_place_base = Place {
            file: old.label(&old_def.file),
            pointer: old_def.pointer.clone(),
            forwarded: false,
            forwarding_changed: false,
        };
        let new_place_base = Place {
            file: new.label(&new_def.file),
            pointer: new_def.pointer.clone(),
            forwarded: false,
            forwarding_changed: false,
        };
        self.fields(old_fields, new_fields, &old_place_base, &new_place_base, &forwarding, &[]);
    }

    /// Compares two named struct types reached from `place`, leaving out the keys in `skip`.
    fn structs(&mut self, old_name: &str, new_name: &str, place: &Place, skip: &[String]) {
        let key = (old_name.to_owned(), new_name.to_owned(), place.forwarded, place.forwarding_changed);
        if !self.visited.insert(key) {
            return;
        }
        let (old, new) = (self.old, self.new);
        let (Some((old_def, old_fields)), Some((new_def, new_fields))) =
            (old.struct_fields(old_name), new.struct_fields(new_name))
        else {
            return;
        };
        let flags = (place.forwarded, place.forwarding_changed);
        let old_base = Place {
            file: old.label(&old_def.file),
            pointer: old_def.pointer.clone(),
            forwarded: flags.0,
            forwarding_changed: flags.1,
        };
        let new_base = Place {
            file: new.label(&new_def.file),
            pointer: new_def.pointer.clone(),
            forwarded: flags.0,
            forwarding_changed: flags.1,
        };
        self.fields(old_fields, new_fields, &old_base, &new_base, &|_| flags, skip);
    }

    /// Compares the properties of two objects. `forwarding` tells, for a key, whether it is
    /// forwarded on both sides and whether its forwarding changed.
    fn fields(
        &mut self,
        old_fields: &[Field],
        new_fields: &[Field],
        old_base: &Place,
        new_base: &Place,
        forwarding: &dyn Fn(&str) -> (bool, bool),
        skip: &[String],
    ) {
        let located = |base: &Place, key: &str| {
            let (forwarded, forwarding_changed) = forwarding(key);
            Place { forwarded, forwarding_changed, ..base.child("properties").child(key) }
        };
        for old_field in old_fields {
            if skip.contains(&old_field.json_name) || new_fields.iter().any(|f| f.json_name == old_field.json_name) {
                continue;
            }
            let place = located(old_base, &old_field.json_name);
            let (compatibility, why) = if old_field.required {
                (
                    Compatibility::Backward,
                    "herald on the old definitions requires it, and producers on the new ones may leave it out",
                )
            } else {
                (Compatibility::Full, "it was optional; a key a schema does not declare is accepted and ignored")
            };
            self.value_change(
                &place,
                Rule::FieldRemoved,
                compatibility,
                format!("{:?} is gone: {why}", old_field.json_name),
            );
        }
        for new_field in new_fields {
            if skip.contains(&new_field.json_name) {
                continue;
            }
            let place = located(new_base, &new_field.json_name);
            let Some(old_field) = old_fields.iter().find(|f| f.json_name == new_field.json_name) else {
                let (compatibility, why) = if new_field.required {
                    (Compatibility::Forward, "it is required, and writers on the old definitions do not send it")
                } else {
                    (Compatibility::Full, "it is optional")
                };
                self.value_change(
                    &place,
                    Rule::FieldAdded,
                    compatibility,
                    format!("new property {:?}: {why}", new_field.json_name),
                );
                continue;
            };
            let name = &new_field.json_name;
            match (old_field.required, new_field.required) {
                (false, true) => self.value_change(
                    &place,
                    Rule::FieldBecameRequired,
                    Compatibility::Forward,
                    format!("{name:?} is required now: writers on the old definitions may leave it out"),
                ),
                (true, false) => self.value_change(
                    &place,
                    Rule::FieldBecameOptional,
                    Compatibility::Backward,
                    format!("{name:?} is optional now: readers on the old definitions count on it being there"),
                ),
                _ => {}
            }
            self.types(&old_field.ty, &new_field.ty, &place, name);
        }
    }

    /// Compares two value types at `place`; `what` names the value in messages.
    fn types(&mut self, old_ty: &Ty, new_ty: &Ty, place: &Place, what: &str) {
        let (old, new) = (self.old, self.new);
        match (old_ty, new_ty) {
            (Ty::Nullable(old_inner), Ty::Nullable(new_inner)) => self.types(old_inner, new_inner, place, what),
            (Ty::Nullable(old_inner), new_inner) => {
                self.value_change(
                    place,
                    Rule::FieldNoLongerNullable,
                    Compatibility::Forward,
                    format!("{what:?} may no longer be null: writers on the old definitions may send null"),
                );
                self.types(old_inner, new_inner, place, what);
            }
            (old_inner, Ty::Nullable(new_inner)) => {
                self.value_change(
                    place,
                    Rule::FieldBecameNullable,
                    Compatibility::Backward,
                    format!("{what:?} may be null now: readers on the old definitions do not expect null"),
                );
                self.types(old_inner, new_inner, place, what);
            }
            (Ty::Array(old_item), Ty::Array(new_item)) => {
                self.types(old_item, new_item, &place.child("items"), &format!("{what}[]"))
            }
            (Ty::Map(old_value), Ty::Map(new_value)) => {
                self.types(old_value, new_value, &place.child("additionalProperties"), &format!("{what}{{}}"))
            }
            (Ty::Named(old_name), Ty::Named(new_name))
                if old.struct_fields(old_name).is_some() && new.struct_fields(new_name).is_some() =>
            {
                self.structs(old_name, new_name, place, &[]);
            }
            (Ty::Named(old_name), Ty::Named(new_name))
                if enum_values(old.model, old_name).is_some() && enum_values(new.model, new_name).is_some() =>
            {
                self.enums(old_name, new_name, place);
            }
            _ if same_shape(old.model, old_ty, new.model, new_ty) => {}
            _ => {
                let backward = accepts(new.model, new_ty, old.model, old_ty, 0);
                let forward = accepts(old.model, old_ty, new.model, new_ty, 0);
                let how = match (backward, forward) {
                    (true, true) => "both accept the same values",
                    (true, false) => "widened: readers on the old definitions reject some new values",
                    (false, true) => "narrowed: readers on the new definitions reject some old values",
                    (false, false) => "replaced: neither side reads the other's values",
                };
                self.value_change(
                    place,
                    Rule::TypeChanged,
                    Compatibility::of(backward, forward),
                    format!(
                        "{what:?} was {} and is {}: {how}",
                        describe(old.model, old_ty),
                        describe(new.model, new_ty)
                    ),
                );
            }
        }
    }

    fn enums(&mut self, old_name: &str, new_name: &str, place: &Place) {
        let key = (old_name.to_owned(), new_name.to_owned(), place.forwarded, place.forwarding_changed);
        if !self.visited.insert(key) {
            return;
        }
        let (old, new) = (self.old, self.new);
        let (Some((old_def, old_values)), Some((new_def, new_values))) =
            (enum_values(old.model, old_name), enum_values(new.model, new_name))
        else {
            return;
        };
        let base = |side: Side<'_>, def: &TypeDef| Place {
            file: side.label(&def.file),
            pointer: def.pointer.clone(),
            forwarded: place.forwarded,
            forwarding_changed: place.forwarding_changed,
        };
        let (old_base, new_base) = (base(old, old_def), base(new, new_def));
        for (index, value) in old_values.iter().enumerate() {
            if !new_values.contains(value) {
                self.value_change(
                    &old_base.child("enum").child(&index.to_string()),
                    Rule::EnumValueRemoved,
                    Compatibility::Full,
                    format!(
                        "{value:?} left enum {new_name}: enums are open, so it is still read as an unrecognized value"
                    ),
                );
            }
        }
        for (index, value) in new_values.iter().enumerate() {
            if !old_values.contains(value) {
                self.value_change(
                    &new_base.child("enum").child(&index.to_string()),
                    Rule::EnumValueAdded,
                    Compatibility::Full,
                    format!("{value:?} joined enum {new_name}: enums are open, so readers on the old definitions read it as an unrecognized value"),
                );
            }
        }
    }
}

fn event_types(event: &EventDef) -> BTreeSet<String> {
    std::iter::once(event.event_type.clone()).chain(event.aliases.iter().cloned()).collect()
}

fn enum_values<'m>(model: &'m Model, name: &str) -> Option<(&'m TypeDef, Vec<String>)> {
    let def = model.types.get(name)?;
    match &def.kind {
        TypeKind::Enum(values) => Some((def, values.iter().map(|value| value.value.clone()).collect())),
        TypeKind::Struct(_) => None,
    }
}

/// Whether two types are the same apart from names (a renamed type is the same on the wire).
fn same_shape(old: &Model, old_ty: &Ty, new: &Model, new_ty: &Ty) -> bool {
    match (old_ty, new_ty) {
        (Ty::Named(a), Ty::Named(b)) => {
            let kinds = (old.types.get(a).map(|def| &def.kind), new.types.get(b).map(|def| &def.kind));
            matches!(
                kinds,
                (Some(TypeKind::Struct(_)), Some(TypeKind::Struct(_)))
                    | (Some(TypeKind::Enum(_)), Some(TypeKind::Enum(_)))
            )
        }
        (Ty::Nullable(a), Ty::Nullable(b)) | (Ty::Array(a), Ty::Array(b)) | (Ty::Map(a), Ty::Map(b)) => {
            same_shape(old, a, new, b)
        }
        _ => old_ty == new_ty,
    }
}

/// Whether a reader of `reader` (a type of `reader_model`) accepts every value a writer of `writer`
/// (a type of `writer_model`) may send. Enums are open: they accept any string.
fn accepts(reader_model: &Model, reader: &Ty, writer_model: &Model, writer: &Ty, depth: usize) -> bool {
    // The loader refuses recursive types; the bound only keeps a bad model from looping.
    if depth > 64 {
        return false;
    }
    let kind = |model: &Model, name: &str| model.types.get(name).map(|def| def.kind.clone());
    let is_stringish = |model: &Model, ty: &Ty| match ty {
        Ty::String | Ty::Uuid | Ty::Timestamp => true,
        Ty::Named(name) => matches!(kind(model, name), Some(TypeKind::Enum(_))),
        _ => false,
    };
    let next = depth + 1;
    match (reader, writer) {
        (Ty::Any, _) => true,
        (Ty::Nullable(r), Ty::Nullable(w)) => accepts(reader_model, r, writer_model, w, next),
        (Ty::Nullable(r), w) => accepts(reader_model, r, writer_model, w, next),
        (_, Ty::Nullable(_)) => false,
        (Ty::Uuid, Ty::Uuid)
        | (Ty::Timestamp, Ty::Timestamp)
        | (Ty::Integer, Ty::Integer)
        | (Ty::Boolean, Ty::Boolean) => true,
        (Ty::Number, Ty::Number | Ty::Integer) => true,
        (r, w) if is_stringish(reader_model, r) && !matches!(r, Ty::Uuid | Ty::Timestamp) => {
            is_stringish(writer_model, w)
        }
        (Ty::Object, Ty::Object | Ty::Map(_)) => true,
        (Ty::Object, Ty::Named(name)) => matches!(kind(writer_model, name), Some(TypeKind::Struct(_))),
        (Ty::Map(r), Ty::Map(w)) | (Ty::Array(r), Ty::Array(w)) => accepts(reader_model, r, writer_model, w, next),
        (Ty::Map(r), Ty::Object) => matches!(**r, Ty::Any),
        (Ty::Named(r), Ty::Named(w)) => match (kind(reader_model, r), kind(writer_model, w)) {
            (Some(TypeKind::Struct(reader_fields)), Some(TypeKind::Struct(writer_fields))) => {
                reader_fields.iter().all(|rf| match writer_fields.iter().find(|wf| wf.json_name == rf.json_name) {
                    Some(wf) => {
                        (wf.required || !rf.required) && accepts(reader_model, &rf.ty, writer_model, &wf.ty, next)
                    }
                    None => !rf.required,
                })
            }
            _ => false,
        },
        _ => false,
    }
}

/// A type in words, for messages.
fn describe(model: &Model, ty: &Ty) -> String {
    match ty {
        Ty::String => "a string".to_owned(),
        Ty::Timestamp => "a date-time string".to_owned(),
        Ty::Uuid => "a uuid string".to_owned(),
        Ty::Integer => "an integer".to_owned(),
        Ty::Number => "a number".to_owned(),
        Ty::Boolean => "a boolean".to_owned(),
        Ty::Any => "any value".to_owned(),
        Ty::Object => "an object".to_owned(),
        Ty::Map(value) => format!("a map of {}", describe(model, value)),
        Ty::Array(item) => format!("an array of {}", describe(model, item)),
        Ty::Named(name) => match model.types.get(name).map(|def| &def.kind) {
            Some(TypeKind::Enum(_)) => format!("the enum {name}"),
            _ => format!("the object {name}"),
        },
        Ty::Nullable(inner) => format!("{} or null", describe(model, inner)),
    }
}

/// One acknowledged breaking change, from the acknowledgement file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The definition file (its name; a folder before it is ignored).
    pub file: String,
    /// The JSON pointer, exactly as the report prints it.
    pub pointer: String,
    /// Only this audience, when given.
    pub audience: Option<Audience>,
    /// Only this rule, when given.
    pub rule: Option<Rule>,
    /// Why the break is accepted.
    pub reason: String,
}

impl Ack {
    /// Whether this acknowledgement covers `change`.
    pub fn covers(&self, change: &Change) -> bool {
        file_name(&self.file) == change.file_name()
            && self.pointer == change.pointer
            && self.audience.is_none_or(|audience| audience == change.audience)
            && self.rule.is_none_or(|rule| rule == change.rule)
    }
}

/// Reads an acknowledgement file (TOML, `[[ack]]` tables with `file`, `pointer`, `reason` and
/// optionally `audience` and `rule`); `label` names the file in errors.
pub fn parse_acks(text: &str, label: &str) -> Result<Vec<Ack>, String> {
    let table: toml::Table = text.parse().map_err(|error| format!("{label}: not valid TOML: {error}"))?;
    let mut acks = Vec::new();
    for (key, value) in &table {
        if key != "ack" {
            return Err(format!("{label}: unknown key {key:?}; write each acknowledgement as an [[ack]] table"));
        }
        let Some(items) = value.as_array() else {
            return Err(format!("{label}: `ack` must be a list of tables; write [[ack]], not [ack]"));
        };
        for (index, item) in items.iter().enumerate() {
            let at = format!("{label}: [[ack]] number {}", index + 1);
            let Some(item) = item.as_table() else {
                return Err(format!("{at} is not a table"));
            };
            for key in item.keys() {
                if !["file", "pointer", "reason", "audience", "rule"].contains(&key.as_str()) {
                    return Err(format!(
                        "{at}: unknown key {key:?}; the keys are file, pointer, reason, audience and rule"
                    ));
                }
            }
            let text = |key: &str| item.get(key).and_then(toml::Value::as_str).map(str::to_owned);
            let file =
                text("file").filter(|file| !file.is_empty()).ok_or_else(|| format!("{at}: `file` is missing"))?;
            let pointer =
                text("pointer").ok_or_else(|| format!("{at}: `pointer` is missing (\"\" for the whole file)"))?;
            let reason = text("reason").filter(|reason| !reason.trim().is_empty()).ok_or_else(|| {
                format!("{at} ({file}#{pointer}): `reason` is missing; say why the break is acceptable")
            })?;
            let audience = match text("audience") {
                None => None,
                Some(name) => Some(
                    Audience::from_name(&name)
                        .ok_or_else(|| format!("{at}: unknown audience {name:?}; use \"herald\" or \"browsers\""))?,
                ),
            };
            let rule = match text("rule") {
                None => None,
                Some(name) => Some(
                    Rule::ALL
                        .iter()
                        .copied()
                        .find(|rule| rule.as_str() == name)
                        .ok_or_else(|| format!("{at}: unknown rule {name:?}; see docs/event-definitions.md"))?,
                ),
            };
            acks.push(Ack { file, pointer, audience, rule, reason });
        }
    }
    Ok(acks)
}
