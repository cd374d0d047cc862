//! The unknown-outcome rule of one compare-and-append, as a plain core: the adapter tells it
//! what the engine answered (or that nothing came back) and does what it says next. No I/O, no
//! clock of its own: `now` is an input, so every path is unit-tested below.
//!
//! The rule (design §4.4): re-send the *same bytes* with the *same id* and the *same expected
//! sequence* until the deadline. An answer "the log does not end there" is resolved by reading
//! the record after the expected sequence back from the leader: if it is ours, the append
//! committed (an earlier attempt whose acknowledgement was lost); if it is another writer's, we
//! are fenced. A "duplicate" acknowledgement (the server's msg-id dedupe) is read back too: the
//! server compares ids, and only equal bytes make the record ours. At the deadline the outcome is [`LogError::Unavailable`] when every attempt was
//! refused by the engine (nothing was written) and [`LogError::Unknown`] when any attempt may
//! have been stored: the caller must then never hand that sequence's content out again.

use std::time::{Duration, Instant};

use crate::log::LogError;

/// First wait between attempts; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
/// Longest wait between attempts: a leader election takes 4–9 s, so retries stay frequent.
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// What became of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The engine stored the record at `seq` (`duplicate`: it already held a record with this id).
    Acked { seq: u64, duplicate: bool },
    /// The engine refused the expectation: its log ends at `last` (in-flight records included).
    WrongLast { last: u64 },
    /// The engine answered that it did not store the record (no leader, no quorum, full...).
    Refused(String),
    /// No answer (timeout, connection lost after sending): the record may be stored.
    Lost(String),
    /// The record after the expected sequence, read back from the leader: its id and whether its
    /// bytes equal ours; `None` if there is none (yet).
    ReadBack(Option<(String, bool)>),
    /// The read-back itself failed.
    ReadBackFailed(String),
}

/// What the adapter does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send the record (again).
    Publish,
    /// Read the record at this sequence from the leader and report [`Answer::ReadBack`].
    ReadBack(u64),
    /// Wait this long, then call [`AppendRule::retry`].
    Wait(Duration),
    Done(Result<u64, LogError>),
}

/// One append's progress through the rule.
#[derive(Debug)]
pub struct AppendRule {
    expected_last: u64,
    id: String,
    deadline: Instant,
    attempts: u32,
    maybe_stored: bool,
    backoff: Duration,
    reason: String,
}

impl AppendRule {
    /// Starts an append of record `id` after `expected_last`; the first step is [`Step::Publish`].
    pub fn new(expected_last: u64, id: &str, deadline: Instant) -> (Self, Step) {
        let rule = Self {
            expected_last,
            id: id.to_owned(),
            deadline,
            attempts: 1,
            maybe_stored: false,
            backoff: FIRST_BACKOFF,
            reason: String::new(),
        };
        (rule, Step::Publish)
    }

    /// The sequence the record must take.
    pub fn next_seq(&self) -> u64 {
        self.expected_last + 1
    }

    /// How long the current step may take at most.
    pub fn time_left(&self, now: Instant) -> Duration {
        self.deadline.saturating_duration_since(now)
    }

    /// Feeds what the current step got; returns the next step.
    pub fn on(&mut self, now: Instant, answer: Answer) -> Step {
        let next = self.next_seq();
        match answer {
            Answer::Acked { seq, duplicate: false } if seq == next => Step::Done(Ok(seq)),
            // The server's msg-id dedupe knows the id, not the bytes: check they are ours.
            Answer::Acked { seq, duplicate: true } if seq == next => Step::ReadBack(next),
            Answer::Acked { seq, duplicate } => Step::Done(Err(self.misplaced(seq, duplicate))),
            Answer::WrongLast { last } if last >= next => Step::ReadBack(next),
            Answer::WrongLast { last } if last < self.expected_last => Step::Done(Err(LogError::Conflict {
                expected: self.expected_last,
                last,
            })),
            Answer::WrongLast { last } => self.failed(now, false, format!("engine reported the log ends at {last}")),
            Answer::Refused(reason) => self.failed(now, false, reason),
            Answer::Lost(reason) | Answer::ReadBackFailed(reason) => self.failed(now, true, reason),
            Answer::ReadBack(Some((id, same))) => Step::Done(self.resolve(&id, same)),
            Answer::ReadBack(None) => self.failed(now, true, format!("sequence {next} is taken but not readable yet")),
        }
    }

