//! `#[derive(Event)]`.

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, LitInt, LitStr};

use crate::Errors;

use herald_codegen::rules;
use herald_runtime::{Category, Handling, Priority};

/// The parsed `#[herald(...)]` attribute.
#[derive(Default)]
struct Attributes {
    event_type: Option<LitStr>,
    aliases: Vec<LitStr>,
    topics: Vec<LitStr>,
    notification: Option<LitStr>,
    category: Option<(Category, Span)>,
    priority: Option<(Priority, Span)>,
    handling: Option<Handling>,
    dedupe_ttl_seconds: Option<u64>,
    recipient_user: Option<Ident>,
    recipient_batch: Option<Ident>,
    recipient_span: Option<Span>,
    /// The `herald` of `#[herald(...)]`, where missing keys are reported.
    span: Option<Span>,
    owner: Option<(Ident, Ident)>,
    forward: Vec<Ident>,
    seen: Vec<String>,
}

impl Attributes {
    /// Rejects a key given twice.
    fn first_time(&mut self, meta: &ParseNestedMeta<'_>, key: &str) -> syn::Result<()> {
        if self.seen.iter().any(|seen| seen == key) {
            return Err(meta.error(format!("`{key}` is given more than once")));
        }
        self.seen.push(key.to_owned());
        Ok(())
    }
}

/// Parses `key(...)` like [`ParseNestedMeta::parse_nested_meta`], but also accepts an empty list,
/// which syn rejects: the generator writes `forward()` for an event that forwards no field, and
/// `recipient()` must reach the check that explains what a recipient needs.
fn parse_list(
    meta: &ParseNestedMeta<'_>,
    logic: impl FnMut(ParseNestedMeta<'_>) -> syn::Result<()>,
) -> syn::Result<()> {
    let empty = meta.input.cursor().group(Delimiter::Parenthesis).is_some_and(|(inside, _, _)| inside.eof());
    if empty {
        meta.input.parse::<TokenTree>()?;
        return Ok(());
    }
    meta.parse_nested_meta(logic)
}

/// Applies one of the generator's rules to a string literal, reporting its message at the literal.
fn checked<T>(literal: &LitStr, rule: fn(&str) -> Result<T, String>) -> syn::Result<T> {
    rule(&literal.value()).map_err(|message| syn::Error::new(literal.span(), message))
}

/// Parses `key("a", "b")` into its string literals.
fn parse_strings(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<LitStr>> {
    let content;
    syn::parenthesized!(content in meta.input);
    let literals = syn::punctuated::Punctuated::<LitStr, syn::Token![,]>::parse_terminated(&content)?;
    Ok(literals.into_iter().collect())
}

fn parse_attributes(input: &DeriveInput) -> syn::Result<Attributes> {
    let mut attributes = Attributes::default();
    let mut found = false;
    for attribute in input.attrs.iter().filter(|attribute| attribute.path().is_ident("herald")) {
        if found {
            return Err(syn::Error::new_spanned(attribute, "only one `#[herald(...)]` attribute is allowed"));
        }
        found = true;
        attributes.span = Some(attribute.path().span());
        attribute.parse_nested_meta(|meta| {
            let key = meta.path.get_ident().map(Ident::to_string).unwrap_or_default();
            attributes.first_time(&meta, &key)?;
            match key.as_str() {
                "event_type" => attributes.event_type = Some(meta.value()?.parse()?),
                "topics" => attributes.topics = parse_strings(&meta)?,
                "notification" => {
                    let name: LitStr = meta.value()?.parse()?;
                    checked(&name, rules::notification_name)?;
                    attributes.notification = Some(name);
                }
                "category" => {
                    let literal: LitStr = meta.value()?.parse()?;
                    attributes.category = Some((checked(&literal, rules::category)?, literal.span()));
                }
                "priority" => {
                    let literal: LitStr = meta.value()?.parse()?;
                    attributes.priority = Some((checked(&literal, rules::priority)?, literal.span()));
                }
                "handling" => attributes.handling = Some(checked(&meta.value()?.parse()?, rules::handling)?),
                "dedupe_ttl_seconds" => {
                    let ttl: LitInt = meta.value()?.parse()?;
                    let seconds = rules::dedupe_ttl_seconds(ttl.base10_parse()?)
                        .map_err(|message| syn::Error::new(ttl.span(), message))?;
                    attributes.dedupe_ttl_seconds = Some(seconds);
                }
                "aliases" => attributes.aliases = parse_strings(&meta)?,
                "recipient" => {
                    attributes.recipient_span = Some(meta.path.span());
                    parse_list(&meta, |inner| {
                        let slot = if inner.path.is_ident("user") {
                            &mut attributes.recipient_user
                        } else if inner.path.is_ident("batch") {
                            &mut attributes.recipient_batch
                        } else {
                            return Err(inner.error("expected `user = field` or `batch = field`"));
                        };
                        if slot.is_some() {
                            return Err(inner.error("given more than once"));
                        }
                        *slot = Some(inner.value()?.parse()?);
                        Ok(())
                    })?;
                }
                "batch_owner" => {
                    let (mut user, mut batch) = (None, None);
                    let span = meta.path.span();
                    parse_list(&meta, |inner| {
                        let slot = if inner.path.is_ident("user") {
                            &mut user
                        } else if inner.path.is_ident("batch") {
                            &mut batch
                        } else {
                            return Err(inner.error("expected `user = field` or `batch = field`"));
                        };
                        if slot.is_some() {
                            return Err(inner.error("given more than once"));
                        }
                        *slot = Some(inner.value()?.parse()?);
                        Ok(())
                    })?;
                    rules::batch_owner(user.is_some(), batch.is_some())
                        .map_err(|message| syn::Error::new(span, message))?;
                    attributes.owner = user.zip(batch);
                }
                "forward" => {
                    parse_list(&meta, |inner| {
                        let field = inner.path.require_ident()?.clone();
                        if attributes.forward.contains(&field) {
                            return Err(inner.error(format!("`{field}` is forwarded twice")));
                        }
                        attributes.forward.push(field);
                        Ok(())
                    })?;
                }
                _ => {
                    let path = meta.path.to_token_stream().to_string().replace(' ', "");
                    return Err(meta.error(format!(
                        "unknown key `{path}`; expected one of event_type, aliases, topics, notification, category, \
                         priority, handling, dedupe_ttl_seconds, recipient, batch_owner, forward"
                    )));
                }
            }
            Ok(())
        })?;
    }
    if !found {
        return Err(syn::Error::new(
            input.ident.span(),
            "`#[derive(Event)]` needs a `#[herald(event_type = \"...\", topics(\"...\"), ...)]` attribute",
        ));
    }
    Ok(attributes)
}

/// What the derive needs to know about one struct field.
struct FieldFacts<'a> {
    ident: &'a Ident,
    json_name: String,
    skip_serializing_if: Option<syn::ExprPath>,
}

fn field_facts(field: &syn::Field) -> syn::Result<FieldFacts<'_>> {
    let Some(ident) = &field.ident else {
        return Err(syn::Error::new(field.span(), "expected a named field"));
    };
    let mut facts = FieldFacts {
        ident,
        json_name: ident.to_string().trim_start_matches("r#").to_owned(),
        skip_serializing_if: None,
    };
    for attribute in field.attrs.iter().filter(|attribute| attribute.path().is_ident("serde")) {
        attribute.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") && meta.input.peek(syn::token::Paren) {
                // `rename(serialize = "...", deserialize = "...")`: what is sent is the serialize name.
                meta.parse_nested_meta(|inner| {
                    let name: LitStr = inner.value()?.parse()?;
                    if inner.path.is_ident("serialize") {
                        facts.json_name = name.value();
                    }
                    Ok(())
                })
            } else if meta.path.is_ident("rename") {
                facts.json_name = meta.value()?.parse::<LitStr>()?.value();
                Ok(())
            } else if meta.path.is_ident("skip_serializing_if") {
                facts.skip_serializing_if = Some(meta.value()?.parse::<LitStr>()?.parse()?);
                Ok(())
            } else {
                skip_serde_setting(&meta)
            }
        })?;
    }
    Ok(facts)
}

