//! Reading `event-defs/`: discovery, JSON parsing, `$ref` resolution across files, naming, and the
//! checks that turn a folder of schemas into a [`Model`] or a list of every problem in it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use serde_json::{Map, Value};

use crate::diagnostic::{Diagnostics, pointer_segment};
use crate::model::{EnumValue, EnvelopeDef, EventDef, Example, Field, Model, Ty, TypeDef, TypeKind};
use crate::names;
use crate::rules;

/// Keywords allowed anywhere: they only describe.
const ANNOTATIONS: &[&str] = &["$schema", "$id", "$comment", "title", "description", "default", "examples"];
/// Keywords the generator understands.
const STRUCTURAL: &[&str] = &[
    "type",
    "enum",
    "format",
    "items",
    "properties",
    "required",
    "additionalProperties",
    "minimum",
    "maximum",
    "$ref",
    "anyOf",
];
/// Keywords allowed only at a file's root.
const ROOT_ONLY: &[&str] = &["definitions", "x-herald"];

/// Type names that Rust reserves or that the generated code defines itself, with where each is
/// defined; a schema type may not take them. (Every other Rust keyword is lowercase, and type
/// names start with an uppercase letter.)
const RESERVED_TYPE_NAMES: &[(&str, &str)] = &[
    ("Self", "a Rust keyword"),
    ("Event", "the generated dispatch enum"),
    ("Unknown", "the variant of `Event` for an event type no definition claims"),
    ("EventHandler", "the generated handler trait"),
    ("EventInfo", "the catalogue row of herald-runtime"),
    ("Envelope", "a name the generated documentation uses for the envelope"),
    ("Dispatched", "a name reserved for dispatch results"),
    ("Open", "the TypeScript open-enum helper"),
    ("Notification", "the TypeScript union of every notification"),
    ("NotificationName", "the TypeScript list of notification names"),
    ("NotificationOf", "the TypeScript notification lookup"),
    ("NotificationMessage", "the TypeScript shape every notification shares"),
    ("NotificationCategory", "the TypeScript list of categories"),
    ("NotificationPriority", "the TypeScript list of priorities"),
    ("EventType", "the TypeScript list of canonical event types"),
];

/// Enum variant names the generated open enums use themselves.
const RESERVED_VARIANTS: &[(&str, &str)] =
    &[("Self", "a Rust keyword"), ("Unrecognized", "the variant that keeps values added after generation")];

/// Notification names whose handler method the generated trait already has.
const RESERVED_NOTIFICATIONS: &[(&str, &str)] =
    &[("unknown", "`handle_unknown` handles event types no definition claims")];

/// The largest integer a browser's `JSON.parse` represents exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

const SUBSET_HELP: &str = "herald supports a draft-07 subset; see docs/event-definitions.md";

/// Reads every `*.json` file directly inside `dir`, in sorted order, and builds the model.
///
/// Every problem is reported, each with its file and JSON pointer; nothing panics.
pub fn load(dir: &Path) -> Result<Model, Diagnostics> {
    let folder = dir.file_name().map_or_else(|| dir.display().to_string(), |name| name.to_string_lossy().into_owned());
    let mut diagnostics = Diagnostics::default();
    let mut documents = BTreeMap::new();
    match discover(dir) {
        Ok(files) => {
            for file in files {
                let label = format!("{folder}/{file}");
                match fs::read_to_string(dir.join(&file)) {
                    Err(error) => diagnostics.push(&label, "", format!("cannot read the file: {error}"), ""),
                    Ok(text) => match serde_json::from_str::<Value>(&text) {
                        Ok(value) => {
                            documents.insert(file, value);
                        }
                        Err(error) => diagnostics.push(
                            &label,
                            "",
                            format!("not valid JSON: {error}"),
                            "fix the syntax at that line and column",
                        ),
                    },
                }
            }
        }
        Err(error) => diagnostics.push(
            &folder,
            "",
            format!("cannot list the definitions folder {}: {error}", dir.display()),
            "run from the workspace root, or pass the path of event-defs/",
        ),
    }
    let files = documents.keys().map(|file| format!("{folder}/{file}")).collect();
    let mut loader = Loader { folder, documents, diagnostics, ..Loader::default() };
    loader.run();
    let Loader { diagnostics, types, events, envelope, .. } = loader;
    let envelope =
        envelope.unwrap_or(EnvelopeDef { type_name: String::new(), payload_field: String::new(), example: None });
    diagnostics.into_result(Model { events, types, envelope, files })
}

/// The `*.json` files directly inside `dir`, sorted by name.
pub(crate) fn discover(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && entry.file_type()?.is_file() {
            files.push(name);
        }
    }
    files.sort();
    Ok(files)
}

#[derive(Default)]
struct Loader {
    /// The folder's name, prefixed to file names in diagnostics.
    folder: String,
    /// Parsed files by file name.
    documents: BTreeMap<String, Value>,
    diagnostics: Diagnostics,
    /// Named types by name.
    types: BTreeMap<String, TypeDef>,
    /// Named types by the location of their schema, so one `$ref` target is one type.
    by_location: BTreeMap<(String, String), String>,
    /// Locations being converted, to report recursive references instead of looping.
    in_progress: BTreeSet<(String, String)>,
    events: Vec<EventDef>,
    /// The `examples` of each event in `events`, read once the envelope is known.
    raw_examples: Vec<Value>,
    envelope: Option<EnvelopeDef>,
}

