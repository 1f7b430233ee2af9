//! llmux: an LLM interactive proxy.
//!
//! Clients speak their protocol to llmux; llmux decodes it into the canonical model
//! ([`model`]), runs the pipeline, routes to a back-end, and encodes the back-end's event
//! stream back into the client's protocol. [`frontend::apps`] builds the axum apps of an
//! engine's ports and [`server::Listeners`] serves them: the CLI, the desktop shell and the
//! tests all start llmux that way.

pub mod error;
pub mod model;
pub mod protocol;

pub use error::Error;
pub mod admin;
pub mod auth;
pub mod backend;
pub mod config;
pub mod connect;
pub mod credentials;
pub mod engine;
pub mod frontend;
pub mod metrics;
pub mod pipeline;
pub mod process;
mod quiet_timer;
pub mod rewake;
pub mod router;

pub use config::Config;
pub use engine::Engine;
pub mod capture;
pub mod server;
pub mod state;
