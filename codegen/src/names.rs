//! Identifiers: turning JSON names into Rust and TypeScript names, and refusing what cannot be
//! turned deterministically.

/// Rust keywords that can be written as raw identifiers (`r#type`).
const RAW_KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "do", "dyn", "else", "enum",
    "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "macro", "match", "mod", "move",
    "mut", "override", "priv", "pub", "ref", "return", "static", "struct", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Keywords that cannot be raw identifiers.
const NON_RAW_KEYWORDS: &[&str] = &["crate", "self", "super", "Self", "_"];

/// The Rust field identifier for a JSON key, and whether serde needs a `rename`.
///
/// A key that is already a lowercase identifier is used as it is (as a raw identifier when it is a
/// keyword); anything else is converted to snake_case.
pub fn field_ident(json_name: &str) -> (String, bool) {
    let is_plain = !json_name.is_empty()
        && json_name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && json_name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if is_plain && !NON_RAW_KEYWORDS.contains(&json_name) {
        if RAW_KEYWORDS.contains(&json_name) {
            return (format!("r#{json_name}"), false);
        }
        return (json_name.to_owned(), false);
    }
    let mut snake = to_snake_case(json_name);
    if snake.is_empty() || snake.starts_with(|c: char| c.is_ascii_digit()) {
        snake.insert_str(0, "field_");
    }
    if RAW_KEYWORDS.contains(&snake.as_str()) || NON_RAW_KEYWORDS.contains(&snake.as_str()) {
        snake.push('_');
    }
    (snake, true)
}

/// `fileUploadId`, `file-upload id` → `file_upload_id`.
pub fn to_snake_case(text: &str) -> String {
    let mut snake = String::new();
    let mut previous_lower = false;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && previous_lower && !snake.ends_with('_') {
                snake.push('_');
            }
            previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            snake.push(c.to_ascii_lowercase());
        } else {
            if !snake.is_empty() && !snake.ends_with('_') {
                snake.push('_');
            }
            previous_lower = false;
        }
    }
    snake.trim_end_matches('_').to_owned()
}

/// `completed_successfully` → `CompletedSuccessfully`, `ENG5` → `Eng5`, `batch_id` → `BatchId`.
pub fn to_pascal_case(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            let all_upper = part.chars().all(|c| !c.is_ascii_lowercase());
            let rest: String =
                if all_upper { chars.map(|c| c.to_ascii_lowercase()).collect() } else { chars.collect() };
            first.into_iter().chain(rest.chars()).collect::<String>()
        })
        .collect()
}

/// The Rust variant for an enum value.
pub fn enum_variant(value: &str) -> String {
    let pascal = to_pascal_case(value);
    if pascal.starts_with(|c: char| c.is_ascii_digit()) { format!("V{pascal}") } else { pascal }
}

/// Whether `name` can name a type in both Rust and TypeScript: ASCII, starts with an uppercase
/// letter, letters and digits only.
pub fn is_type_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && name.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Whether `name` is lowercase snake_case (`batch_file_added`).
pub fn is_snake_case(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with('_')
        && !name.contains("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_field(json: &str, ident: &str, renamed: bool) {
        assert_eq!(field_ident(json), (ident.to_owned(), renamed), "{json}");
    }

    #[test]
    fn field_idents() {
        check_field("batch_id", "batch_id", false);
        check_field("type", "r#type", false);
        check_field("self", "self_", true);
        check_field("fileUploadId", "file_upload_id", true);
        check_field("file-upload id", "file_upload_id", true);
        check_field("2fa", "field_2fa", true);
        check_field("_private", "_private", false);
    }

    #[test]
    fn pascal_and_variants() {
        assert_eq!(enum_variant("completed_successfully"), "CompletedSuccessfully");
        assert_eq!(enum_variant("ENG5"), "Eng5");
        assert_eq!(enum_variant("GUEST"), "Guest");
        assert_eq!(enum_variant("en"), "En");
        assert_eq!(enum_variant("5th"), "V5th");
        assert_eq!(to_pascal_case("rankings"), "Rankings");
        assert_eq!(to_pascal_case("fileUpload"), "FileUpload");
    }
}