/// Where a schema sits, for diagnostics and naming.
#[derive(Clone)]
struct At<'a> {
    file: &'a str,
    pointer: String,
}

impl At<'_> {
    fn child(&self, segment: &str) -> Self {
        At { file: self.file, pointer: format!("{}/{}", self.pointer, pointer_segment(segment)) }
    }
}

impl Loader {
    fn label(&self, file: &str) -> String {
        format!("{}/{file}", self.folder)
    }

    fn error(&mut self, at: &At<'_>, message: impl Into<String>, help: impl Into<String>) {
        let label = self.label(at.file);
        self.diagnostics.push(&label, &at.pointer, message, help);
    }

    fn run(&mut self) {
        let files: Vec<String> = self.documents.keys().cloned().collect();
        for file in &files {
            let at = At { file, pointer: String::new() };
            let Some(root) = self.documents.get(file).cloned() else {
                continue;
            };
            if !root.is_object() {
                self.error(&at, "a definition file must hold one JSON object (a schema)", SUBSET_HELP);
                continue;
            }
            self.check_draft(&at, &root);
            let title = root.get("title").and_then(Value::as_str).map(str::to_owned);
            match &title {
                Some(title) => {
                    self.type_at(&at, &root, title);
                }
                None => self.error(
                    &at,
                    "the schema has no `title`",
                    "give the root schema a `title`: it names the generated type (for example \"BatchFileAddedV1\")",
                ),
            }
            if let Some(definitions) = root.get("definitions") {
                match definitions.as_object() {
                    Some(definitions) => {
                        for (name, schema) in definitions {
                            let at = at.child("definitions").child(name);
                            let hint = schema.get("title").and_then(Value::as_str).unwrap_or(name).to_owned();
                            self.type_at(&at, schema, &hint);
                        }
                    }
                    None => self.error(&at.child("definitions"), "`definitions` must be an object", SUBSET_HELP),
                }
            }
            if let (Some(extension), Some(title)) = (root.get("x-herald"), title) {
                self.read_extension(&at, &root, extension, &title);
            }
        }
        self.check_events();
        self.read_examples();
    }

    fn check_draft(&mut self, at: &At<'_>, root: &Value) {
        if let Some(schema) = root.get("$schema") {
            let draft07 = schema
                .as_str()
                .is_some_and(|uri| uri.trim_end_matches('#') == "http://json-schema.org/draft-07/schema");
            if !draft07 {
                self.error(
                    &at.child("$schema"),
                    format!("unsupported `$schema` {schema}"),
                    "use \"http://json-schema.org/draft-07/schema#\"",
                );
            }
        }
    }

    /// Converts the schema at `at` to a type, naming it `hint` (or its `title`) when it is an object
    /// with properties or an enum. One location always gives one type.
    fn type_at(&mut self, at: &At<'_>, schema: &Value, hint: &str) -> Ty {
        let location = (at.file.to_owned(), at.pointer.clone());
        if let Some(name) = self.by_location.get(&location) {
            return Ty::Named(name.clone());
        }
        if !self.in_progress.insert(location.clone()) {
            self.error(
                at,
                "the schema refers to itself",
                "recursive types are not supported; break the cycle with a free-form object",
            );
            return Ty::Any;
        }
        let ty = self.convert(at, schema, hint);
        self.in_progress.remove(&location);
        ty
    }

    /// Converts one schema. Objects with properties and enums become named types.
    fn convert(&mut self, at: &At<'_>, schema: &Value, hint: &str) -> Ty {
        let schema = match schema {
            Value::Bool(true) => return Ty::Any,
            Value::Object(schema) => schema,
            _ => {
                self.error(at, "a schema must be an object", SUBSET_HELP);
                return Ty::Any;
            }
        };
        self.check_keywords(at, schema);
        if let Some(reference) = schema.get("$ref") {
            return self.reference(at, reference);
        }
        if let Some(any_of) = schema.get("anyOf") {
            return self.nullable_any_of(at, any_of, hint);
        }
        let (type_name, nullable) = match schema.get("type") {
            None if schema.contains_key("enum") => ("string".to_owned(), false),
            None if schema.contains_key("properties") => ("object".to_owned(), false),
            None => return Ty::Any,
            Some(Value::String(name)) => (name.clone(), false),
            Some(Value::Array(names)) => {
                let names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
                match names.as_slice() {
                    [name, "null"] | ["null", name] if *name != "null" => ((*name).to_owned(), true),
                    _ => {
                        self.error(
                            &at.child("type"),
                            "a list of types must be exactly one type and \"null\"",
                            "write [\"string\", \"null\"] for a nullable string; other unions are not supported",
                        );
                        return Ty::Any;
                    }
                }
            }
            Some(_) => {
                self.error(&at.child("type"), "`type` must be a string or a list", SUBSET_HELP);
                return Ty::Any;
            }
        };
        let ty = match type_name.as_str() {
            "string" => self.string(at, schema, hint),
            "integer" => {
                self.check_integer_bounds(at, schema);
                Ty::Integer
            }
            "number" => Ty::Number,
            "boolean" => Ty::Boolean,
            "array" => match schema.get("items") {
                Some(items) => {
                    let item = self.convert(&at.child("items"), items, &format!("{hint}Item"));
                    Ty::Array(Box::new(item))
                }
                None => {
                    self.error(
                        at,
                        "an array needs `items`",
                        "say what the array holds, for example {\"type\": \"string\"}",
                    );
                    Ty::Any
                }
            },
            "object" => self.object(at, schema, hint),
            "null" => {
                self.error(&at.child("type"), "a schema that only allows null is not supported", SUBSET_HELP);
                Ty::Any
            }
            other => {
                self.error(&at.child("type"), format!("unknown type {other:?}"), SUBSET_HELP);
                Ty::Any
            }
        };
        if nullable { Ty::Nullable(Box::new(ty)) } else { ty }
    }

