//! A body stored as its differences from an earlier body of the same row: the provider's
//! request is the client's with a few spans changed (the model's value, `stream` taken out,
//! ...), and a translated request carries the client's long strings (tool results, code) in
//! the same order. LZ4 only finds a repeat within 64 KiB, so a 100 KB agent request sent on
//! cost the capture store's writer as much again as the client's (bench/results/fastpath.md,
//! session 23).
//!
//! A delta is a list of operations that rebuild the body: copy a run of the base's bytes
//! (`COPY`, its offset and length as u32, little-endian) or take bytes written out
//! (`LITERAL`, its length and the bytes). [`encode`] finds the runs the two share by walking
//! both front to back: where they part, it looks for a few bytes ahead in each in the
//! other, and takes the body's bytes in between as written out. It finds what is shared in order
//! (edits, members taken out or added), not moved blocks.

/// An operation that copies a run of the base: then its offset and length.
const COPY: u8 = 0;
/// An operation that writes bytes out: then their length and the bytes.
const LITERAL: u8 = 1;
/// How many bytes of one, where the two part, are looked for in the other to find where
/// they meet again.
const ANCHOR: usize = 32;
/// Shorter shared runs are written out: a copy takes 9 bytes.
const MIN_COPY: usize = 16;
/// How far past the point where the two part the anchor is taken from, tried in turn: just
/// past a changed value, past an added member, past a long added text.
const SKIPS: [usize; 5] = [ANCHOR, 128, 512, 2048, 8192];
/// The bytes searched over a whole delta (in the base and in the body), as a multiple of the
/// base's length, and how many times the two may part: two bodies that share little are
/// given up on rather than searched at length. A request translated to another protocol
/// parts from the client's at every message but shares its long texts: 40 tool results of
/// real source files (~100 KB) parted 39 times and searched 2.5 times the base's length for
/// a delta of 6.8 KB, in 36 µs (LZ4 took 310 µs for both bodies, 90 µs for one).
const SEARCH_BUDGET: usize = 4;
const MAX_PARTINGS: usize = 256;
/// How many places holding an anchor are weighed (see [`meeting_point`]).
const PLACES_TRIED: usize = 4;

/// Appends to `out` the operations that rebuild `body` from `base`; false (and `out` as it
/// was) when the delta would take more than a quarter of `body`'s length.
pub fn encode(base: &[u8], body: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    // The end they share is set aside first: one edit, however long, then costs nothing
    // to find.
    let shared_end = common_suffix(base, body);
    let (base_end, body_end) = (base.len() - shared_end, body.len() - shared_end);
    let (base_middle, body_middle) = (&base[..base_end], &body[..body_end]);
    let mut budget = base.len().saturating_mul(SEARCH_BUDGET);
    let (mut at_base, mut at_body, mut written_from, mut partings) = (0, 0, 0, 0);
    // The bytes not yet written out count too: two bodies that share little are given up
    // on early.
    while at_body < body_end && out.len() - start + (at_body - written_from) <= body.len() / 4 {
        let shared = common_prefix(&base_middle[at_base..], &body_middle[at_body..]);
        if shared >= MIN_COPY {
            push_literal(out, &body[written_from..at_body]);
            push_copy(out, at_base, shared);
            at_base += shared;
            at_body += shared;
            written_from = at_body;
            continue;
        }
        partings += 1;
        if partings > MAX_PARTINGS {
            out.truncate(start);
            return false;
        }
        match meeting_point(base_middle, body_middle, at_base, at_body, &mut budget) {
            Some((base_from, body_from)) => (at_base, at_body) = (base_from, body_from),
            None => break,
        }
    }
    push_literal(out, &body[written_from..body_end]);
    if shared_end > 0 {
        push_copy(out, base_end, shared_end);
    }
    let pays = out.len() - start <= body.len() / 4;
    if !pays {
        out.truncate(start);
    }
    pays
}

