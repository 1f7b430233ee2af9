//! Failover: a request for a failover route (`[routes.NAME]`, or one made in chat with
//! `!/failover-route(...)`) goes to its legs in order, each up to `attempts_per_leg` times,
//! until one answers. Only a failure that `retry_on` names moves it on, and only before the
//! answer's first event: a back-end call resolves once its first event arrived, so a
//! failure after that reaches the client as the end of the answer, never as a second one.
//! Every attempt is in the request's attempt chain (`x-llmux-attempts`, the log line, the
//! capture row), and each move to another leg is announced (a desktop notification). Legs
//! whose back-end's circuit breaker is open are tried last.

use std::time::Duration;

use async_trait::async_trait;

use super::{Phases, Reads, RequestContext, Stage, Upstream};
use crate::Error;
use crate::backend::EventStream;
use crate::error::ErrorKind;
use crate::model::Request;
use crate::router::Target;
use crate::router::breaker::Notice;

/// The longest wait before trying the same leg again; a leg that asks for longer
/// (Retry-After) is left for the next one.
const MAX_SAME_LEG_WAIT: Duration = Duration::from_secs(5);
/// The wait before trying the same leg again when it gave none.
const SAME_LEG_WAIT: Duration = Duration::from_millis(200);

pub struct Failover;

#[async_trait]
impl Stage for Failover {
    fn name(&self) -> &'static str {
        "failover"
    }

    fn reads(&self) -> Reads {
        Reads::NOTHING
    }

    fn phases(&self) -> Phases {
        Phases::AROUND_UPSTREAM
    }

    async fn around_upstream(
        &self,
        ctx: &RequestContext,
        request: &Request,
        next: Upstream<'_>,
    ) -> Result<EventStream, Error> {
        let plan = next.plan();
        let Some(route) = &plan.route else {
            return next.send(request).await;
        };
        // Legs whose back-end's breaker is open go last: tried only when the others fail.
        let breakers = next.health().breakers();
        let (closed, open): (Vec<&Target>, Vec<&Target>) = plan
            .legs
            .iter()
            .partition(|leg| !breakers.is_open(leg.backend.id()));
        let legs: Vec<&Target> = closed.into_iter().chain(open).collect();
        let mut last_error = None;
        for (i, leg) in legs.iter().copied().enumerate() {
            for attempt in 1..=route.attempts_per_leg {
                let err = match next.to(leg).send(request).await {
                    Ok(events) => return Ok(events),
                    Err(err) if route.retry_on.matches(&err) => err,
                    Err(err) => return Err(err),
                };
                let wait = err.retry_after().unwrap_or(SAME_LEG_WAIT);
                let circuit_open = matches!(err.kind(), ErrorKind::CircuitOpen { .. });
                let same_leg =
                    attempt < route.attempts_per_leg && wait <= MAX_SAME_LEG_WAIT && !circuit_open;
                // Passing an open leg by is no news: its breaker opening was.
                if !same_leg
                    && !circuit_open
                    && let Some(to) = legs.get(i + 1)
                {
                    next.health().notify(Notice::FailedOver {
                        route: route.name.clone(),
                        from: format!("{leg:?}"),
                        to: format!("{to:?}"),
                        failure: err.failure_label().into_owned(),
                    });
                }
                if same_leg || i + 1 < legs.len() {
                    tracing::info!(
                        request_id = %ctx.request_id,
                        route = %route.name,
                        leg = ?leg,
                        attempt,
                        failure = %err.failure_label(),
                        "failover: trying again"
                    );
                }
                last_error = Some(err);
                if !same_leg {
                    break;
                }
                tokio::time::sleep(wait).await;
            }
        }
        Err(last_error.unwrap_or_else(|| {
            Error::internal(format!("failover route '{}' has no legs", route.name))
        }))
    }
}