    fn check_keywords(&mut self, at: &At<'_>, schema: &Map<String, Value>) {
        let root = at.pointer.is_empty();
        for key in schema.keys() {
            let known = ANNOTATIONS.contains(&key.as_str())
                || STRUCTURAL.contains(&key.as_str())
                || (root && ROOT_ONLY.contains(&key.as_str()));
            if known {
                continue;
            }
            let help = if ROOT_ONLY.contains(&key.as_str()) {
                "this keyword is only allowed at the root of a file".to_owned()
            } else {
                format!("remove it, or express the constraint with supported keywords; {SUBSET_HELP}")
            };
            self.error(&at.child(key), format!("unsupported keyword `{key}`"), help);
        }
        if schema.contains_key("$ref") {
            let extra: Vec<&String> =
                schema.keys().filter(|key| *key != "$ref" && !ANNOTATIONS.contains(&key.as_str())).collect();
            if !extra.is_empty() {
                self.error(
                    at,
                    format!("`$ref` next to {extra:?}: draft-07 ignores keywords beside `$ref`"),
                    "move the constraints into the referenced schema",
                );
            }
        }
    }

    fn reference(&mut self, at: &At<'_>, reference: &Value) -> Ty {
        let Some(reference) = reference.as_str() else {
            self.error(&at.child("$ref"), "`$ref` must be a string", SUBSET_HELP);
            return Ty::Any;
        };
        let (file, fragment) = match reference.split_once('#') {
            Some((file, fragment)) => (file, fragment),
            None => (reference, ""),
        };
        let file = if file.is_empty() { at.file.to_owned() } else { file.trim_start_matches("./").to_owned() };
        let Some(document) = self.documents.get(&file).cloned() else {
            let known: Vec<&String> = self.documents.keys().collect();
            self.error(
                &at.child("$ref"),
                format!("`$ref` {reference:?} names a file that is not in {}/", self.folder),
                format!("refer to one of {known:?}"),
            );
            return Ty::Any;
        };
        let target = if fragment.is_empty() { Some(&document) } else { document.pointer(fragment) };
        let Some(target) = target.cloned() else {
            self.error(
                &at.child("$ref"),
                format!("`$ref` {reference:?}: {fragment:?} does not exist in {file}"),
                "point at an existing schema, for example \"shared.json#/definitions/Name\"",
            );
            return Ty::Any;
        };
        let hint = target
            .get("title")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| fragment.rsplit('/').next().filter(|segment| !segment.is_empty()).map(str::to_owned))
            .unwrap_or_default();
        self.type_at(&At { file: &file, pointer: fragment.to_owned() }, &target, &hint)
    }

    fn nullable_any_of(&mut self, at: &At<'_>, any_of: &Value, hint: &str) -> Ty {
        let is_null = |schema: &Value| schema.get("type").and_then(Value::as_str) == Some("null");
        match any_of.as_array().map(Vec::as_slice) {
            Some([first, second]) if is_null(second) != is_null(first) => {
                let (index, schema) = if is_null(second) { (0, first) } else { (1, second) };
                let inner = self.convert(&at.child("anyOf").child(&index.to_string()), schema, hint);
                Ty::Nullable(Box::new(inner))
            }
            _ => {
                self.error(
                    &at.child("anyOf"),
                    "`anyOf` is supported only as [schema, {\"type\": \"null\"}]",
                    "use it to make a `$ref` nullable; other unions cannot be expressed in both Rust and TypeScript",
                );
                Ty::Any
            }
        }
    }

    fn string(&mut self, at: &At<'_>, schema: &Map<String, Value>, hint: &str) -> Ty {
        if let Some(values) = schema.get("enum") {
            return self.enumeration(at, schema, values, hint);
        }
        match schema.get("format").and_then(Value::as_str) {
            Some("date-time") => Ty::Timestamp,
            Some("uuid") => Ty::Uuid,
            _ => Ty::String,
        }
    }

    fn enumeration(&mut self, at: &At<'_>, schema: &Map<String, Value>, values: &Value, hint: &str) -> Ty {
        let Some(values) = values.as_array().filter(|values| !values.is_empty()) else {
            self.error(&at.child("enum"), "`enum` must be a non-empty list of strings", SUBSET_HELP);
            return Ty::String;
        };
        let mut enum_values: Vec<EnumValue> = Vec::new();
        for (index, value) in values.iter().enumerate() {
            let at = at.child("enum").child(&index.to_string());
            let Some(value) = value.as_str() else {
                self.error(&at, "enum values must be strings", "numeric and mixed enums are not supported");
                continue;
            };
            let variant = names::enum_variant(value);
            if variant.is_empty() {
                self.error(&at, format!("enum value {value:?} has no letters or digits"), "use a value with a name");
                continue;
            }
            if let Some(other) = enum_values.iter().find(|other| other.variant == variant || other.value == value) {
                self.error(
                    &at,
                    format!("enum value {value:?} gives the variant `{variant}`, as {:?} does", other.value),
                    "enum values must differ in more than case and punctuation",
                );
                continue;
            }
            if let Some((_, reason)) = RESERVED_VARIANTS.iter().find(|(name, _)| *name == variant) {
                self.error(
                    &at,
                    format!("enum value {value:?} gives the variant `{variant}`, which is reserved: {reason}"),
                    "rename the value; herald never renames behind your back",
                );
                continue;
            }
            enum_values.push(EnumValue { value: value.to_owned(), variant });
        }
        self.named(at, schema, hint, TypeKind::Enum(enum_values))
    }

    fn object(&mut self, at: &At<'_>, schema: &Map<String, Value>, hint: &str) -> Ty {
        let additional = schema.get("additionalProperties");
        let Some(properties) = schema.get("properties") else {
            return match additional {
                Some(value @ Value::Object(_)) => {
                    let value = self.convert(&at.child("additionalProperties"), value, &format!("{hint}Value"));
                    Ty::Map(Box::new(value))
                }
                Some(Value::Bool(false)) => {
                    self.error(
                        &at.child("additionalProperties"),
                        "an object with no properties that allows no additional properties can only be {}",
                        "declare its `properties`",
                    );
                    Ty::Object
                }
                _ => Ty::Object,
            };
        };
        if let Some(additional) = additional {
            let message = match additional {
                Value::Bool(true) => None,
                Value::Bool(false) => {
                    Some("herald accepts keys a schema does not declare, because producers add fields over time")
                }
                _ => Some("an object with `properties` cannot also type its additional properties"),
            };
            if let Some(message) = message {
                self.error(&at.child("additionalProperties"), message, "remove `additionalProperties`");
            }
        }
        let Some(properties) = properties.as_object() else {
            self.error(&at.child("properties"), "`properties` must be an object", SUBSET_HELP);
            return Ty::Object;
        };
        let required: Vec<String> = match schema.get("required") {
            None => Vec::new(),
            Some(Value::Array(names)) if names.iter().all(Value::is_string) => {
                names.iter().filter_map(Value::as_str).map(str::to_owned).collect()
            }
            Some(_) => {
                self.error(&at.child("required"), "`required` must be a list of property names", SUBSET_HELP);
                Vec::new()
            }
        };
        for (index, name) in required.iter().enumerate() {
            if !properties.contains_key(name) {
                self.error(
                    &at.child("required").child(&index.to_string()),
                    format!("{name:?} is required but is not a property"),
                    "add it to `properties` or remove it from `required`",
                );
            }
        }
        let type_name = schema.get("title").and_then(Value::as_str).unwrap_or(hint).to_owned();
        // Register the name before converting fields so that nested types are named after it.
        let mut fields: Vec<Field> = Vec::new();
        for (json_name, property) in properties {
            let property_at = at.child("properties").child(json_name);
            let (ident, _) = names::field_ident(json_name);
            if let Some(other) = fields.iter().find(|field| field.ident == ident) {
                self.error(
                    &property_at,
                    format!("{json_name:?} and {:?} both become the Rust field `{ident}`", other.json_name),
                    "rename one of the keys",
                );
                continue;
            }
            let field_hint = format!("{type_name}{}", names::to_pascal_case(json_name));
            let ty = self.convert(&property_at, property, &field_hint);
            let description = property.get("description").and_then(Value::as_str).map(str::to_owned);
            fields.push(Field {
                json_name: json_name.clone(),
                ident,
                ty,
                required: required.contains(json_name),
                description,
            });
        }
        self.named(at, schema, hint, TypeKind::Struct(fields))
    }

    /// Registers a named type, refusing names that are invalid, reserved or already taken.
    fn named(&mut self, at: &At<'_>, schema: &Map<String, Value>, hint: &str, kind: TypeKind) -> Ty {
        let name = schema.get("title").and_then(Value::as_str).unwrap_or(hint).to_owned();
        if !names::is_type_name(&name) {
            self.error(
                at,
                format!("{name:?} cannot name a type"),
                "give the schema a `title` of ASCII letters and digits starting with an uppercase letter",
            );
            return Ty::Any;
        }
        if let Some((_, reason)) = RESERVED_TYPE_NAMES.iter().find(|(reserved, _)| *reserved == name) {
            let all: Vec<&str> = RESERVED_TYPE_NAMES.iter().map(|(reserved, _)| *reserved).collect();
            self.error(
                at,
                format!("the type name {name:?} is reserved: {reason}"),
                format!("choose another `title` (or property name, for an untitled nested type); reserved: {all:?}"),
            );
            return Ty::Any;
        }
        if let Some(existing) = self.types.get(&name) {
            let (file, pointer) = (self.label(&existing.file), existing.pointer.clone());
            self.error(
                at,
                format!("two different schemas are both named {name:?}; the other is {file}#{pointer}"),
                "give one of them a different `title`, or `$ref` the same definition from both places",
            );
            return Ty::Named(name);
        }
        let description = schema.get("description").and_then(Value::as_str).map(str::to_owned);
        self.by_location.insert((at.file.to_owned(), at.pointer.clone()), name.clone());
        self.types.insert(
            name.clone(),
            TypeDef { name: name.clone(), file: at.file.to_owned(), pointer: at.pointer.clone(), description, kind },
        );
        Ty::Named(name)
    }

    fn check_integer_bounds(&mut self, at: &At<'_>, schema: &Map<String, Value>) {
        for keyword in ["minimum", "maximum"] {
            if let Some(bound) = schema.get(keyword)
                && bound.as_f64().is_some_and(|bound| bound.abs() > MAX_SAFE_INTEGER)
            {
                self.error(
                    &at.child(keyword),
                    format!(
                        "an integer {keyword} of {bound} is beyond what a browser's JSON.parse keeps exact (2^53 - 1)"
                    ),
                    "declare values that may exceed 2^53 - 1 as strings",
                );
            }
        }
    }

    fn read_extension(&mut self, at: &At<'_>, root: &Value, extension: &Value, title: &str) {
        let at = at.child("x-herald");
        let Some(extension) = extension.as_object() else {
            self.error(&at, "`x-herald` must be an object", "see docs/event-definitions.md");
            return;
        };
        if let Some(envelope) = extension.get("envelope") {
            self.read_envelope(&at, root, envelope, title);
            self.check_keys(&at, extension, &["envelope"]);
            return;
        }
        let mut reader = Reader { loader: self, at: at.clone() };
        let event = reader.object(extension, "event", true);
        let notification = reader.object(extension, "notification", true);
        let recipient = reader.object(extension, "recipient", true);
        let owner = reader.object(extension, "batch_owner", false);
        let dedupe_ttl_seconds = match extension.get("dedupe_ttl_seconds") {
            None => rules::DEFAULT_DEDUPE_TTL_SECONDS,
            Some(value) => match value.as_u64().map(rules::dedupe_ttl_seconds) {
                Some(Ok(ttl)) => ttl,
                Some(Err(message)) => {
                    self.error(&at.child("dedupe_ttl_seconds"), message, "write a positive whole number of seconds");
                    rules::DEFAULT_DEDUPE_TTL_SECONDS
                }
                None => {
                    self.error(&at.child("dedupe_ttl_seconds"), "must be a positive whole number of seconds", "");
                    rules::DEFAULT_DEDUPE_TTL_SECONDS
                }
            },
        };
        self.check_keys(&at, extension, &["event", "notification", "recipient", "batch_owner", "dedupe_ttl_seconds"]);
        let (Some(event), Some(notification), Some(recipient)) = (event, notification, recipient) else {
            return;
        };
        let mut reader = Reader { loader: self, at: at.child("event") };
        let event_type = reader.string(&event, "event_type", true);
        let aliases = reader.strings(&event, "aliases");
        let topics = reader.strings(&event, "topics");
        let handling = match reader.string(&event, "handling", false).as_deref().map(rules::handling) {
            None => rules::DEFAULT_HANDLING,
            Some(Ok(handling)) => handling,
            Some(Err(message)) => {
                self.error(&at.child("event").child("handling"), message, "see docs/event-definitions.md");
                rules::DEFAULT_HANDLING
            }
        };
        if event.contains_key("topic") {
            self.error(
                &at.child("event").child("topic"),
                "`topic` is not a key of `event`: an event lists its topics",
                "write \"topics\": [\"the.topic.v1\"], with every topic producers publish the event on",
            );
        } else if topics.is_empty() {
            self.error(
                &at.child("event"),
                "`topics` is missing or empty",
                "list the Kafka topics the event is published on: \"topics\": [\"the.topic.v1\"]",
            );
        }
        let mut seen_topics = BTreeSet::new();
        for (index, topic) in topics.iter().enumerate() {
            if !seen_topics.insert(topic) {
                let at = at.child("event").child("topics").child(&index.to_string());
                self.error(&at, format!("topic {topic:?} is listed twice"), "list each topic once");
            }
        }
        self.check_keys(&at.child("event"), &event, &["event_type", "aliases", "topics", "topic", "handling"]);

        let mut reader = Reader { loader: self, at: at.child("notification") };
        let name = reader.string(&notification, "name", true);
        let category = reader.choice(&notification, "category", rules::category);
        let priority = reader.choice(&notification, "priority", rules::priority);
        let fields = reader.strings(&notification, "fields");
        self.check_keys(&at.child("notification"), &notification, &["name", "category", "priority", "fields"]);
        if let Some(name) = &name {
            let at = at.child("notification").child("name");
            if let Err(message) = rules::notification_name(name) {
                self.error(&at, message, "the name becomes the handler method `handle_{name}`");
            } else if let Some((_, reason)) = RESERVED_NOTIFICATIONS.iter().find(|(reserved, _)| reserved == name) {
                self.error(&at, format!("the notification name {name:?} is reserved: {reason}"), "choose another name");
            }
        }

        let mut reader = Reader { loader: self, at: at.child("recipient") };
        let recipient_user = reader.string(&recipient, "user", false);
        let recipient_batch = reader.string(&recipient, "batch", false);
        self.check_keys(&at.child("recipient"), &recipient, &["user", "batch"]);
        if let Err(message) = rules::recipient(recipient_user.as_deref(), recipient_batch.as_deref()) {
            self.error(&at.child("recipient"), message, "set \"user\", \"batch\" or both to a payload key");
        }
        let batch_owner = owner.and_then(|owner| {
            let mut reader = Reader { loader: self, at: at.child("batch_owner") };
            let user = reader.string(&owner, "user", false);
            let batch = reader.string(&owner, "batch", false);
            self.check_keys(&at.child("batch_owner"), &owner, &["user", "batch"]);
            if let Err(message) = rules::batch_owner(owner.contains_key("user"), owner.contains_key("batch")) {
                self.error(&at.child("batch_owner"), message, "set both \"user\" and \"batch\" to payload keys");
            }
            Some((user?, batch?))
        });

        let properties = root.get("properties").and_then(Value::as_object);
        let check_property = |loader: &mut Loader, pointer: &[&str], key: &str, must_be_string: bool| {
            let mut at = at.clone();
            for segment in pointer {
                at = at.child(segment);
            }
            if !loader.types.contains_key(title) {
                // The payload type itself was refused, and that was reported.
                return;
            }
            let Some(field) = loader.field_of(title, key) else {
                let known: Vec<&String> = properties.map(|p| p.keys().collect()).unwrap_or_default();
                loader.error(&at, format!("{key:?} is not a property of {title}"), format!("name one of {known:?}"));
                return;
            };
            if must_be_string && !matches!(field.value_ty(), Ty::String | Ty::Uuid) {
                loader.error(&at, format!("{key:?} holds an id, so it must be a string"), "point at a string property");
            }
        };
        for (index, field) in fields.iter().enumerate() {
            check_property(self, &["notification", "fields", &index.to_string()], field, false);
        }
        if let Some(user) = &recipient_user {
            check_property(self, &["recipient", "user"], user, true);
        }
        if let Some(batch) = &recipient_batch {
            check_property(self, &["recipient", "batch"], batch, true);
        }
        if let Some((user, batch)) = &batch_owner {
            check_property(self, &["batch_owner", "user"], user, true);
            check_property(self, &["batch_owner", "batch"], batch, true);
        }

        let examples = match root.get("examples") {
            Some(examples) => examples.clone(),
            None => {
                self.error(
                    &At { file: at.file, pointer: String::new() },
                    "the event has no `examples`",
                    "add \"examples\": [{\"case\": \"basic\", \"data\": {...}}] with at least one payload or whole \
                     envelope; the test fixtures and samples are made from them (see docs/event-definitions.md)",
                );
                Value::Null
            }
        };
        let (Some(event_type), Some(name), Some(category), Some(priority)) = (event_type, name, category, priority)
        else {
            return;
        };
        self.raw_examples.push(examples);
        self.events.push(EventDef {
            type_name: title.to_owned(),
            file: at.file.to_owned(),
            event_type,
            aliases,
            topics,
            handling,
            notification: name,
            category,
            priority,
            forwarded_fields: fields,
            recipient_user,
            recipient_batch,
            batch_owner,
            dedupe_ttl_seconds,
            examples: Vec::new(),
        });
    }

    fn read_envelope(&mut self, at: &At<'_>, root: &Value, envelope: &Value, title: &str) {
        let at = at.child("envelope");
        let mut reader = Reader { loader: self, at: at.clone() };
        let Some(envelope) = envelope.as_object().cloned() else {
            self.error(&at, "`envelope` must be an object", "write {\"payload\": \"data\"}");
            return;
        };
        let payload = reader.string(&envelope, "payload", true);
        self.check_keys(&at, &envelope, &["payload"]);
        if let Some(existing) = &self.envelope {
            let other = existing.type_name.clone();
            self.error(&at, format!("a second envelope; {other} is one already"), "keep one envelope file");
            return;
        }
        let Some(payload) = payload else { return };
        if root.get("properties").and_then(|p| p.get(&payload)).is_none() {
            self.error(
                &at.child("payload"),
                format!("{payload:?} is not a property of {title}"),
                "name the property holding the event",
            );
        }
        for key in ["event_id", "event_type", "event_timestamp", "correlation_id"] {
            let usable = self
                .field_of(title, key)
                .is_some_and(|field| field.required && matches!(field.ty, Ty::String | Ty::Uuid | Ty::Timestamp));
            if !usable {
                self.error(
                    &at,
                    format!("the envelope must have a required, non-null string property {key:?}"),
                    "notifications take their metadata from it",
                );
            }
        }
        let example = match root.get("examples") {
            None => None,
            Some(Value::Array(examples)) if examples.first().is_some_and(Value::is_object) => examples.first().cloned(),
            Some(_) => {
                self.error(
                    &At { file: at.file, pointer: "/examples".to_owned() },
                    "the envelope's `examples` must be a list whose first item is an envelope object",
                    "payload-only event examples are wrapped in that envelope",
                );
                None
            }
        };
        self.envelope = Some(EnvelopeDef { type_name: title.to_owned(), payload_field: payload, example });
    }

    fn field_of(&self, type_name: &str, key: &str) -> Option<&Field> {
        match &self.types.get(type_name)?.kind {
            TypeKind::Struct(fields) => fields.iter().find(|field| field.json_name == key),
            TypeKind::Enum(_) => None,
        }
    }

    fn check_keys(&mut self, at: &At<'_>, object: &Map<String, Value>, allowed: &[&str]) {
        for key in object.keys() {
            if !allowed.contains(&key.as_str()) {
                self.error(
                    &at.child(key),
                    format!("unknown key {key:?}"),
                    format!("the keys allowed here are {allowed:?}"),
                );
            }
        }
    }

    /// Checks that needs all events: one envelope, unique names, event types and aliases.
    fn check_events(&mut self) {
        if self.envelope.is_none() && !self.documents.is_empty() {
            let at = At { file: "", pointer: String::new() };
            let label = self.folder.clone();
            self.diagnostics.push(
                &label,
                &at.pointer,
                "no envelope definition",
                "add envelope.json with \"x-herald\": {\"envelope\": {\"payload\": \"data\"}}",
            );
        }
        let mut notifications: BTreeMap<String, String> = BTreeMap::new();
        let mut event_types: BTreeMap<String, String> = BTreeMap::new();
        let events = self.events.clone();
        for event in &events {
            let at = At { file: &event.file, pointer: "/x-herald".to_owned() };
            if let Some(other) = notifications.insert(event.notification.clone(), event.file.clone()) {
                self.error(
                    &at.child("notification").child("name"),
                    format!("notification name {:?} is also used by {}", event.notification, self.label(&other)),
                    "notification names must be unique",
                );
            }
            let pascal = names::to_pascal_case(&event.notification);
            for generated in [format!("{pascal}Notification"), format!("{pascal}Data")] {
                if let Some(existing) = self.types.get(&generated) {
                    let (file, pointer) = (self.label(&existing.file), existing.pointer.clone());
                    self.error(
                        &at.child("notification").child("name"),
                        format!(
                            "the TypeScript for notification {:?} defines {generated}, which {file}#{pointer} also names",
                            event.notification
                        ),
                        "rename the type's `title` or the notification",
                    );
                }
            }
            for event_type in std::iter::once(&event.event_type).chain(&event.aliases) {
                if let Some(other) = event_types.insert(event_type.clone(), event.file.clone()) {
                    self.error(
                        &at.child("event"),
                        format!("event type {event_type:?} is also claimed by {}", self.label(&other)),
                        "an event type or alias routes to exactly one event",
                    );
                }
            }
        }
    }
}