/// Where `base` and `body` meet again after parting at `at_base` and `at_body`, the
/// closest to where they parted in the body: the body's bytes a little ahead, looked for in
/// the base (bytes the base lost or had changed), and the base's bytes a little ahead,
/// looked for in the body (bytes the body gained), each moved back over the bytes before it
/// that the two also share.
fn meeting_point(
    base: &[u8],
    body: &[u8],
    at_base: usize,
    at_body: usize,
    budget: &mut usize,
) -> Option<(usize, usize)> {
    for skip in SKIPS {
        let mut best: Option<(usize, usize)> = None;
        let mut consider = |base_from: usize, body_from: usize| {
            if best.is_none_or(|(_, best_body)| body_from < best_body) {
                best = Some((base_from, body_from));
            }
        };
        places(body, at_body, base, at_base, skip, budget, |b, a| {
            consider(a, b)
        });
        places(base, at_base, body, at_body, skip, budget, &mut consider);
        if best.is_some() || *budget == 0 {
            return best;
        }
    }
    None
}

/// The first few places in `found_in` (from `at_found`) of the anchor `skip` bytes ahead of
/// `at_from` in `from`, each moved back over the bytes before it that the two share (never
/// behind `at_from` and `at_found`), given to `consider` as (place in `from`, place in
/// `found_in`). In text that repeats itself the first place is often not the right one.
fn places(
    from: &[u8],
    at_from: usize,
    found_in: &[u8],
    at_found: usize,
    skip: usize,
    budget: &mut usize,
    mut consider: impl FnMut(usize, usize),
) {
    let anchor_at = at_from + skip;
    let Some(anchor) = from.get(anchor_at..anchor_at + ANCHOR) else {
        return;
    };
    // Text added or taken out in one piece is found with a skip about a third of its
    // length, up to ~24 KiB with the largest skip; small windows for small skips keep a
    // miss cheap. A long text added into text that repeats itself may not be found: the
    // base's anchor, far ahead, first turns up in the wrong place (the body is then
    // stored whole).
    let search_to = found_in.len().min(at_found + 4 * skip + 256);
    // Built once for the places tried: building it took 7 % of the store writer's time
    // when each search built its own (perf, 100 KB translated requests).
    let finder = memchr::memmem::Finder::new(anchor);
    let mut search_from = at_found;
    for _ in 0..PLACES_TRIED {
        let ahead = &found_in[search_from..search_to];
        let found = finder.find(ahead);
        *budget = budget.saturating_sub(found.map_or(ahead.len(), |f| f + ANCHOR));
        let Some(found) = found else { return };
        let found_at = search_from + found;
        let back = common_suffix(&from[at_from..anchor_at], &found_in[at_found..found_at]);
        consider(anchor_at - back, found_at - back);
        if back == skip || *budget == 0 {
            return;
        }
        search_from = found_at + 1;
    }
}

/// Compared first, then `CHUNK`s, then bytes: a session's request shares ~100 KB with the
/// one before, and one call of `memcmp` for every 64 bytes was 7 % of the store writer's
/// time (perf, bench/results/fastpath.md, session 24).
const BLOCK: usize = 2048;
const CHUNK: usize = 64;

pub(super) fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let len = a.len().min(b.len());
    let mut at = 0;
    while at + BLOCK <= len && a[at..at + BLOCK] == b[at..at + BLOCK] {
        at += BLOCK;
    }
    while at + CHUNK <= len && a[at..at + CHUNK] == b[at..at + CHUNK] {
        at += CHUNK;
    }
    at + a[at..len]
        .iter()
        .zip(&b[at..len])
        .take_while(|(x, y)| x == y)
        .count()
}

fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let len = a.len().min(b.len());
    let (a, b) = (&a[a.len() - len..], &b[b.len() - len..]);
    let mut from = len;
    while from >= BLOCK && a[from - BLOCK..from] == b[from - BLOCK..from] {
        from -= BLOCK;
    }
    while from >= CHUNK && a[from - CHUNK..from] == b[from - CHUNK..from] {
        from -= CHUNK;
    }
    len - from
        + a[..from]
            .iter()
            .rev()
            .zip(b[..from].iter().rev())
            .take_while(|(x, y)| x == y)
            .count()
}

