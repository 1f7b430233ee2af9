//! Which conversation a request belongs to: the client's `x-session-id`, else an id derived
//! from what stays the same for every request of one conversation. In-chat commands, the
//! routing state and the planning phase all keep their state per session.

use async_trait::async_trait;

use super::{Flow, Phases, Reads, RequestContext, Stage};
use crate::Error;
use crate::model::Request;

pub struct SessionId;

#[async_trait]
impl Stage for SessionId {
    fn name(&self) -> &'static str {
        "session"
    }

    fn reads(&self) -> Reads {
        Reads::MESSAGES
    }

    fn phases(&self) -> Phases {
        Phases::ON_REQUEST
    }

    async fn on_request(
        &self,
        ctx: &mut RequestContext,
        request: &mut Request,
    ) -> Result<Flow, Error> {
        ctx.session_id = match &request.client.session_id {
            Some(id) if !id.is_empty() => id.clone(),
            _ => derive_session_id(request),
        };
        Ok(Flow::Continue)
    }
}

/// A session id for clients that send no `x-session-id`: a hash of the user agent and the
/// first user message, which stay the same for every request of one conversation.
pub fn derive_session_id(request: &Request) -> String {
    // FNV-1a: stable across processes and releases, so instances sharing state agree.
    let mut hash = Fnv1a::default();
    let user_agent = request.client.user_agent.as_deref().unwrap_or("");
    hash.write(user_agent.as_bytes());
    hash.end_field();
    if let Some(first) = request
        .messages
        .iter()
        .find(|m| m.role == crate::model::Role::User)
    {
        // The message's text parts one after another, as `Message::text` joins them, without
        // copying them into one string first.
        for text in first.parts.iter().filter_map(crate::model::Part::as_text) {
            hash.write(text.as_bytes());
        }
        hash.end_field();
    }
    let mut id = String::with_capacity(21);
    id.push_str("auto-");
    super::push_hex(&mut id, hash.0, 16);
    id
}

/// 64-bit FNV-1a, with a separator byte after each field.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    const PRIME: u64 = 0x0100_0000_01b3;

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn end_field(&mut self) {
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(Self::PRIME);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Message, Part, Role};

    #[test]
    fn a_derived_session_id_stays_what_earlier_releases_derived() {
        // The value the first release's `format!`-based code gave for this request: instances
        // of different releases that share state must agree on it.
        let mut request = Request::new(
            "m",
            vec![
                Message::new(Role::System, vec![Part::text("be brief")]),
                Message::new(
                    Role::User,
                    vec![Part::text("fix the build ✓"), Part::text("second part")],
                ),
                Message::new(Role::User, vec![Part::text("later")]),
            ],
        );
        request.client.user_agent = Some("claude-cli/2.1.0".into());
        assert_eq!(derive_session_id(&request), "auto-4d6a0e9cc36e7324");
        request.client.user_agent = None;
        assert_ne!(derive_session_id(&request), "auto-4d6a0e9cc36e7324");
    }

    #[test]
    fn a_derived_session_id_reads_only_the_first_user_messages_text() {
        let image = Part::Image {
            source: crate::model::ImageSource::Url("https://example.com/a.png".into()),
            detail: None,
            extensions: Default::default(),
        };
        let with = |parts: Vec<Part>| {
            let mut request = Request::new("m", vec![Message::new(Role::User, parts)]);
            request.client.user_agent = Some("ua".into());
            derive_session_id(&request)
        };
        // An image between two texts changes nothing; the same texts split differently
        // do not either (the text is read as one).
        let plain = with(vec![Part::text("ab"), Part::text("cd")]);
        assert_eq!(
            with(vec![Part::text("ab"), image.clone(), Part::text("cd")]),
            plain
        );
        assert_eq!(with(vec![Part::text("abcd")]), plain);
        assert_ne!(with(vec![Part::text("abce")]), plain);
        // A user message without text, and no user message at all, are two ids.
        let no_text = with(vec![image]);
        let mut alone = Request::new(
            "m",
            vec![Message::new(Role::Assistant, vec![Part::text("x")])],
        );
        alone.client.user_agent = Some("ua".into());
        assert_ne!(no_text, derive_session_id(&alone));
        assert!(
            no_text.starts_with("auto-") && no_text.len() == 21,
            "{no_text}"
        );
    }
}