    /// After a [`Step::Wait`]: sends again.
    pub fn retry(&mut self) -> Step {
        self.attempts += 1;
        Step::Publish
    }

    fn resolve(&self, found_id: &str, same_bytes: bool) -> Result<u64, LogError> {
        let seq = self.next_seq();
        match (found_id == self.id, same_bytes) {
            (true, true) => Ok(seq),
            (true, false) => Err(LogError::Corrupt {
                seq,
                reason: format!("record {found_id:?} holds other bytes than its writer sent"),
            }),
            (false, _) => Err(LogError::Fenced {
                seq,
                found_id: found_id.to_owned(),
            }),
        }
    }

    fn misplaced(&self, seq: u64, duplicate: bool) -> LogError {
        let what = if duplicate { "was already stored" } else { "was stored" };
        LogError::Corrupt {
            seq,
            reason: format!(
                "record {:?} {what} at sequence {seq}, expected {}",
                self.id,
                self.next_seq()
            ),
        }
    }

    /// An attempt without a final answer: wait and retry, or give up at the deadline.
    fn failed(&mut self, now: Instant, maybe_stored: bool, reason: String) -> Step {
        self.maybe_stored |= maybe_stored;
        self.reason = reason;
        let left = self.time_left(now);
        if left.is_zero() {
            return Step::Done(Err(self.give_up()));
        }
        let wait = self.backoff.min(left);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Step::Wait(wait)
    }