fn push_copy(out: &mut Vec<u8>, offset: usize, len: usize) {
    out.push(COPY);
    out.extend_from_slice(&(offset as u32).to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

fn push_literal(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    out.push(LITERAL);
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The body that `delta` rebuilds from `base`, at most `limit` bytes long; an error for a
/// delta that is cut off, copies from past the base's end or runs over the limit.
pub fn apply(base: &[u8], mut delta: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some((&op, rest)) = delta.split_first() {
        let (first, rest) = read_u32(rest)?;
        let taken: &[u8] = match op {
            COPY => {
                let (len, after) = read_u32(rest)?;
                delta = after;
                base.get(first..first.saturating_add(len)).ok_or_else(|| {
                    format!("a copy of {len} bytes from {first} is past its base's end")
                })?
            }
            LITERAL => {
                let (bytes, after) = rest
                    .split_at_checked(first)
                    .ok_or("a delta's written-out bytes are cut off")?;
                delta = after;
                bytes
            }
            other => return Err(format!("a delta holds an unknown operation {other}")),
        };
        if body.len() + taken.len() > limit {
            return Err(format!("a delta rebuilds more than {limit} bytes"));
        }
        body.extend_from_slice(taken);
    }
    Ok(body)
}

fn read_u32(bytes: &[u8]) -> Result<(usize, &[u8]), String> {
    let (value, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or("a delta's operation is cut off")?;
    Ok((u32::from_le_bytes(*value) as usize, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(base: &[u8], body: &[u8]) -> Option<usize> {
        let mut out = b"kept".to_vec();
        if !encode(base, body, &mut out) {
            assert_eq!(out, b"kept");
            return None;
        }
        let delta = &out[4..];
        assert_eq!(apply(base, delta, usize::MAX).unwrap(), body);
        Some(delta.len())
    }

    /// An agent's request: a system prompt, then turns of shell calls and their output.
    fn agent_request(model: &str, stream: bool) -> String {
        let turns: Vec<String> = (0..40)
            .map(|turn| {
                format!(
                    r#"{{"role":"tool","tool_call_id":"call_{turn}","content":"fn main() {{\n    println!(\"turn {turn}\");\n}}\n{}"}}"#,
                    "let x = \\\"y\\\";\\n".repeat(120)
                )
            })
            .collect();
        let stream = if stream { r#""stream":true,"# } else { "" };
        format!(
            r#"{{"model":"{model}",{stream}"messages":[{}],"temperature":0.2}}"#,
            turns.join(",")
        )
    }

    #[test]
    fn the_shared_start_and_end_are_found_to_the_byte_whatever_the_block_and_chunk() {
        let base: Vec<u8> = (0..3 * BLOCK + 100).map(|_| fastrand::u8(..)).collect();
        let mut parts = vec![0, 1, CHUNK - 1, CHUNK, BLOCK - 1, BLOCK, BLOCK + CHUNK + 3];
        parts.extend((0..200).map(|_| fastrand::usize(..base.len())));
        for part in parts {
            let mut body = base.clone();
            body[part] ^= 0x5a;
            let by_bytes = base.iter().zip(&body).take_while(|(a, b)| a == b).count();
            assert_eq!(common_prefix(&base, &body), by_bytes, "parting at {part}");
            let tail = base.len() - part - 1;
            assert_eq!(common_suffix(&base, &body), tail, "parting at {part}");
            // And against a shorter body.
            let cut = &body[..part];
            assert_eq!(common_prefix(&base, cut), part, "cut at {part}");
        }
        // And against a longer one.
        let longer = [&b"head"[..], &base].concat();
        assert_eq!(common_suffix(&longer, &base), base.len());
    }

    #[test]
    fn a_request_sent_on_with_its_model_changed_is_a_few_bytes() {
        let client = agent_request("gpt-4o", true);
        assert!(client.len() > 80_000, "{}", client.len());
        let sent = agent_request("gpt-4o-mini-2024-07-18", true);
        assert!(round_trip(client.as_bytes(), sent.as_bytes()).unwrap() < 64);
        // A member taken out, and one added at the end.
        let unstreamed = agent_request("gpt-4o", false);
        assert!(round_trip(client.as_bytes(), unstreamed.as_bytes()).unwrap() < 64);
        let with_usage = client.replace(
            r#","temperature":0.2}"#,
            r#","temperature":0.2,"stream_options":{"include_usage":true}}"#,
        );
        assert!(round_trip(client.as_bytes(), with_usage.as_bytes()).unwrap() < 128);
        // All three edits at once.
        let all = agent_request("o3", false).replace(
            r#","temperature":0.2}"#,
            r#","temperature":0.2,"stream_options":{"include_usage":true}}"#,
        );
        assert!(round_trip(client.as_bytes(), all.as_bytes()).unwrap() < 160);
    }

    #[test]
    fn long_texts_added_in_the_middle_are_written_out_once() {
        let client = agent_request("m", false);
        let (early, late) = (
            client.find("call_10").unwrap(),
            client.find("call_30").unwrap(),
        );
        let added = "a system reminder the proxy added. ".repeat(100);
        let sent = format!(
            "{}{added}{}{added}{}",
            &client[..early],
            &client[early..late],
            &client[late..]
        );
        let len = round_trip(client.as_bytes(), sent.as_bytes()).unwrap();
        assert!(len < 2 * added.len() + 64, "{len}");
    }

    #[test]
    fn a_request_in_another_protocol_keeps_only_its_own_framing() {
        let client = agent_request("m", false);
        // Parting at every message, as a translated request does, but sharing its texts.
        let translated = client
            .replace(
                r#"{"role":"tool","#,
                r#"{"role":"user","content":[{"type":"tool_result","#,
            )
            .replace(r#""content":"fn"#, r#""text":"fn"#);
        let len = round_trip(client.as_bytes(), translated.as_bytes()).unwrap();
        assert!(len < 40 * 128, "{len}");
    }

    #[test]
    fn a_long_text_taken_out_in_one_piece_is_found() {
        let client = agent_request("m", false);
        let (from, to) = (
            client.find("call_10").unwrap(),
            client.find("call_19").unwrap(),
        );
        assert!(to - from > 17_000, "{}", to - from);
        let cut = format!("{}{}", &client[..from], &client[to..]);
        let with_late_edit = |body: &str| body.replacen("call_30", "call_99", 1);
        // Another edit later, so the shared end does not reach the long one.
        // This text repeats every 16 bytes: a few places weighed are wrong ones, and cost a
        // little written out; the 17 KB taken out cost nothing.
        let len = round_trip(client.as_bytes(), with_late_edit(&cut).as_bytes()).unwrap();
        assert!(len < 2048, "{len}");
    }

    #[test]
    fn bodies_that_share_little_are_not_stored_as_a_delta() {
        let client = agent_request("m", false);
        let other: String = client.chars().rev().collect();
        assert_eq!(round_trip(client.as_bytes(), other.as_bytes()), None);
        assert_eq!(round_trip(b"", client.as_bytes()), None);
        // Parting every 100 bytes or so: given up on.
        let changed = client.replace("let x", "let z");
        assert_eq!(round_trip(client.as_bytes(), changed.as_bytes()), None);
        assert_eq!(round_trip(client.as_bytes(), b"{}"), None);
    }

    #[test]
    fn random_edits_rebuild_the_body_exactly() {
        let mut rng = fastrand::Rng::with_seed(17);
        let base = agent_request("m", true).into_bytes();
        let mut as_delta = 0;
        for _ in 0..300 {
            let mut body = base.clone();
            for _ in 0..rng.usize(0..6) {
                let at = rng.usize(0..body.len());
                let cut = rng.usize(0..64).min(body.len() - at);
                let insert: Vec<u8> = (0..rng.usize(0..80)).map(|_| rng.u8(b' '..=b'~')).collect();
                body.splice(at..at + cut, insert);
            }
            let mut out = Vec::new();
            if encode(&base, &body, &mut out) {
                assert_eq!(apply(&base, &out, usize::MAX).unwrap(), body);
                as_delta += 1;
            }
        }
        // A few local edits always pay.
        assert_eq!(as_delta, 300);
    }

    #[test]
    fn a_broken_delta_is_an_error() {
        let base = b"0123456789";
        let copy = |offset: u32, len: u32| {
            [&[COPY][..], &offset.to_le_bytes(), &len.to_le_bytes()].concat()
        };
        assert_eq!(apply(base, &copy(2, 3), 100).unwrap(), b"234");
        for delta in [
            copy(8, 3),
            copy(u32::MAX, 2),
            copy(0, 10)[..7].to_vec(),
            [&[LITERAL][..], &5u32.to_le_bytes(), b"abc"].concat(),
            vec![7, 0, 0, 0, 0],
            [copy(0, 10), copy(0, 10)].concat(),
        ] {
            assert!(apply(base, &delta, 15).is_err(), "{delta:?}");
        }
    }
}