impl Loader {
    /// Turns each event's `examples` into whole envelopes: an item is `{"case": name, "envelope":
    /// {...}}`, `{"case": name, "data": {...}}` (a payload, wrapped in the envelope file's first
    /// example), or a bare payload (named `example_N`, counting from 1).
    fn read_examples(&mut self) {
        let raw = std::mem::take(&mut self.raw_examples);
        let mut events = std::mem::take(&mut self.events);
        for (event, examples) in events.iter_mut().zip(raw) {
            let at = At { file: &event.file, pointer: "/examples".to_owned() };
            if examples.is_null() {
                // Missing: already reported.
                continue;
            }
            let Some(items) = examples.as_array() else {
                self.error(&at, "`examples` must be a list", "see docs/event-definitions.md");
                continue;
            };
            if items.is_empty() {
                self.error(&at, "`examples` is empty", "give at least one example payload or envelope");
            }
            for (index, item) in items.iter().enumerate() {
                let at = at.child(&index.to_string());
                if let Some(example) = self.example(event, &at, index, item) {
                    if event.examples.iter().any(|other| other.case == example.case) {
                        let message = format!("the case name {:?} is used twice", example.case);
                        self.error(&at.child("case"), message, "give each example its own `case`");
                        continue;
                    }
                    event.examples.push(example);
                }
            }
        }
        self.events = events;
    }