    fn give_up(&self) -> LogError {
        let reason = self.reason.clone();
        if self.maybe_stored {
            LogError::Unknown {
                attempts: self.attempts,
                reason,
            }
        } else {
            LogError::Unavailable {
                reason: format!("{reason} (after {} attempts, nothing written)", self.attempts),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "a.1.7";

    fn rule(expected_last: u64, budget: Duration) -> (AppendRule, Instant) {
        let now = Instant::now();
        let (rule, first) = AppendRule::new(expected_last, ID, now + budget);
        assert_eq!(first, Step::Publish);
        (rule, now)
    }

    /// Feeds `answer` after every retry until the rule is done; returns the result and the time spent.
    fn until_done(rule: &mut AppendRule, mut now: Instant, answer: Answer) -> (Result<u64, LogError>, Duration) {
        let start = now;
        let mut step = rule.on(now, answer.clone());
        loop {
            match step {
                Step::Done(result) => return (result, now - start),
                Step::Wait(wait) => {
                    now += wait;
                    assert_eq!(rule.retry(), Step::Publish);
                    step = rule.on(now, answer.clone());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn an_ack_at_the_next_sequence_is_the_outcome() {
        let (mut rule, now) = rule(41, Duration::from_secs(5));
        let acked = Answer::Acked {
            seq: 42,
            duplicate: false,
        };
        assert_eq!(rule.on(now, acked), Step::Done(Ok(42)));
    }

    #[test]
    fn a_duplicate_ack_of_a_lost_attempt_resolves_to_its_sequence() {
        let (mut rule, now) = rule(41, Duration::from_secs(5));
        assert!(matches!(rule.on(now, Answer::Lost("timed out".into())), Step::Wait(_)));
        rule.retry();
        let duplicate = Answer::Acked {
            seq: 42,
            duplicate: true,
        };
        assert_eq!(rule.on(now, duplicate), Step::ReadBack(42), "the bytes are checked too");
        assert_eq!(
            rule.on(now, Answer::ReadBack(Some((ID.into(), true)))),
            Step::Done(Ok(42))
        );
    }

    #[test]
    fn wrong_last_with_our_record_next_is_our_commit() {
        let (mut rule, now) = rule(41, Duration::from_secs(5));
        assert_eq!(rule.on(now, Answer::WrongLast { last: 42 }), Step::ReadBack(42));
        let ours = Answer::ReadBack(Some((ID.into(), true)));
        assert_eq!(rule.on(now, ours), Step::Done(Ok(42)));
    }

    #[test]
    fn wrong_last_with_another_writers_record_next_is_fenced() {
        let (mut rule, now) = rule(41, Duration::from_secs(5));
        assert_eq!(rule.on(now, Answer::WrongLast { last: 50 }), Step::ReadBack(42));
        let theirs = Answer::ReadBack(Some(("b.2.1".into(), false)));
        let fenced = LogError::Fenced {
            seq: 42,
            found_id: "b.2.1".into(),
        };
        assert_eq!(rule.on(now, theirs), Step::Done(Err(fenced)));
    }

    #[test]
    fn a_log_behind_the_expectation_is_a_conflict() {
        let (mut rule, now) = rule(41, Duration::from_secs(5));
        let conflict = LogError::Conflict { expected: 41, last: 30 };
        assert_eq!(rule.on(now, Answer::WrongLast { last: 30 }), Step::Done(Err(conflict)));
    }

    #[test]
    fn our_id_with_other_bytes_is_corruption_not_success() {
        let (mut rule, now) = rule(41, Duration::from_secs(5));
        rule.on(now, Answer::WrongLast { last: 42 });
        let changed = Answer::ReadBack(Some((ID.into(), false)));
        assert!(matches!(
            rule.on(now, changed),
            Step::Done(Err(LogError::Corrupt { seq: 42, .. }))
        ));
    }

    #[test]
    fn an_ack_elsewhere_is_corruption() {
        let (mut rule, now) = rule(41, Duration::from_secs(5));
        let elsewhere = Answer::Acked {
            seq: 7,
            duplicate: true,
        };
        assert!(matches!(
            rule.on(now, elsewhere),
            Step::Done(Err(LogError::Corrupt { seq: 7, .. }))
        ));
    }

    #[test]
    fn refusals_until_the_deadline_are_unavailable_nothing_written() {
        let (mut rule, now) = rule(41, Duration::from_secs(3));
        let (result, spent) = until_done(&mut rule, now, Answer::Refused("no responders".into()));
        assert!(matches!(result, Err(LogError::Unavailable { .. })), "{result:?}");
        assert_eq!(spent, Duration::from_secs(3), "retries until the deadline, not past it");
    }

    #[test]
    fn one_lost_attempt_makes_the_deadline_outcome_unknown() {
        let (mut rule, now) = rule(41, Duration::from_secs(3));
        assert!(matches!(rule.on(now, Answer::Lost("timed out".into())), Step::Wait(_)));
        rule.retry();
        let (result, _) = until_done(&mut rule, now, Answer::Refused("no quorum".into()));
        match result {
            Err(LogError::Unknown { attempts, .. }) => assert!(attempts > 2, "{attempts}"),
            other => panic!("expected Unknown, got {other:?}"),
        }
    }

    #[test]
    fn a_sequence_taken_but_unreadable_is_retried_and_may_be_ours() {
        let (mut rule, now) = rule(41, Duration::from_secs(1));
        rule.on(now, Answer::WrongLast { last: 42 });
        let (result, _) = until_done(&mut rule, now, Answer::ReadBack(None));
        assert!(matches!(result, Err(LogError::Unknown { .. })), "{result:?}");
    }

    #[test]
    fn waits_grow_and_stay_bounded() {
        let (mut rule, now) = rule(0, Duration::from_secs(60));
        let mut waits = Vec::new();
        for _ in 0..8 {
            match rule.on(now, Answer::Refused("election".into())) {
                Step::Wait(wait) => waits.push(wait),
                other => panic!("{other:?}"),
            }
            rule.retry();
        }
        assert_eq!(waits[0], FIRST_BACKOFF);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*waits.last().expect("waits"), MAX_BACKOFF);
    }
}
