//! Helpers of the pass-through property tests (each protocol's `round_trip_tests`): random
//! choices and the comparison that treats a `null` member as an absent one.

use serde_json::Value;

use crate::model::{Event, Response, ResponseBuilder};
use crate::protocol::ChunkError;

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

/// How many of 3,000 random bodies passed through and how many were encoded.
pub struct Tally {
    pub passed: usize,
    pub encoded: usize,
}

/// Sends 3,000 bodies from `generate` through `decode` (a `decode_response_checked`) and,
/// for every body it says round-trips, asserts that `encode` of the folded events is that
/// body (`null` members aside).
pub fn check_pass_through(
    generate: impl Fn(&mut fastrand::Rng) -> Value,
    decode: impl Fn(&[u8]) -> Result<(Vec<Event>, bool), ChunkError>,
    encode: impl Fn(&Response) -> Value,
) -> Tally {
    let mut tally = Tally {
        passed: 0,
        encoded: 0,
    };
    for seed in 0..3000 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let upstream = generate(&mut rng);
        let body = serde_json::to_vec(&upstream).unwrap();
        let Ok((events, round_trips)) = decode(&body) else {
            continue;
        };
        if !round_trips {
            tally.encoded += 1;
            continue;
        }
        tally.passed += 1;
        let mut folded = ResponseBuilder::new();
        for event in events {
            folded.push(event).unwrap();
        }
        assert_eq!(
            without_nulls(encode(&folded.finish())),
            without_nulls(upstream.clone()),
            "seed {seed}: the pass-through would differ from the encoder for {upstream}"
        );
    }
    tally
}
