//! The canonical model: the one shape every wire protocol decodes into and encodes from.
//!
//! Nothing here does I/O or knows a wire format. A protocol module (`crate::protocol::*`)
//! turns its wire types into a [`Request`] and turns a stream of [`Event`]s back into its
//! own frames. Fields the model has no slot for travel in [`Extensions`], tagged with the
//! protocol they came from, so a same-protocol round trip loses nothing.

mod event;
mod facts;
mod fold;
pub mod json_scan;
mod request;
mod shared;
pub mod tokens;
mod verbatim;
mod verbatim_request;

pub use event::{Event, FinishReason, Usage};
pub use facts::{Facts, MessageFacts};
pub use fold::{Response, ResponseBuilder};
pub use request::{
    ClientInfo, Extensions, ImageSource, Message, Part, Protocol, Reasoning, ReasoningEffort,
    Request, ResponseFormat, Role, Sampling, Tool, ToolChoice,
};
pub use shared::{Shared, SharedMap};
pub use verbatim::VerbatimSlot;
pub use verbatim_request::{ClientBody, Edits, Splice};
