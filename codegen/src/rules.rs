//! The rules of `x-herald` that hold wherever routing facts are written: in a schema (checked by
//! [`load`](crate::load)) or in a hand-written `#[herald(...)]` attribute (checked by
//! `herald-macros`, which calls these functions). Each rule lives here once.
//!
//! The vocabularies themselves (categories, priorities, handlings) are the enums of
//! `herald-runtime`, with `ALL` and `from_name`; these functions only turn a name into a value or
//! a message that says what is allowed.

use herald_runtime::{Category, Handling, Priority};

use crate::names;

/// How long a delivered notification suppresses re-sent copies when a definition does not say.
pub const DEFAULT_DEDUPE_TTL_SECONDS: u64 = 86_400;

/// The handling of an event whose definition does not say.
pub const DEFAULT_HANDLING: Handling = Handling::Declarative;

fn one_of<T: Copy>(name: &str, what: &str, all: &[T], as_str: fn(T) -> &'static str) -> Result<T, String> {
    all.iter().copied().find(|value| as_str(*value) == name).ok_or_else(|| {
        let list = all.iter().map(|value| format!("\"{}\"", as_str(*value))).collect::<Vec<_>>().join(", ");
        format!("unknown {what} {name:?}; use one of {list}")
    })
}

/// The category named `name`, or a message listing the categories.
pub fn category(name: &str) -> Result<Category, String> {
    one_of(name, "category", Category::ALL, Category::as_str)
}

/// The priority named `name`, or a message listing the priorities.
pub fn priority(name: &str) -> Result<Priority, String> {
    one_of(name, "priority", Priority::ALL, Priority::as_str)
}

/// The handling named `name`, or a message listing the handlings.
pub fn handling(name: &str) -> Result<Handling, String> {
    one_of(name, "handling", Handling::ALL, Handling::as_str)
}

/// A notification name must be snake_case: it becomes the handler method `handle_{name}` and the
/// `event` browsers switch on.
pub fn notification_name(name: &str) -> Result<(), String> {
    if names::is_snake_case(name) {
        Ok(())
    } else {
        Err(format!("the notification name {name:?} is not snake_case; write it like \"batch_file_added\""))
    }
}

/// A dedupe TTL is a positive whole number of seconds.
pub fn dedupe_ttl_seconds(seconds: u64) -> Result<u64, String> {
    if seconds == 0 { Err("the dedupe TTL must be at least one second".to_owned()) } else { Ok(seconds) }
}

/// An example's case name is a fixture file name: snake_case.
pub fn case_name(name: &str) -> Result<(), String> {
    if names::is_snake_case(name) {
        Ok(())
    } else {
        Err(format!("the case name {name:?} is not snake_case; write it like \"alias_els\""))
    }
}

/// A batch owner names both the payload field holding the owner's user id and the one holding the
/// batch id: given whether each was given.
pub fn batch_owner(has_user: bool, has_batch: bool) -> Result<(), String> {
    let missing = match (has_user, has_batch) {
        (true, true) => return Ok(()),
        (true, false) => "`batch` is missing",
        (false, true) => "`user` is missing",
        (false, false) => "both are missing",
    };
    Err(format!(
        "`batch_owner` needs both `user` (the field holding the owner's user id) and `batch` (the field \
         holding the batch id); {missing}"
    ))
}

/// A recipient names a user, a batch (whose owner is notified), or both; `None` means not given.
pub fn recipient(user: Option<&str>, batch: Option<&str>) -> Result<(), String> {
    if user.is_none() && batch.is_none() {
        Err("the recipient names neither a user nor a batch: give the field holding the user id, the field \
             holding a batch id (its owner is notified), or both"
            .to_owned())
    } else {
        Ok(())
    }
}
