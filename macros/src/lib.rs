//! Derive macros for the types that `herald-codegen` generates.
//!
//! - `#[derive(Event)]` reads the `#[herald(...)]` attribute that the generator writes from a
//!   schema's `x-herald` object and implements `herald_runtime::Event`: the routing constants, the
//!   recipient and batch-owner accessors, and the serializer of the fields forwarded to the browser.
//! - `#[derive(OpenEnum)]` implements `herald_runtime::OpenEnum`, serde, `Display` and `FromStr` for a
//!   string enum with a catch-all variant.
//!
//! This crate is a thin shell over the generator: it parses its input and checks the values with
//! `herald_codegen::rules`, the same functions that check a schema's `x-herald`, so no rule is
//! written twice; every mistake is a compile error at the span of the offending attribute, field or
//! variant.

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

mod event;
mod open_enum;

/// Implements `herald_runtime::Event` from a `#[herald(...)]` attribute.
///
/// ```text
/// #[derive(serde::Serialize, serde::Deserialize, herald_macros::Event)]
/// #[herald(
///     event_type = "huleedu.class.created.v1",
///     aliases(),
///     topics("huleedu.class.created.v1"),
///     notification = "class_created",
///     category = "class_management",
///     priority = "standard",
///     handling = "declarative",
///     dedupe_ttl_seconds = 86400,
///     recipient(user = user_id),
///     forward(class_id, timestamp),
/// )]
/// pub struct ClassCreatedV1 { /* ... */ }
/// ```
///
/// Every field named in `recipient`, `batch_owner` and `forward` must exist; recipient and owner
/// fields must hold ids (`String` or an `Option` of one). Forwarded fields are serialized under
/// their serde name, and skipped when their own `skip_serializing_if` says so.
#[proc_macro_derive(Event, attributes(herald))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event::expand(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Implements `herald_runtime::OpenEnum`, `Serialize`, `Deserialize`, `Display` and `FromStr`.
///
/// Every unit variant carries `#[herald(value = "...")]`, its value on the wire; exactly one variant
/// `#[herald(unrecognized)] Name(String)` keeps values added after generation.
#[proc_macro_derive(OpenEnum, attributes(herald))]
pub fn derive_open_enum(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    open_enum::expand(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Gathers several errors into one, so that a user sees every mistake at once.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(existing) => existing.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}