    fn example(&mut self, event: &EventDef, at: &At<'_>, index: usize, item: &Value) -> Option<Example> {
        let Some(object) = item.as_object() else {
            self.error(at, "an example must be an object", "write a payload, or {\"case\": ..., \"data\": {...}}");
            return None;
        };
        let named = object.get("case").is_some_and(Value::is_string)
            && object.keys().all(|key| ["case", "description", "data", "envelope"].contains(&key.as_str()))
            && (object.contains_key("data") != object.contains_key("envelope"));
        let (case, payload, envelope) = if named {
            let case = object.get("case").and_then(Value::as_str).unwrap_or_default().to_owned();
            if let Err(message) = rules::case_name(&case) {
                self.error(&at.child("case"), message, "the case name is the fixture's file name");
                return None;
            }
            (case, object.get("data"), object.get("envelope"))
        } else {
            (format!("example_{}", index + 1), Some(item), None)
        };
        let envelope_def = self.envelope.clone()?;
        let envelope = match (payload, envelope) {
            (_, Some(envelope)) => {
                let at = at.child("envelope");
                let Some(object) = envelope.as_object() else {
                    self.error(&at, "`envelope` must be an object", "write the whole envelope producers send");
                    return None;
                };
                let event_type = object.get("event_type").and_then(Value::as_str).unwrap_or_default();
                if event_type != event.event_type && !event.aliases.iter().any(|alias| alias == event_type) {
                    self.error(
                        &at.child("event_type"),
                        format!("the example's event_type {event_type:?} is not this event's"),
                        format!("use {:?} or one of its aliases {:?}", event.event_type, event.aliases),
                    );
                    return None;
                }
                if !object.get(&envelope_def.payload_field).is_some_and(Value::is_object) {
                    self.error(
                        &at,
                        format!("the example envelope has no object `{}`", envelope_def.payload_field),
                        "put the event's payload in it",
                    );
                    return None;
                }
                envelope.clone()
            }
            (Some(payload), None) => {
                let at = if named { at.child("data") } else { at.clone() };
                if !payload.is_object() {
                    self.error(&at, "an example payload must be an object", "write the event's `data` object");
                    return None;
                }
                let Some(mut envelope) = envelope_def.example.clone() else {
                    self.error(
                        &at,
                        "a payload example needs an envelope to be wrapped in, and the envelope file has no `examples`",
                        "add \"examples\": [{...one whole envelope...}] to the envelope file, or give this example a \
                         whole `envelope`",
                    );
                    return None;
                };
                if let Some(object) = envelope.as_object_mut() {
                    object.insert("event_id".to_owned(), Value::String(example_uuid(&event.event_type, &case)));
                    object.insert("event_type".to_owned(), Value::String(event.event_type.clone()));
                    object.insert(envelope_def.payload_field.clone(), payload.clone());
                }
                envelope
            }
            (None, None) => return None,
        };
        Some(Example { case, envelope })
    }
}

