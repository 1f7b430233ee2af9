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
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    };
    feed(
        request
            .client
            .user_agent
            .as_deref()
            .unwrap_or("")
            .as_bytes(),
    );
    if let Some(first) = request
        .messages
        .iter()
        .find(|m| m.role == crate::model::Role::User)
    {
        feed(first.text().as_bytes());
    }
    format!("auto-{hash:016x}")
}
