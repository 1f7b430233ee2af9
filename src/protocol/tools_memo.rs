//! Tool definitions decoded for an earlier request, reused when a later request sends the
//! same bytes.
//!
//! A coding agent sends the same tools with every request: Claude Code's are some twenty
//! JSON schemas, tens of KB decoded into maps of small allocations each time, though they
//! change only when the agent's set of tools does. Twenty such tools were 70 % of an 18 KB
//! request's instructions, and more than the rest of a 100 KB one read through the message
//! memo (bench/callgrind.sh, `--extra-tools 20`). The tools of an OpenAI chat or Anthropic
//! request, read as their JSON text, are compared byte for byte with the lists kept, and a
//! list sent before is the one decoded then, shared (`model::Shared`): a stage that
//! changes the tools copies them first.
//!
//! Decoding a list is a pure function of its JSON text, and only a list that decoded is
//! kept, so a kept list is what decoding the text again gives. The texts are compared
//! whole, never by a hash.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::Error;
use crate::model::{Shared, Tool};

/// Lists of tools kept at most: an agent's, its sub-agents' and a few more.
const KEPT: usize = 8;
/// A list's text longer than this is decoded each time and not kept.
const LONGEST: usize = 1 << 20;

/// A list of tools as it was sent and as it decoded.
struct Kept {
    text: Box<str>,
    tools: Shared<Tool>,
    /// Whether the encoder writes every tool again as it came.
    round_trips: bool,
}

/// The memo of the latest lists of tools (see the module's comment).
#[derive(Default)]
pub(crate) struct ToolsMemo {
    kept: Mutex<VecDeque<Arc<Kept>>>,
    /// Lists decoded rather than reused, for the tests.
    #[cfg(test)]
    decoded: std::sync::atomic::AtomicUsize,
}

impl ToolsMemo {
    /// The tools whose JSON list is `text`, and whether the encoder writes each again as
    /// it came: those decoded from the same text before, else what `decode` makes of it.
    /// An error of `decode` is returned as it is, and nothing is kept.
    pub(crate) fn tools(
        &self,
        text: &str,
        decode: impl FnOnce(&str) -> Result<(Vec<Tool>, bool), Error>,
    ) -> Result<(Shared<Tool>, bool), Error> {
        if let Some(kept) = self.find(text) {
            return Ok((kept.tools.clone(), kept.round_trips));
        }
        #[cfg(test)]
        self.decoded
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tools, round_trips) = decode(text)?;
        let tools = Shared::new(tools);
        if text.len() <= LONGEST {
            self.keep(Kept {
                text: text.into(),
                tools: tools.clone(),
                round_trips,
            });
        }
        Ok((tools, round_trips))
    }

    /// The list kept for `text`, which becomes the first to be kept. The texts are
    /// compared after the lock is let go.
    fn find(&self, text: &str) -> Option<Arc<Kept>> {
        let same_length: Vec<Arc<Kept>> = self
            .lock()
            .iter()
            .filter(|kept| kept.text.len() == text.len())
            .cloned()
            .collect();
        let found = same_length.into_iter().find(|kept| *kept.text == *text)?;
        let mut kept = self.lock();
        if let Some(at) = kept.iter().position(|k| Arc::ptr_eq(k, &found))
            && at > 0
            && let Some(moved) = kept.remove(at)
        {
            kept.push_front(moved);
        }
        Some(found)
    }

    fn keep(&self, new: Kept) {
        let mut kept = self.lock();
        kept.push_front(Arc::new(new));
        kept.truncate(KEPT);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Kept>>> {
        // A panic while holding the lock leaves nothing half-changed that matters: the
        // list is only a memo.
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lists decoded rather than reused so far.
    #[cfg(test)]
    pub(crate) fn decoded(&self) -> usize {
        self.decoded.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(text: &str) -> Result<(Vec<Tool>, bool), Error> {
        let names: Vec<String> =
            serde_json::from_str(text).map_err(|err| Error::invalid_request(err.to_string()))?;
        let tools = names
            .into_iter()
            .map(|name| Tool::Function {
                name,
                description: None,
                parameters: None,
                strict: None,
                extensions: Default::default(),
            })
            .collect();
        Ok((tools, !text.contains(' ')))
    }

    #[test]
    fn the_same_text_is_the_list_decoded_before_another_is_decoded() {
        let memo = ToolsMemo::default();
        let (first, round_trips) = memo.tools(r#"["a","b"]"#, named).unwrap();
        assert!(round_trips);
        let (again, _) = memo.tools(r#"["a","b"]"#, named).unwrap();
        assert!(Shared::same_list(&first, &again));
        assert_eq!(memo.decoded(), 1);
        // Equal tools written otherwise are another text.
        let (spaced, round_trips) = memo.tools(r#"["a", "b"]"#, named).unwrap();
        assert!(!round_trips);
        assert!(!Shared::same_list(&first, &spaced));
        assert_eq!(spaced, first);
        assert_eq!(memo.decoded(), 2);
    }

    #[test]
    fn an_error_is_returned_and_nothing_is_kept() {
        let memo = ToolsMemo::default();
        assert!(memo.tools(r#"["a",1]"#, named).is_err());
        assert!(memo.tools(r#"["a",1]"#, named).is_err());
        assert_eq!(memo.decoded(), 2);
    }

    #[test]
    fn the_latest_lists_are_kept_and_a_list_used_again_stays() {
        let memo = ToolsMemo::default();
        let list = |i: usize| format!(r#"["tool{i}"]"#);
        memo.tools(&list(0), named).unwrap();
        for i in 1..KEPT + 4 {
            memo.tools(&list(i), named).unwrap();
            // The first list is used between the others: never the oldest.
            memo.tools(&list(0), named).unwrap();
        }
        let decoded = memo.decoded();
        memo.tools(&list(0), named).unwrap();
        memo.tools(&list(KEPT + 3), named).unwrap();
        assert_eq!(memo.decoded(), decoded);
        memo.tools(&list(1), named).unwrap();
        assert_eq!(memo.decoded(), decoded + 1, "the oldest list was let go");
    }
}
