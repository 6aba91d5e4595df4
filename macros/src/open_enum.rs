//! `#[derive(OpenEnum)]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, LitStr};

use crate::Errors;

/// What a variant's `#[herald(...)]` says.
enum Role {
    Value(LitStr),
    Unrecognized,
}

fn role(variant: &syn::Variant) -> syn::Result<Option<Role>> {
    let mut role = None;
    for attribute in variant.attrs.iter().filter(|attribute| attribute.path().is_ident("herald")) {
        attribute.parse_nested_meta(|meta| {
            if role.is_some() {
                return Err(meta.error("a variant takes one of `value = \"...\"` or `unrecognized`"));
            }
            if meta.path.is_ident("value") {
                role = Some(Role::Value(meta.value()?.parse()?));
            } else if meta.path.is_ident("unrecognized") {
                role = Some(Role::Unrecognized);
            } else {
                return Err(meta.error("expected `value = \"...\"` or `unrecognized`"));
            }
            Ok(())
        })?;
    }
    Ok(role)
}

/// Whether `ty` is written `String` (or `std::string::String`, `::std::string::String`), the only
/// type the generated `as_str` and `from_value` can hand the value to.
fn is_string(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Path(path) => {
            path.qself.is_none()
                && path.path.segments.last().is_some_and(|last| last.ident == "String" && last.arguments.is_none())
        }
        _ => false,
    }
}

pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let Data::Enum(data) = &input.data else {
        return Err(syn::Error::new(input.ident.span(), "`#[derive(OpenEnum)]` works on enums"));
    };
    let name = &input.ident;
    let mut errors = Errors::default();
    let mut known: Vec<(&syn::Ident, LitStr)> = Vec::new();
    let mut catch_all: Option<&syn::Ident> = None;
    // Whether any variant is marked `unrecognized`, even one of the wrong shape: then that variant's
    // own error says what to fix, and "needs a variant" would be wrong.
    let mut marked_unrecognized = false;
    for variant in &data.variants {
        let role = match role(variant) {
            Ok(role) => role,
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        match (role, &variant.fields) {
            (Some(Role::Value(value)), Fields::Unit) => {
                if let Some((other, _)) = known.iter().find(|(_, other)| other.value() == value.value()) {
                    errors.push(syn::Error::new(
                        value.span(),
                        format!("the value {:?} is already `{other}`'s; each value names one variant", value.value()),
                    ));
                }
                known.push((&variant.ident, value));
            }
            (Some(Role::Value(_)), _) => {
                errors.push(syn::Error::new(variant.fields.span(), "a variant with a `value` carries no data"));
            }
            (Some(Role::Unrecognized), fields) => {
                if let Some(first) = catch_all {
                    errors.push(syn::Error::new(
                        variant.ident.span(),
                        format!("only one variant may be `unrecognized`, and `{first}` already is"),
                    ));
                }
                marked_unrecognized = true;
                match fields {
                    Fields::Unnamed(fields) if fields.unnamed.len() == 1 => {
                        let ty = &fields.unnamed[0].ty;
                        if !is_string(ty) {
                            errors.push(syn::Error::new(
                                ty.span(),
                                "the `unrecognized` variant holds the value as sent, a `String`: write it `Name(String)`",
                            ));
                        }
                        catch_all = catch_all.or(Some(&variant.ident));
                    }
                    _ => errors.push(syn::Error::new(
                        variant.ident.span(),
                        "the `unrecognized` variant holds the value as sent: write it `Name(String)`",
                    )),
                }
            }
            (None, _) => errors.push(syn::Error::new(
                variant.ident.span(),
                "every variant needs `#[herald(value = \"...\")]` or `#[herald(unrecognized)]`",
            )),
        }
    }
    if !marked_unrecognized {
        errors.push(syn::Error::new(
            name.span(),
            "an open enum needs a variant `#[herald(unrecognized)] Unrecognized(String)` for values added later",
        ));
    }
    errors.finish()?;
    let Some(catch_all) = catch_all else {
        return Ok(TokenStream::new());
    };
    let values: Vec<&LitStr> = known.iter().map(|(_, value)| value).collect();
    let variants: Vec<&syn::Ident> = known.iter().map(|(variant, _)| *variant).collect();
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::herald_runtime::OpenEnum for #name #type_generics #where_clause {
            const KNOWN_VALUES: &'static [&'static str] = &[#(#values),*];

            fn as_str(&self) -> &str {
                match self {
                    #(Self::#variants => #values,)*
                    Self::#catch_all(value) => value,
                }
            }

            fn from_value(value: ::std::string::String) -> Self {
                match value.as_str() {
                    #(#values => Self::#variants,)*
                    _ => Self::#catch_all(value),
                }
            }
        }

        impl #impl_generics ::herald_runtime::__serde::Serialize for #name #type_generics #where_clause {
            fn serialize<S: ::herald_runtime::__serde::Serializer>(&self, serializer: S) -> ::std::result::Result<S::Ok, S::Error> {
                serializer.serialize_str(::herald_runtime::OpenEnum::as_str(self))
            }
        }

        impl<'de> ::herald_runtime::__serde::Deserialize<'de> for #name #type_generics #where_clause {
            fn deserialize<D: ::herald_runtime::__serde::Deserializer<'de>>(deserializer: D) -> ::std::result::Result<Self, D::Error> {
                let value = <::std::string::String as ::herald_runtime::__serde::Deserialize>::deserialize(deserializer)?;
                ::std::result::Result::Ok(<Self as ::herald_runtime::OpenEnum>::from_value(value))
            }
        }

        impl #impl_generics ::std::fmt::Display for #name #type_generics #where_clause {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(::herald_runtime::OpenEnum::as_str(self))
            }
        }

        impl #impl_generics ::std::str::FromStr for #name #type_generics #where_clause {
            type Err = ::std::convert::Infallible;
            fn from_str(value: &str) -> ::std::result::Result<Self, Self::Err> {
                ::std::result::Result::Ok(<Self as ::herald_runtime::OpenEnum>::from_value(value.to_owned()))
            }
        }
    })
}
