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
//! 5xx. A 4xx is an answer: the gateway is up, the request was wrong. The state machine
//! is given the time, so it is tested without waiting.

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

/// The breaker's state machine.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: State,
    failures: u32,
    opened_at: Option<Instant>,
    probing: bool,
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
        }
    }

    /// The state at `now` (an open breaker whose period passed is half-open).
    pub fn state(&mut self, now: Instant) -> State {
        if self.state == State::Open
            && self
                .opened_at
                .is_some_and(|at| now.duration_since(at) >= self.open_for)
        {
            self.state = State::HalfOpen;
            self.probing = false;
        }
        self.state
    }

    /// Whether a call may go out at `now`. In half-open, only one at a time: the probe.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state(now) {
            State::Closed => true,
            State::Open => false,
            State::HalfOpen if self.probing => false,
            State::HalfOpen => {
                self.probing = true;
                true
            }
        }
    }

    /// Records how an allowed call went. Returns the state after it.
    pub fn record(&mut self, succeeded: bool, now: Instant) -> State {
        let state = self.state(now);
        if succeeded {
            self.failures = 0;
            self.state = State::Closed;
            self.probing = false;
            return self.state;
        }
        self.failures = self.failures.saturating_add(1);
        if state == State::HalfOpen || self.failures >= self.threshold {
            self.state = State::Open;
            self.opened_at = Some(now);
            self.probing = false;
        }
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN_FOR: Duration = Duration::from_secs(5);

    fn given_open(at: Instant) -> Breaker {
        let mut breaker = Breaker::new(3, OPEN_FOR);
        for _ in 0..3 {
            assert!(breaker.allow(at));
            breaker.record(false, at);
        }
        breaker
    }

    #[test]
    fn failures_in_a_row_open_it() {
        let now = Instant::now();
        let mut breaker = Breaker::new(3, OPEN_FOR);
        breaker.record(false, now);
        breaker.record(false, now);
        assert_eq!(breaker.state(now), State::Closed);
        assert_eq!(breaker.record(false, now), State::Open);
        assert!(!breaker.allow(now));
    }

    #[test]
    fn a_success_between_failures_keeps_it_closed() {
        let now = Instant::now();
        let mut breaker = Breaker::new(3, OPEN_FOR);
        breaker.record(false, now);
        breaker.record(false, now);
        breaker.record(true, now);
        breaker.record(false, now);
        breaker.record(false, now);
        assert_eq!(breaker.state(now), State::Closed);
        assert!(breaker.allow(now));
    }

    #[test]
    fn after_the_open_period_one_probe_goes_through() {
        let opened = Instant::now();
        let mut breaker = given_open(opened);
        assert!(!breaker.allow(opened + OPEN_FOR - Duration::from_millis(1)));
        let later = opened + OPEN_FOR;
        assert_eq!(breaker.state(later), State::HalfOpen);
        assert!(breaker.allow(later), "the probe");
        assert!(
            !breaker.allow(later),
            "a second call while the probe is out"
        );
    }

    #[test]
    fn a_successful_probe_closes_it() {
        let opened = Instant::now();
        let mut breaker = given_open(opened);
        let later = opened + OPEN_FOR;
        assert!(breaker.allow(later));
        assert_eq!(breaker.record(true, later), State::Closed);
        assert!(breaker.allow(later));
        assert!(breaker.allow(later));
    }

    #[test]
    fn a_failed_probe_opens_it_again_for_a_full_period() {
        let opened = Instant::now();
        let mut breaker = given_open(opened);
        let probe = opened + OPEN_FOR;
        assert!(breaker.allow(probe));
        assert_eq!(breaker.record(false, probe), State::Open);
        assert!(!breaker.allow(probe + OPEN_FOR - Duration::from_millis(1)));
        assert!(breaker.allow(probe + OPEN_FOR));
    }
}