/// Consumes a serde setting that does not change the names of what is sent: `default`,
/// `deserialize_with = "..."`, `bound(...)`.
fn skip_serde_setting(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.input.parse::<TokenTree>()?;
    }
    Ok(())
}

/// Forwarded keys are named field by field from `#[serde(rename = "...")]`; a container-wide
/// `rename_all` would make serde and the notification disagree silently, so it is refused.
fn reject_rename_all(input: &DeriveInput) -> syn::Result<()> {
    for attribute in input.attrs.iter().filter(|attribute| attribute.path().is_ident("serde")) {
        attribute.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename_all") {
                return Err(meta.error(
                    "`#[derive(Event)]` does not apply serde's `rename_all`; \
                     give each field that is renamed its own `#[serde(rename = \"...\")]`",
                ));
            }
            skip_serde_setting(&meta)
        })?;
    }
    Ok(())
}

pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(input.ident.span(), "`#[derive(Event)]` works on structs with named fields"));
    };
    let Fields::Named(named) = &data.fields else {
        return Err(syn::Error::new(input.ident.span(), "`#[derive(Event)]` works on structs with named fields"));
    };
    let attributes = parse_attributes(input)?;
    reject_rename_all(input)?;
    let fields = named.named.iter().map(field_facts).collect::<syn::Result<Vec<_>>>()?;
    let name = &input.ident;

    let attribute_span = attributes.span.unwrap_or_else(|| name.span());

    let mut errors = Errors::default();
    let mut missing = Vec::new();
    let mut required = |value: &Option<LitStr>, key: &'static str| -> LitStr {
        value.clone().unwrap_or_else(|| {
            missing.push(key);
            LitStr::new("", Span::call_site())
        })
    };
    let event_type = required(&attributes.event_type, "event_type = \"...\"");
    let notification = required(&attributes.notification, "notification = \"...\"");
    if attributes.topics.is_empty() {
        missing.push("topics(\"...\")");
    }
    if attributes.category.is_none() {
        missing.push("category = \"...\"");
    }
    if attributes.priority.is_none() {
        missing.push("priority = \"...\"");
    }
    if !missing.is_empty() {
        let keys = missing.iter().map(|key| format!("`{key}`")).collect::<Vec<_>>().join(", ");
        errors.push(syn::Error::new(attribute_span, format!("`#[herald(...)]` is missing {keys}")));
    }
    let user_name = attributes.recipient_user.as_ref().map(Ident::to_string);
    let batch_name = attributes.recipient_batch.as_ref().map(Ident::to_string);
    if let Err(message) = rules::recipient(user_name.as_deref(), batch_name.as_deref()) {
        let span = attributes.recipient_span.unwrap_or(attribute_span);
        errors.push(syn::Error::new(span, format!("{message}: `recipient(user = field, batch = field)`")));
    }
    let mut find = |ident: &Ident| -> Option<&FieldFacts<'_>> {
        let found = fields.iter().find(|field| field.ident == ident);
        if found.is_none() {
            errors.push(syn::Error::new(ident.span(), format!("`{name}` has no field `{ident}`")));
        }
        found
    };
    let recipient_user = attributes.recipient_user.as_ref().map(&mut find);
    let recipient_batch = attributes.recipient_batch.as_ref().map(&mut find);
    let owner = attributes.owner.as_ref().map(|(user, batch)| (find(user), find(batch)));
    let forwarded: Vec<Option<&FieldFacts<'_>>> = attributes.forward.iter().map(&mut find).collect();
    errors.finish()?;

    let id_of = |field: &FieldFacts<'_>| {
        let ident = field.ident;
        quote_spanned! {ident.span()=> ::herald_runtime::RecipientId::recipient_id(&self.#ident) }
    };
    let optional_id = |field: Option<Option<&FieldFacts<'_>>>| match field.flatten() {
        Some(field) => id_of(field),
        None => quote! { ::std::option::Option::None },
    };
    let user = optional_id(recipient_user);
    let batch = optional_id(recipient_batch);
    let batch_owner = match owner {
        Some((Some(user), Some(batch))) => {
            let (user, batch) = (id_of(user), id_of(batch));
            quote! { ::herald_runtime::BatchOwner::new(#batch, #user) }
        }
        _ => quote! { ::std::option::Option::None },
    };
    let forwarded: Vec<&FieldFacts<'_>> = forwarded.into_iter().flatten().collect();
    let forwarded_names = forwarded.iter().map(|field| &field.json_name);
    let entries = forwarded.iter().map(|field| {
        let ident = field.ident;
        let key = &field.json_name;
        let entry = quote! { map.serialize_entry(#key, &self.#ident)?; };
        match &field.skip_serializing_if {
            Some(skip) => quote! { if !#skip(&self.#ident) { #entry } },
            None => entry,
        }
    });
    let aliases = &attributes.aliases;
    let topics = &attributes.topics;
    let variant = |name: &str, span: Span| syn::Ident::new(name, span);
    let category = attributes.category.map(|(category, span)| variant(category.variant_name(), span));
    let priority = attributes.priority.map(|(priority, span)| variant(priority.variant_name(), span));
    let handling = variant(attributes.handling.unwrap_or(rules::DEFAULT_HANDLING).variant_name(), Span::call_site());
    let ttl = attributes.dedupe_ttl_seconds.unwrap_or(rules::DEFAULT_DEDUPE_TTL_SECONDS);
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();

    Ok(quote! {
        impl #impl_generics ::herald_runtime::Event for #name #type_generics #where_clause {
            const EVENT_TYPE: &'static str = #event_type;
            const ALIASES: &'static [&'static str] = &[#(#aliases),*];
            const TOPICS: &'static [&'static str] = &[#(#topics),*];
            const NOTIFICATION: &'static str = #notification;
            const CATEGORY: ::herald_runtime::Category = ::herald_runtime::Category::#category;
            const PRIORITY: ::herald_runtime::Priority = ::herald_runtime::Priority::#priority;
            const HANDLING: ::herald_runtime::Handling = ::herald_runtime::Handling::#handling;
            const DEDUPE_TTL_SECONDS: u64 = #ttl;
            const FORWARDED_FIELDS: &'static [&'static str] = &[#(#forwarded_names),*];

            fn recipient(&self) -> ::herald_runtime::Recipient<'_> {
                ::herald_runtime::Recipient::new(#user, #batch)
            }

            fn batch_owner(&self) -> ::std::option::Option<::herald_runtime::BatchOwner<'_>> {
                #batch_owner
            }

            fn serialize_notification_data<S: ::herald_runtime::__serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                use ::herald_runtime::__serde::ser::SerializeMap as _;
                let mut map = serializer.serialize_map(::std::option::Option::None)?;
                #(#entries)*
                map.end()
            }
        }
    })
}
