//! Enums that accept values added after they were generated.
//!
//! Producers add enum values over time. A consumer that rejected an unknown value in a field it
//! only forwards would lose notifications for no reason, so every generated enum has an
//! `Unrecognized(String)` variant and round-trips any string. `#[derive(herald_macros::OpenEnum)]`
//! implements this trait together with `Serialize`, `Deserialize`, `Display` and `FromStr`.

/// A string enum with a catch-all variant for values it does not know.
pub trait OpenEnum: Sized {
    /// The values known when the enum was generated, in schema order.
    const KNOWN_VALUES: &'static [&'static str];

    /// The value as sent on the wire.
    fn as_str(&self) -> &str;

    /// The variant for `value`; an unknown value is kept in the catch-all variant.
    fn from_value(value: String) -> Self;

    /// Whether this is one of [`OpenEnum::KNOWN_VALUES`].
    fn is_known(&self) -> bool {
        Self::KNOWN_VALUES.contains(&self.as_str())
    }
}
