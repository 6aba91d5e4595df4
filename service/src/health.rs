//! Readiness that tells the truth: every loop herald needs in order to deliver owns a named check,
//! and `/readyz` is 503 while any check fails.
//!
//! A check fails for one of two reasons: its owner said so (`fail`, with a reason a person can act
//! on), or its owner declared a bound and has not reported within it (`stale_after`): a loop that
//! is wedged cannot say it is wedged, so silence past the bound counts as failure. Each check is
//! also the gauge `herald_ready_check{check="..."}` (1 passing, 0 failing), refreshed whenever
//! readiness or metrics are read.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// The named checks, shared by their owners and the HTTP handlers.
#[derive(Clone)]
pub(crate) struct Health {
    checks: Arc<Mutex<BTreeMap<&'static str, Check>>>,
    metrics: Metrics,
}

struct Check {
    /// `None` while passing; the reason otherwise.
    failure: Option<String>,
    /// When the owner last reported.
    reported: Instant,
    /// Silence longer than this is a failure.
    stale_after: Option<Duration>,
}

/// One check's state as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub check: &'static str,
    /// `None` when passing.
    pub failure: Option<String>,
}

impl Health {
    pub(crate) fn new(metrics: Metrics) -> Self {
        Health { checks: Arc::default(), metrics }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<&'static str, Check>> {
        // Every change is one insert, so a panic elsewhere cannot leave the map inconsistent.
        self.checks.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a check that fails with `initially` until its owner reports it passing. With
    /// `stale_after`, it also fails when its owner stays silent for longer than that.
    pub(crate) fn declare(&self, check: &'static str, initially: &str, stale_after: Option<Duration>) {
        self.lock().insert(check, Check { failure: Some(initially.to_owned()), reported: Instant::now(), stale_after });
    }

    /// The owner reports the check passing (and alive).
    pub(crate) fn pass(&self, check: &'static str) {
        self.report(check, None);
    }

    /// The owner reports the check failing, and why.
    pub(crate) fn fail(&self, check: &'static str, reason: impl Into<String>) {
        self.report(check, Some(reason.into()));
    }

    fn report(&self, check: &'static str, failure: Option<String>) {
        let mut checks = self.lock();
        let entry =
            checks.entry(check).or_insert_with(|| Check { failure: None, reported: Instant::now(), stale_after: None });
        entry.failure = failure;
        entry.reported = Instant::now();
    }

    /// Every check, in name order, with staleness applied; refreshes the gauges.
    pub(crate) fn statuses(&self) -> Vec<Status> {
        let now = Instant::now();
        let statuses: Vec<Status> = self
            .lock()
            .iter()
            .map(|(check, state)| {
                let silence = now.saturating_duration_since(state.reported);
                let failure = match (&state.failure, state.stale_after) {
                    (Some(failure), _) => Some(failure.clone()),
                    (None, Some(bound)) if silence > bound => {
                        Some(format!("no report for {} ms (bound {} ms)", silence.as_millis(), bound.as_millis()))
                    }
                    (None, _) => None,
                };
                Status { check, failure }
            })
            .collect();
        for status in &statuses {
            self.metrics.ready_check(status.check, status.failure.is_none());
        }
        statuses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_check_fails_until_passed_and_again_when_failed_or_silent() {
        let health = Health::new(Metrics::new().0);
        health.declare("loop", "starting", Some(Duration::from_millis(20)));
        health.declare("other", "starting", None);
        let failing = |health: &Health| {
            health
                .statuses()
                .into_iter()
                .filter(|status| status.failure.is_some())
                .map(|status| status.check)
                .collect::<Vec<_>>()
        };
        assert_eq!(failing(&health), ["loop", "other"]);
        health.pass("loop");
        health.pass("other");
        assert!(failing(&health).is_empty());
        health.fail("other", "broken");
        assert_eq!(health.statuses()[1].failure.as_deref(), Some("broken"));
        health.pass("other");
        // Waiting out the bound is the condition under test here, not a synchronisation.
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(failing(&health), ["loop"], "silence past the bound is a failure");
        health.pass("loop");
        assert!(failing(&health).is_empty());
    }
}
