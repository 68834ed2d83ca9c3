//! A circuit breaker in front of the payment gateway: after a run of failed calls it
//! stops calling for a while, so an outage costs the gateway nothing and the sagas no
//! time, then lets one call through to see whether the gateway is back.
//!
//! ```text
//! closed ──(failures in a row reach the threshold)──▶ open
//!   ▲                                                  │ (the open period passed)
//!   └──(the probe succeeded)── half-open ◀─────────────┘
//!                                  └──(the probe failed)──▶ open
//! ```
//!
//! A failure is the gateway not answering in time, not being reached, or answering
//! 5xx or 429. Any other 4xx is an answer: the gateway is up, the request was wrong. An
//! outcome that comes back after the breaker moved on (a slow call) changes nothing,
//! and a call abandoned without an outcome gives its probe's place back. The state
//! machine is given the time, so it is tested without waiting.

use std::time::{Duration, Instant};

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Calls go through.
    Closed,
    /// Calls are refused until the open period ends.
    Open,
    /// One call (the probe) goes through; its outcome decides.
    HalfOpen,
}

impl State {
    /// The name used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// Leave to make one call, given by [`Breaker::allow`]; its outcome goes back to
/// [`Breaker::record`], or [`Breaker::abandon`] when the call ended without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    /// The breaker's generation when it was given: an outcome from an earlier one is
    /// stale (the breaker moved on since) and changes nothing.
    generation: u64,
    /// Whether it is the half-open state's one probe.
    probe: bool,
}

/// The breaker's state machine.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: State,
    failures: u32,
    opened_at: Option<Instant>,
    probing: bool,
    /// Bumped at every change of state.
    generation: u64,
}

impl Breaker {
    /// Opens after `threshold` failures in a row (at least 1), for `open_for`.
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            state: State::Closed,
            failures: 0,
            opened_at: None,
            probing: false,
            generation: 0,
        }
    }

    fn enter(&mut self, state: State) {
        if self.state != state {
            self.state = state;
            self.generation += 1;
        }
        self.probing = false;
    }

    /// The state at `now` (an open breaker whose period passed is half-open).
    pub fn state(&mut self, now: Instant) -> State {
        if self.state == State::Open
            && self
                .opened_at
                .is_some_and(|at| now.duration_since(at) >= self.open_for)
        {
            self.enter(State::HalfOpen);
        }
        self.state
    }

    /// Leave for a call at `now`, if any. In half-open, only one at a time: the probe.
    pub fn allow(&mut self, now: Instant) -> Option<Permit> {
        let probe = match self.state(now) {
            State::Closed => false,
            State::Open => return None,
            State::HalfOpen if self.probing => return None,
            State::HalfOpen => {
                self.probing = true;
                true
            }
        };
        Some(Permit {
            generation: self.generation,
            probe,
        })
    }

    /// Records how a call allowed by `permit` went. Returns the state after it.
    pub fn record(&mut self, permit: Permit, succeeded: bool, now: Instant) -> State {
        let state = self.state(now);
        if permit.generation != self.generation {
            // The breaker moved on while the call was out: its outcome is old news.
            return state;
        }
        if succeeded {
            self.failures = 0;
            self.enter(State::Closed);
            return self.state;
        }
        self.failures = self.failures.saturating_add(1);
        if state == State::HalfOpen || self.failures >= self.threshold {
            self.enter(State::Open);
            self.opened_at = Some(now);
        }
        self.state
    }

    /// A call allowed by `permit` ended without an outcome (its caller gave up on
    /// it): a probe's place is free again.
    pub fn abandon(&mut self, permit: Permit) {
        if permit.probe && permit.generation == self.generation {
            self.probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN_FOR: Duration = Duration::from_secs(5);

    /// A call at `now` that went as `succeeded`.
    fn call(breaker: &mut Breaker, succeeded: bool, now: Instant) -> State {
        let permit = breaker.allow(now).expect("a call is allowed");
        breaker.record(permit, succeeded, now)
    }

    fn given_open(at: Instant) -> Breaker {
        let mut breaker = Breaker::new(3, OPEN_FOR);
        for _ in 0..3 {
            call(&mut breaker, false, at);
        }
        breaker
    }

    #[test]
    fn failures_in_a_row_open_it() {
        let now = Instant::now();
        let mut breaker = Breaker::new(3, OPEN_FOR);
        call(&mut breaker, false, now);
        call(&mut breaker, false, now);
        assert_eq!(breaker.state(now), State::Closed);
        assert_eq!(call(&mut breaker, false, now), State::Open);
        assert!(breaker.allow(now).is_none());
    }

    #[test]
    fn a_success_between_failures_keeps_it_closed() {
        let now = Instant::now();
        let mut breaker = Breaker::new(3, OPEN_FOR);
        for succeeded in [false, false, true, false, false] {
            call(&mut breaker, succeeded, now);
        }
        assert_eq!(breaker.state(now), State::Closed);
        assert!(breaker.allow(now).is_some());
    }

    #[test]
    fn after_the_open_period_one_probe_goes_through() {
        let opened = Instant::now();
        let mut breaker = given_open(opened);
        assert!(breaker
            .allow(opened + OPEN_FOR - Duration::from_millis(1))
            .is_none());
        let later = opened + OPEN_FOR;
        assert_eq!(breaker.state(later), State::HalfOpen);
        assert!(breaker.allow(later).is_some(), "the probe");
        assert!(
            breaker.allow(later).is_none(),
            "a second call while the probe is out"
        );
    }

    #[test]
    fn a_successful_probe_closes_it() {
        let opened = Instant::now();
        let mut breaker = given_open(opened);
        let later = opened + OPEN_FOR;
        assert_eq!(call(&mut breaker, true, later), State::Closed);
        assert!(breaker.allow(later).is_some());
        assert!(breaker.allow(later).is_some());
    }

    #[test]
    fn a_failed_probe_opens_it_again_for_a_full_period() {
        let opened = Instant::now();
        let mut breaker = given_open(opened);
        let probe = opened + OPEN_FOR;
        assert_eq!(call(&mut breaker, false, probe), State::Open);
        assert!(breaker
            .allow(probe + OPEN_FOR - Duration::from_millis(1))
            .is_none());
        assert!(breaker.allow(probe + OPEN_FOR).is_some());
    }

    #[test]
    fn an_abandoned_probe_frees_its_place() {
        let opened = Instant::now();
        let mut breaker = given_open(opened);
        let later = opened + OPEN_FOR;
        let probe = breaker.allow(later).unwrap();
        breaker.abandon(probe);
        assert!(breaker.allow(later).is_some(), "another probe may go");
    }

    #[test]
    fn an_outcome_from_before_the_breaker_moved_on_changes_nothing() {
        let now = Instant::now();
        let mut breaker = Breaker::new(1, OPEN_FOR);
        let slow = breaker.allow(now).unwrap();
        // Another call fails and opens the circuit while the slow one is out...
        call(&mut breaker, false, now);
        assert_eq!(breaker.state(now), State::Open);
        // ...and the slow one's late success does not close it.
        assert_eq!(breaker.record(slow, true, now), State::Open);
    }
}
