//! The background tasks herald needs in order to deliver (consumer, Redis subscriber, parking
//! sweeper, HTTP server), watched together: each is meant to run until shutdown, so one that
//! ends before it, by returning or by panicking, is news. `run` waits on [`Supervisor::ended`]
//! beside the shutdown signal and stops the process with an error naming the task and why, so an
//! orchestrator restarts it instead of leaving an instance that accepts sockets but delivers
//! nothing.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinError, JoinSet};

/// A task that ended, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ended {
    pub task: &'static str,
    pub reason: String,
}

/// Named tasks in one `JoinSet`.
#[derive(Default)]
pub(crate) struct Supervisor {
    tasks: JoinSet<Result<(), String>>,
    names: HashMap<Id, &'static str>,
}

impl Supervisor {
    /// Runs `task` as the task called `name`. `Err` carries why it gave up.
    pub(crate) fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = Result<(), String>> + Send + 'static,
    ) {
        let handle = self.tasks.spawn(task);
        self.names.insert(handle.id(), name);
    }

    /// Waits until any task ends and says which and why. Pends for ever when there is none.
    pub(crate) async fn ended(&mut self) -> Ended {
        let Some(result) = self.tasks.join_next_with_id().await else {
            return std::future::pending().await;
        };
        let (id, reason) = match result {
            Ok((id, Ok(()))) => (id, "returned".to_owned()),
            Ok((id, Err(error))) => (id, format!("failed: {error}")),
            Err(error) => (error.id(), why_join_failed(&error)),
        };
        Ended { task: self.names.remove(&id).unwrap_or("unnamed"), reason }
    }

    /// Waits for every task to end (after shutdown was signalled), logging any that failed.
    pub(crate) async fn drain(&mut self) {
        while !self.tasks.is_empty() {
            let ended = self.ended().await;
            if ended.reason != "returned" {
                tracing::warn!(task = ended.task, reason = %ended.reason, "task ended badly during shutdown");
            }
        }
    }
}

/// The panic message of a task, or why it was cancelled.
fn why_join_failed(error: &JoinError) -> String {
    if !error.is_panic() {
        return "was cancelled".to_owned();
    }
    // A JoinError only lends its payload by value; describe it from its Display, which carries
    // the message for `&str` and `String` panics ("task 7 panicked with message \"...\"").
    error.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_or_returns_is_named_with_why() {
        let mut supervisor = Supervisor::default();
        supervisor.spawn("sleeper", std::future::pending());
        supervisor.spawn("consumer", async {
            // The panic from the report (a byte cut inside a character), reproduced on purpose.
            let mut text = "é".repeat(600);
            text.truncate(1023);
            Ok(())
        });
        let ended = supervisor.ended().await;
        assert_eq!(ended.task, "consumer");
        assert!(ended.reason.contains("panicked") && ended.reason.contains("is_char_boundary"), "{}", ended.reason);

        supervisor.spawn("sweeper", async { Ok(()) });
        assert_eq!(supervisor.ended().await, Ended { task: "sweeper", reason: "returned".into() });

        supervisor.spawn("dead letters", async { Err("the topic cannot be written".to_owned()) });
        assert_eq!(
            supervisor.ended().await,
            Ended { task: "dead letters", reason: "failed: the topic cannot be written".into() }
        );
    }

    #[tokio::test]
    async fn with_no_tasks_it_waits_for_ever() {
        let mut supervisor = Supervisor::default();
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), supervisor.ended()).await;
        assert!(waited.is_err());
    }
}
