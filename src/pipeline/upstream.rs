//! The `around_upstream` phase's chain: each stage gets an [`Upstream`] for the stages
//! inside it, and the innermost one calls the back-end.

use std::sync::Arc;

use super::{RequestContext, Stage};
use crate::Error;
use crate::backend::EventStream;
use crate::capture::Tap;
use crate::router::Target;

/// The rest of the call: the stages inside this one, then the back-end. Copy, so a stage
/// may send more than once (a retry).
#[derive(Clone, Copy)]
pub struct Upstream<'a> {
    stages: &'a [Arc<dyn Stage>],
    ctx: &'a RequestContext,
    target: &'a Target,
    tap: Option<&'a Tap>,
}

impl<'a> Upstream<'a> {
    pub fn new(
        stages: &'a [Arc<dyn Stage>],
        ctx: &'a RequestContext,
        target: &'a Target,
        tap: Option<&'a Tap>,
    ) -> Self {
        Self {
            stages,
            ctx,
            target,
            tap,
        }
    }

    /// Where the call goes.
    pub fn target(&self) -> &Target {
        self.target
    }

    /// Sends `request` through the remaining stages to the back-end.
    pub async fn send(self, request: &crate::model::Request) -> Result<EventStream, Error> {
        match self.stages.split_first() {
            Some((stage, inner)) => {
                let next = Upstream {
                    stages: inner,
                    ..self
                };
                stage.around_upstream(self.ctx, request, next).await
            }
            None => {
                let target = self.target;
                target.backend.send(request, &target.model, self.tap).await
            }
        }
    }
}
