//! Helpers of the pass-through property tests (each protocol's `round_trip_tests`): random
//! choices and the comparison that treats a `null` member as an absent one.

use serde_json::Value;

/// One of `options`, at random.
pub fn pick<T: Clone>(rng: &mut fastrand::Rng, options: &[T]) -> T {
    options[rng.usize(..options.len())].clone()
}

/// Now and then: the shapes the encoder does not write come one time in `n`, so most
/// bodies are ones it does.
pub fn rarely(rng: &mut fastrand::Rng, n: u8) -> bool {
    rng.u8(..n) == 0
}

/// `value` with every `null` member of every object removed.
pub fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}