/// A UUID (version 4 layout) that depends only on the event type and the case name, so that
/// generated example envelopes are the same on every run.
fn example_uuid(event_type: &str, case: &str) -> String {
    let hash = |seed: u64| {
        let mut hash = seed;
        for byte in event_type.bytes().chain([0]).chain(case.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash
    };
    let (high, low) = (hash(0xcbf2_9ce4_8422_2325), hash(0x8422_2325_cbf2_9ce4));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0x0fff,
        0x8000 | ((low >> 48) & 0x3fff),
        low & 0xffff_ffff_ffff
    )
}

/// Reads typed values out of an `x-herald` object, reporting what is missing or mistyped.
struct Reader<'a> {
    loader: &'a mut Loader,
    at: At<'a>,
}

impl Reader<'_> {
    fn object(&mut self, object: &Map<String, Value>, key: &str, required: bool) -> Option<Map<String, Value>> {
        match object.get(key) {
            Some(Value::Object(value)) => Some(value.clone()),
            Some(_) => {
                self.loader.error(
                    &self.at.child(key),
                    format!("`{key}` must be an object"),
                    "see docs/event-definitions.md",
                );
                None
            }
            None => {
                if required {
                    self.loader.error(&self.at, format!("`{key}` is missing"), "see docs/event-definitions.md");
                }
                None
            }
        }
    }

    fn string(&mut self, object: &Map<String, Value>, key: &str, required: bool) -> Option<String> {
        match object.get(key) {
            Some(Value::String(value)) if !value.is_empty() => Some(value.clone()),
            Some(_) => {
                self.loader.error(&self.at.child(key), format!("`{key}` must be a non-empty string"), "");
                None
            }
            None => {
                if required {
                    self.loader.error(&self.at, format!("`{key}` is missing"), "see docs/event-definitions.md");
                }
                None
            }
        }
    }

    fn strings(&mut self, object: &Map<String, Value>, key: &str) -> Vec<String> {
        match object.get(key) {
            None => Vec::new(),
            Some(Value::Array(values)) if values.iter().all(|v| v.as_str().is_some_and(|s| !s.is_empty())) => {
                values.iter().filter_map(Value::as_str).map(str::to_owned).collect()
            }
            Some(_) => {
                self.loader.error(&self.at.child(key), format!("`{key}` must be a list of non-empty strings"), "");
                Vec::new()
            }
        }
    }

    fn choice<T>(&mut self, object: &Map<String, Value>, key: &str, parse: fn(&str) -> Result<T, String>) -> Option<T> {
        let value = self.string(object, key, true)?;
        match parse(&value) {
            Ok(value) => Some(value),
            Err(message) => {
                self.loader.error(&self.at.child(key), message, "see docs/event-definitions.md");
                None
            }
        }
    }
}
